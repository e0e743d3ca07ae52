"""The edge link's own framing on a raw TCP byte stream (ZeroMQ STREAM sockets at both ends), so
that an edge refuses an oversize message from its first four bytes, before it buffers any of it.

ZeroMQ's own protocol (ZMTP) assembles a whole multipart message before the application sees its
first frame, and ZMQ_MAXMSGSIZE bounds each frame, not their number: 100 frames of 15 MiB took an
edge with a 16 MiB limit to 1.5 GB. Here a message is one record:

  record  = u32 L (big-endian) | L bytes of body             (L > the receiver's limit: refused)
  body    = u16 n | n x u32 frame sizes | the n frames       (n and the sizes checked before use)
  sealed  = a NaCl box (24-byte nonce, 16-byte tag, ciphertext) of a body, after a handshake

The frames are the envelope's (live/envelope.py: a msgpack header, then the payloads).

Authentication (an edge with CURVE keys, live/curve.py): the same Curve25519 key files ZeroMQ's
CURVE uses, and libsodium's crypto_box (PyNaCl), as CURVE does:
  client -> HELLO   "TBLH" 1 | its public key (32 bytes)        the edge refuses a key it does not admit
  edge   -> WELCOME "TBLW" | box(edge secret, client public; a fresh 32-byte cookie)
  client -> READY   "TBLR" | box(client secret, edge public; the cookie)
Only the holder of the client's secret key can open WELCOME and box the cookie back, and only the
edge's secret key can make a WELCOME the client can open; the fresh cookie stops a recorded READY
from being replayed. Every later record is sealed both ways with the same pair of keys. Unlike
CURVE there are no per-connection ephemeral keys (no forward secrecy). Before READY, a record of
more than MAX_HANDSHAKE bytes is refused, so a peer without an admitted key can make the edge hold
at most that much.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from testbed.live.errors import EnvelopeError

if TYPE_CHECKING:
    from typing_extensions import Buffer

PREFIX = struct.Struct(">I")
COUNT = struct.Struct(">H")
SIZE = struct.Struct(">I")
MAX_RECORD = 2**32 - 1
MAX_HANDSHAKE = 256
HELLO, WELCOME, READY = b"TBLH\x01", b"TBLW", b"TBLR"
KEY_BYTES = 32
COOKIE_BYTES = 32
BOX_OVERHEAD = 24 + 16  # nonce and Poly1305 tag


class FramingError(EnvelopeError):
    """A record or body that breaks the framing (code 'oversize' or 'malformed')."""


def _head(views: Sequence[memoryview]) -> bytes:
    """A body's head: the frame count and each frame's size."""
    if len(views) > 0xFFFF:
        raise FramingError(f"{len(views)} frames; a body holds at most 65535", "oversize")
    return COUNT.pack(len(views)) + b"".join(SIZE.pack(v.nbytes) for v in views)


def _prefix(n: int) -> bytes:
    """The length prefix of an n-byte body."""
    if n > MAX_RECORD:
        raise FramingError(f"a body of {n} bytes does not fit a record", "oversize")
    return PREFIX.pack(n)


def pack(frames: Sequence[Buffer]) -> bytes:
    """One body: the frame count, their sizes, the frames (one copy)."""
    views = [memoryview(f).cast("B") for f in frames]
    return b"".join([_head(views), *views])


def record(body: Buffer) -> bytes:
    """`body` with its length prefix, ready to write to the stream (one copy)."""
    return b"".join((_prefix(memoryview(body).nbytes), body))


def parts(frames: Sequence[Buffer], sealer: Sealer | None = None) -> list[Buffer]:
    """A record of these frames as the parts to write in order, with no copy of the frames: the length
    prefix, frame count and sizes in one small part, then the frames; sealed, one part (the box copies)."""
    if sealer is not None:
        return [record(sealer.seal(pack(frames)))]
    views = [memoryview(f).cast("B") for f in frames]
    head = _head(views)
    return [_prefix(len(head) + sum(v.nbytes for v in views)) + head, *(v for v in views if v.nbytes)]


def write(sock: Any, peer: bytes, record_parts: Sequence[Buffer], flags: int = 0) -> None:
    """A record's parts to `peer` on a ZeroMQ STREAM socket, in order and uncopied. A ZMQError after
    the first part leaves a cut record on the stream: the caller must drop that connection."""
    for part in record_parts:
        sock.send_multipart([peer, part], flags, copy=False)


def unpack(body: Buffer, max_frames: int) -> list[memoryview]:
    """The frames of a body, as zero-copy views; FramingError if the count or sizes do not add up."""
    view = memoryview(body).cast("B")
    if view.nbytes < COUNT.size:
        raise FramingError("a body shorter than its frame count", "malformed")
    (n,) = COUNT.unpack_from(view, 0)
    if n > max_frames:
        raise FramingError(f"{n} frames; at most {max_frames} are accepted", "malformed")
    start = COUNT.size + n * SIZE.size
    if view.nbytes < start:
        raise FramingError("a body cut inside its frame sizes", "malformed")
    sizes = [SIZE.unpack_from(view, COUNT.size + i * SIZE.size)[0] for i in range(n)]
    if start + sum(sizes) != view.nbytes:
        raise FramingError(f"frame sizes add up to {sum(sizes)} bytes but the body holds {view.nbytes - start}",
                           "malformed")
    out, at = [], start
    for s in sizes:
        out.append(view[at:at + s])
        at += s
    return out


class Budget:
    """Bytes a receiver may hold at once across every connection (records arriving, queued and in
    service); `take` says whether `n` more fit, `give` returns them."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.peak = limit, 0, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give(self, n: int) -> None:
        self.used -= n


