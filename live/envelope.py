"""The versioned envelope every live message travels in: one msgpack header frame, then the binary
payloads as separate ZeroMQ frames, so big token payloads are never copied into msgpack. No pickle.

Header (a msgpack map with string keys; an unknown key is an error):
  magic "tbl-edge" | v 1 | kind: request, reply, error, busy, health | id: uint64 |
  sizes: byte length of each payload frame | meta: a map of plain values (question, options,
  logits, an error's code and reason, ...) | deadline_ms (requests, optional: the time the edge may
  still start the work, counted from its receipt) | timing (replies, optional: queue_s, service_s)

Decoding trusts nothing. The frame count and the header's length are checked before the header is
unpacked (with msgpack's length limits), the message's total length right after (so an oversize
error can name the request id); the magic and version before any other field; the declared sizes
against the limit and against the frames present before a payload is handed on. Payloads are
zero-copy memoryviews of the received frames. Every problem raises EnvelopeError with a one-line
reason. (The framing, live/framing.py, has checked the message's whole length before any of it was
kept, and its frame count and sizes before these frames were handed here.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import msgpack

from testbed.live.errors import EnvelopeError

if TYPE_CHECKING:  # collections.abc.Buffer is 3.12+; mypy knows the typing_extensions one
    from typing_extensions import Buffer

MAGIC = "tbl-edge"
VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 512 * 2**20
DEFAULT_MAX_HEADER_BYTES = 2**20
DEFAULT_MAX_FRAMES = 64
_MAX_ID = 2**64 - 1
_FIELDS = frozenset({"magic", "v", "kind", "id", "sizes", "meta", "deadline_ms", "timing"})


class Kind(StrEnum):
    REQUEST = "request"
    REPLY = "reply"
    ERROR = "error"
    BUSY = "busy"
    HEALTH = "health"


@dataclass(frozen=True, slots=True)
class Limits:
    """What a receiver accepts. `max_message_bytes` bounds the header plus all payloads."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_frames: int = DEFAULT_MAX_FRAMES  # payload frames

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0 or self.max_header_bytes <= 0 or self.max_frames < 0:
            raise ValueError(f"limits must be positive: {self}")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message. `payloads` are byte buffers (memoryviews on receipt)."""

    kind: Kind
    id: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    payloads: tuple[memoryview, ...] = ()
    deadline_ms: float | None = None
    timing: Mapping[str, float] | None = None

    @property
    def payload_bytes(self) -> int:
        return sum(p.nbytes for p in self.payloads)


def as_bytes_view(buf: Buffer) -> memoryview:
    """A flat unsigned-byte view of any contiguous buffer (bytes, bytearray, numpy, zmq.Frame)."""
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")  # raises TypeError for non-contiguous buffers: copy those yourself
    return view


def encode(kind: Kind, request_id: int, meta: Mapping[str, Any] | None = None, payloads: Sequence[Buffer] = (), *,
           deadline_ms: float | None = None, timing: Mapping[str, float] | None = None) -> list[Any]:
    """The message's frames (live/framing.py packs them into one record): the msgpack header, then each
    payload as given (no copy).

    Raises TypeError when `meta` holds something msgpack cannot carry (numpy scalars included:
    convert them, or send arrays as payloads), ValueError for an id or deadline out of range."""
    if not 0 <= request_id <= _MAX_ID:
        raise ValueError(f"request id {request_id} outside 0..2**64-1")
    views = [as_bytes_view(p) for p in payloads]
    header: dict[str, Any] = {"magic": MAGIC, "v": VERSION, "kind": str(kind), "id": request_id,
                              "sizes": [v.nbytes for v in views], "meta": dict(meta or {})}
    if deadline_ms is not None:
        if not (math.isfinite(deadline_ms) and deadline_ms > 0):
            raise ValueError(f"deadline_ms must be a positive number, got {deadline_ms}")
        header["deadline_ms"] = float(deadline_ms)
    if timing is not None:
        header["timing"] = {k: float(v) for k, v in timing.items()}
    return [msgpack.packb(header, use_bin_type=True), *views]


def message_bytes(frames: Sequence[Any]) -> int:
    """Total bytes of a message's frames (what Limits.max_message_bytes bounds)."""
    return sum(memoryview(f).nbytes for f in frames)


