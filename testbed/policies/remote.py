"""An Offload as plain data for the wire (msgpack-able maps and byte payloads), and back.

The local node sends the Offload's payload bytes as frames and its steps as maps naming those
frames; the edge rebuilds the steps against the media and tokens it received and runs them with
`placement.run_steps`, exactly as the sim and the in-process run do. Nothing here is pickled, and
every map from a peer is checked before use (`RemoteError` names what is wrong).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from testbed.errors import TestbedError
from testbed.policies.effects import Decompress, EdgeStep, Infer, Offload, Payload, Tokenize
from testbed.policies.placement import check_offload
from testbed.query import Media
from testbed.tokenizer.sampling import Sampler

STEPS_VERSION = 1
MAX_STEPS = 16
MAX_OPTIONS = 26
MAX_TEXT = 65536


class RemoteError(TestbedError):
    """A request's steps or payloads that do not describe a well-formed Offload."""


def _sampler_map(s: Sampler) -> dict[str, Any]:
    return {"kind": s.kind, "rate": s.rate, "min_frames": s.min_frames, "max_frames": s.max_frames, "count": s.count}


def offload_request(off: Offload) -> tuple[dict[str, Any], list[bytes]]:
    """(meta, payload frames) for an Offload whose payloads hold real bytes. Media payloads are the
    file's bytes (read by the caller into Payload.data); token payloads the codec's message."""
    check_offload(off)
    frames: list[bytes] = []
    payloads = []
    for p in off.payloads:
        if p.data is None:
            raise RemoteError(f"a {p.kind} payload has no bytes to send")
        payloads.append({"kind": p.kind, "frames": p.frames, "density": p.density, "encoder": p.encoder,
                         "sampler": p.sampler, "raw_bytes": p.raw_bytes})
        frames.append(p.data)
    steps: list[dict[str, Any]] = []
    for step in off.steps:
        if isinstance(step, Decompress):
            steps.append({"op": "decompress", "payload": _index(off, step.payload)})
        elif isinstance(step, Tokenize):
            i = next(i for i, p in enumerate(off.payloads) if p.media is step.media)
            steps.append({"op": "tokenize", "payload": i, "sampler": _sampler_map(step.sampler),
                          "pipelined": step.pipelined, "encoder": step.encoder})
        else:
            if step.tokens is not None:
                raise RemoteError("an edge Infer over the wire takes the tokens of the step before it (tokens=None)")
            steps.append({"op": "infer", "model": step.model, "density": step.density, "question": step.question,
                          "options": list(step.options)})
    return {"v": STEPS_VERSION, "payloads": payloads, "steps": steps}, frames


def _index(off: Offload, payload: Payload) -> int:
    return next(i for i, p in enumerate(off.payloads) if p is payload)