class Reader:
    """Records out of a byte stream that arrives in chunks. A record's length is checked as soon as
    its prefix is read: above `max_record`, or more than `budget` has left, the record is refused
    (a FramingError in the output, code 'oversize' or 'busy') and its bytes are skipped as they
    arrive, never kept. A kept record's bytes stay taken from the budget until the caller gives
    them back. `strict`: a refused record raises instead (a peer mid-handshake is dropped)."""

    def __init__(self, max_record: int, budget: Budget | None = None, strict: bool = False) -> None:
        self.max_record, self.budget, self.strict = max_record, budget, strict
        self._head = bytearray()
        self._body: bytearray | None = None
        self._got = 0
        self._skip = 0

    @property
    def pending(self) -> int:
        """Bytes of the record in progress still to come (0 between records)."""
        return self._skip if self._body is None else len(self._body) - self._got

    def release(self) -> None:
        """Give back what a record in progress holds (its connection is gone)."""
        if self._body is not None and self.budget is not None:
            self.budget.give(len(self._body))
        self._body = None

    def feed(self, chunk: Buffer) -> Iterable[bytearray | FramingError]:
        """The records `chunk` completes (and the refusals it meets), in order, lazily: the caller may
        change `max_record`, `budget` and `strict` between two (a handshake's end lifts its limit)."""
        body = self._body
        if body is not None:  # the common case, a chunk inside a record's body: one copy, no generator
            n = memoryview(chunk).nbytes
            if self._got + n < len(body):
                body[self._got:self._got + n] = memoryview(chunk).cast("B")
                self._got += n
                return ()
        return self._feed(chunk)

    def _feed(self, chunk: Buffer) -> Iterator[bytearray | FramingError]:
        data = memoryview(chunk).cast("B")
        at = 0
        while at < data.nbytes:
            if self._skip:
                take = min(self._skip, data.nbytes - at)
                self._skip -= take
                at += take
                continue
            if self._body is None:
                take = min(PREFIX.size - len(self._head), data.nbytes - at)
                self._head += data[at:at + take]
                at += take
                if len(self._head) < PREFIX.size:
                    break
                (n,) = PREFIX.unpack(self._head)
                self._head.clear()
                refused = None
                if n > self.max_record:
                    refused = FramingError(f"a message of {n} bytes; the limit is {self.max_record}", "oversize")
                elif self.budget is not None and not self.budget.take(n):
                    refused = FramingError(f"a message of {n} bytes while the edge holds {self.budget.used} of its "
                                           f"{self.budget.limit}-byte receive budget", "busy")
                if refused is not None:
                    if self.strict:
                        raise refused
                    self._skip = n
                    yield refused
                    continue
                self._body, self._got = bytearray(n), 0
            body = self._body
            assert body is not None
            take = min(len(body) - self._got, data.nbytes - at)
            body[self._got:self._got + take] = data[at:at + take]
            self._got += take
            at += take
            if self._got == len(body):
                self._body = None
                yield body


# -- the handshake and sealing ------------------------------------------------------------------------

def raw_key(z85_key: bytes) -> bytes:
    """A 32-byte Curve25519 key from the Z85 text ZeroMQ's key files hold."""
    from zmq.utils import z85

    key = z85.decode(z85_key)
    if len(key) != KEY_BYTES:
        raise ValueError(f"a CURVE key is {KEY_BYTES} bytes, got {len(key)}")
    return key


class Sealer:
    """Seals and opens bodies between two keys (a NaCl box: XSalsa20-Poly1305 over their
    Curve25519 shared secret); opening a forged or corrupted body raises FramingError."""

    def __init__(self, own_secret: bytes, peer_public: bytes) -> None:
        from nacl.public import Box, PrivateKey, PublicKey

        self._box = Box(PrivateKey(own_secret), PublicKey(peer_public))

    def seal(self, body: Buffer) -> bytes:
        return bytes(self._box.encrypt(bytes(body)))

    def open(self, sealed: Buffer) -> bytes:
        from nacl.exceptions import CryptoError

        try:
            return bytes(self._box.decrypt(bytes(sealed)))
        except CryptoError:
            raise FramingError("a sealed message that does not open with this pair of keys", "malformed") from None


def hello(client_public: bytes) -> bytes:
    return HELLO + client_public


def client_of_hello(body: Buffer) -> bytes | None:
    """The client public key a HELLO names; None if `body` is not a HELLO."""
    b = bytes(body)
    if len(b) != len(HELLO) + KEY_BYTES or not b.startswith(HELLO):
        return None
    return b[len(HELLO):]


def welcome(sealer: Sealer) -> tuple[bytes, bytes]:
    """(WELCOME body, the cookie it carries)."""
    cookie = os.urandom(COOKIE_BYTES)
    return WELCOME + sealer.seal(cookie), cookie


def answer_welcome(sealer: Sealer, body: Buffer) -> bytes | None:
    """The READY body that answers a WELCOME; None if `body` is not one this pair of keys opens."""
    b = bytes(body)
    if not b.startswith(WELCOME):
        return None
    try:
        cookie = sealer.open(b[len(WELCOME):])
    except FramingError:
        return None
    return READY + sealer.seal(cookie)


def ready_matches(sealer: Sealer, body: Buffer, cookie: bytes) -> bool:
    """Whether `body` is the READY that boxes back this connection's cookie."""
    b = bytes(body)
    if not b.startswith(READY):
        return False
    try:
        return sealer.open(b[len(READY):]) == cookie
    except FramingError:
        return False


def is_handshake(body: Any) -> bool:
    b = bytes(body[:4])
    return b in (HELLO[:4], WELCOME, READY)