def _unpack_header(raw: memoryview, limits: Limits) -> dict[str, Any]:
    n = raw.nbytes
    try:
        # msgpack checks every declared str/bin/array/map length against these before allocating;
        # ext types (timestamps included) are refused outright
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True, max_str_len=n, max_bin_len=n,
                                 max_array_len=min(n, limits.max_frames + 1024), max_map_len=n, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EnvelopeError(f"header is not valid msgpack ({reason})") from None
    if not isinstance(header, dict):
        raise EnvelopeError(f"header is a msgpack {type(header).__name__}, not a map")
    return header


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def decode(frames: Sequence[Any], limits: Limits = Limits()) -> Envelope:
    """Parse a received message (frames after any routing identity) from an untrusted peer.

    Frames may be bytes, memoryviews or zmq.Frame objects; payloads come back as memoryviews of
    them without a copy. Raises EnvelopeError with a one-line reason."""
    if len(frames) == 0:
        raise EnvelopeError("empty message: no header frame")
    if len(frames) - 1 > limits.max_frames:
        raise EnvelopeError(f"{len(frames) - 1} payload frames; the limit is {limits.max_frames}", "oversize")
    views = [as_bytes_view(f) for f in frames]
    head = views[0]
    if head.nbytes == 0:
        raise EnvelopeError("empty header frame")
    if head.nbytes > limits.max_header_bytes:
        raise EnvelopeError(f"header of {head.nbytes} bytes; the limit is {limits.max_header_bytes}", "oversize")
    header = _unpack_header(head, limits)  # bounded by max_header_bytes
    raw_id: Any = header.get("id")
    rid: int | None = raw_id if _is_int(raw_id) and 0 <= raw_id <= _MAX_ID else None
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise EnvelopeError(f"message of {total} bytes; the limit is {limits.max_message_bytes}", "oversize", rid)
    if header.get("magic") != MAGIC:
        raise EnvelopeError("bad magic: not an edge envelope", request_id=rid)
    version = header.get("v")
    if version != VERSION:
        raise EnvelopeError(f"envelope version {version!r}; this end reads {VERSION}", "version", rid)
    unknown = set(header) - _FIELDS
    if unknown:
        raise EnvelopeError(f"unknown header field(s) {sorted(map(str, unknown))}", request_id=rid)
    try:
        kind = Kind(str(header.get("kind")))
    except ValueError:
        raise EnvelopeError(f"unknown kind {header.get('kind')!r}; one of {[str(k) for k in Kind]}",
                            request_id=rid) from None
    if rid is None:
        raise EnvelopeError(f"id must be an integer in 0..2**64-1, got {header.get('id')!r}")
    sizes = header.get("sizes")
    if not isinstance(sizes, list) or not all(_is_int(s) and s >= 0 for s in sizes):
        raise EnvelopeError("sizes must be a list of non-negative integers", request_id=rid)
    if sum(sizes) + head.nbytes > limits.max_message_bytes:
        raise EnvelopeError(f"header declares {sum(sizes) + head.nbytes} bytes; the limit is "
                            f"{limits.max_message_bytes}", "oversize", rid)
    payloads = views[1:]
    if len(sizes) != len(payloads):
        raise EnvelopeError(f"header declares {len(sizes)} payload frame(s), message has {len(payloads)}",
                            "length", rid)
    for i, (want, got) in enumerate(zip(sizes, payloads)):
        if got.nbytes != want:
            raise EnvelopeError(f"payload {i} declared {want} bytes but holds {got.nbytes}", "length", rid)
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise EnvelopeError("meta must be a map", request_id=rid)
    deadline = header.get("deadline_ms")
    if deadline is not None and not (_is_number(deadline) and deadline > 0):
        raise EnvelopeError(f"deadline_ms must be a positive number, got {deadline!r}", request_id=rid)
    timing = header.get("timing")
    if timing is not None and not (isinstance(timing, dict) and all(_is_number(v) for v in timing.values())):
        raise EnvelopeError("timing must be a map of numbers", request_id=rid)
    return Envelope(kind, rid, meta, tuple(payloads), None if deadline is None else float(deadline), timing)