def _field(m: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in m:
        raise RemoteError(f"{where}: missing {key!r}")
    v = m[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise RemoteError(f"{where}: {key!r} has the wrong type ({type(v).__name__})")
    return v


def offload_from_request(meta: Mapping[str, Any], frames: Sequence[bytes | memoryview],
                         media_for: Callable[[int, str, bytes | memoryview], Media]) -> Offload:
    """Rebuild an Offload from a peer's (meta, frames); `media_for(index, kind, data)` stores a media
    payload as a file and returns its probed metadata. Everything is checked before use."""
    if not isinstance(meta, Mapping) or meta.get("v") != STEPS_VERSION:
        raise RemoteError(f"steps version {meta.get('v') if isinstance(meta, Mapping) else None!r}; "
                          f"this edge reads {STEPS_VERSION}")
    pmaps = _field(meta, "payloads", list, "request")
    smaps = _field(meta, "steps", list, "request")
    if len(pmaps) != len(frames):
        raise RemoteError(f"{len(pmaps)} payloads described, {len(frames)} frames received")
    if not 1 <= len(smaps) <= MAX_STEPS:
        raise RemoteError(f"an Offload needs 1 to {MAX_STEPS} steps, got {len(smaps)}")
    payloads: list[Payload] = []
    for i, (pm, data) in enumerate(zip(pmaps, frames)):
        where = f"payload {i}"
        if not isinstance(pm, Mapping):
            raise RemoteError(f"{where}: not a map")
        kind = _field(pm, "kind", str, where)
        encoder = _field(pm, "encoder", str, where)
        if encoder not in ("small", "large"):
            raise RemoteError(f"{where}: encoder {encoder!r} is not small or large")
        if kind == "tokens":
            payloads.append(Payload("tokens", len(data), _field(pm, "raw_bytes", int, where),
                                    _field(pm, "frames", int, where), _field(pm, "density", int, where),
                                    encoder, str(pm.get("sampler", ""))[:16], data=bytes(data)))  # type: ignore[arg-type]
        elif kind in ("video", "image"):
            media = media_for(i, kind, data)
            payloads.append(Payload(kind, len(data), media=media))  # type: ignore[arg-type]
        else:
            raise RemoteError(f"{where}: kind {kind!r} is not video, image or tokens")
    steps: list[EdgeStep] = []
    for j, sm in enumerate(smaps):
        where = f"step {j}"
        if not isinstance(sm, Mapping):
            raise RemoteError(f"{where}: not a map")
        op = _field(sm, "op", str, where)
        if op == "decompress":
            steps.append(Decompress(payloads[_payload_index(sm, payloads, "tokens", where)]))
        elif op == "tokenize":
            p = payloads[_payload_index(sm, payloads, ("video", "image"), where)]
            sm_s = _field(sm, "sampler", Mapping, where)
            try:
                sampler = Sampler(_field(sm_s, "kind", str, where), float(_field(sm_s, "rate", (int, float), where)),
                                  _field(sm_s, "min_frames", int, where), _field(sm_s, "max_frames", int, where),
                                  _field(sm_s, "count", int, where))  # type: ignore[arg-type]
            except ValueError as exc:
                raise RemoteError(f"{where}: {exc}") from None
            encoder = _field(sm, "encoder", str, where)
            if encoder not in ("small", "large"):
                raise RemoteError(f"{where}: encoder {encoder!r} is not small or large")
            assert p.media is not None
            steps.append(Tokenize(p.media, sampler, bool(_field(sm, "pipelined", bool, where)), encoder))  # type: ignore[arg-type]
        elif op == "infer":
            model = _field(sm, "model", str, where)
            if model not in ("small", "large"):
                raise RemoteError(f"{where}: model {model!r} is not small or large")
            question = _field(sm, "question", str, where)
            options = _field(sm, "options", list, where)
            if len(question) > MAX_TEXT or not 1 <= len(options) <= MAX_OPTIONS \
                    or not all(isinstance(o, str) and len(o) <= MAX_TEXT for o in options):
                raise RemoteError(f"{where}: the question and 1 to {MAX_OPTIONS} options must be strings")
            steps.append(Infer(model, None, _field(sm, "density", int, where), question, tuple(options)))  # type: ignore[arg-type]
        else:
            raise RemoteError(f"{where}: op {op!r} is not decompress, tokenize or infer")
    off = Offload(tuple(payloads), tuple(steps))
    try:
        check_offload(off)
    except TestbedError as exc:
        raise RemoteError(str(exc)) from None
    return off


def _payload_index(sm: Mapping[str, Any], payloads: list[Payload], kinds: str | tuple[str, ...], where: str) -> int:
    i = _field(sm, "payload", int, where)
    if not 0 <= i < len(payloads):
        raise RemoteError(f"{where}: payload {i} does not exist")
    if payloads[i].kind not in ((kinds,) if isinstance(kinds, str) else kinds):
        raise RemoteError(f"{where}: payload {i} is {payloads[i].kind}, not {kinds}")
    return i

