"""The local node's side of the edge link: a ZeroMQ STREAM client speaking the testbed's framing
(live/framing.py) with a per-request timeout that never hangs. Down, late, busy, refusing or
shutting-down edges raise EdgeUnavailable, so the caller can fall back to its local answer.

Threads: one connection per thread (a STREAM socket created on first use, all on one context), not one socket
behind a lock. A lock would serialize the threads' requests, so a 5 MB upload would hold up every
other client's small request and the several-clients workload would measure the lock; with a
socket each, requests from different threads are in flight at once (sharing the shaped link, as
real clients do), and a reply can only reach the thread that asked. close() closes every thread's
socket; call it once the threads are done.

Timeouts: connecting, the CURVE handshake (with keys) and the reply all count against the
request's deadline. After a timeout the thread's socket is discarded with linger 0 (the
lazy-pirate pattern): a late reply can never be mistaken for the next one, and the next request
opens a new connection. A connection carries one request at a time, so an error the edge could not
tie to a request id (an oversize message refused from its length) is this request's.

User-space link emulation (live.pacing.UserLink), when given: an upload is held until the emulated
link has carried it (rate or trace, then RTT/2) before it is sent; a reply is held after it arrives
until the emulated downlink has carried it.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import zmq

from testbed.live import envelope as env
from testbed.live import framing, netns
from testbed.live.envelope import Kind, Limits
from testbed.live.errors import EdgeError, EdgeUnavailable, EnvelopeError
from testbed.live.framing import Reader, Sealer
from testbed.live.pacing import UserLink

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from testbed.live.curve import ClientCurve


@dataclass(frozen=True, slots=True)
class Response:
    """A reply (or a health answer). Times are this host's monotonic clock."""

    id: int
    meta: Mapping[str, Any]
    payloads: tuple[memoryview, ...]  # zero-copy views of the received frames
    sent_at: float  # when request() was called
    received_at: float  # when the reply was handed back (after any user-space downlink hold)
    request_bytes: int
    reply_bytes: int
    timing: Mapping[str, float] = field(default_factory=dict)  # the edge's queue_s and service_s

    @property
    def round_trip_s(self) -> float:
        return self.received_at - self.sent_at


@dataclass
class _Link:
    """A thread's connection: its socket, the edge's routing id on it, the reader of its byte stream,
    and the sealer once a CURVE handshake is done."""

    sock: zmq.Socket
    reader: Reader
    peer: bytes = b""
    sealer: Sealer | None = None
    records: deque[bytearray] = field(default_factory=deque)


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


class EdgeClient:
    """Requests to one edge endpoint. Nothing connects before the first request.

    `netns_name`: run the client's ZeroMQ I/O threads (which open its TCP connections) in that
    network namespace (the shaped link's device side). `link`: user-space shaping to apply."""

    def __init__(self, endpoint: str, *, timeout_s: float = 30.0, limits: Limits = Limits(),
                 link: UserLink | None = None, netns_name: str | None = None, curve: ClientCurve | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.limits = limits
        self.link = link
        self.netns_name = netns_name
        self.curve = curve
        self._ctx: zmq.Context | None = None
        self._lock = threading.Lock()
        self._sockets: set[zmq.Socket] = set()
        self._local = threading.local()
        self._ids = itertools.count(1)
        self._closed = False

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's socket and the context (idempotent)."""
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close(0)
            self._sockets.clear()
            if self._ctx is not None:
                self._ctx.term()
                self._ctx = None

    def _context(self) -> zmq.Context:
        with self._lock:
            if self._closed:
                raise EdgeUnavailable(reason="closed", message="the edge client is closed")
            if self._ctx is None:
                with netns.entered(self.netns_name):
                    ctx = zmq.Context()
                    ctx.socket(zmq.STREAM).close(0)  # starts the I/O thread here, in the namespace
                self._ctx = ctx
            return self._ctx

    def _link(self, deadline: float, timeout: float) -> _Link:
        """This thread's connection, opened (and, with keys, authenticated) by `deadline`."""
        link: _Link | None = getattr(self._local, "link", None)
        if link is not None and not link.sock.closed:
            if not link.sock.poll(0, zmq.POLLIN):
                return link
            # between requests nothing but a notification arrives: the edge closed the connection
            # (and libzmq may have reconnected under a new routing id): start over on a new one
            self._discard_socket()
        sock = self._context().socket(zmq.STREAM)
        sock.setsockopt(zmq.LINGER, 0)
        with self._lock:
            self._sockets.add(sock)
        link = self._local.link = _Link(sock, Reader(self.limits.max_message_bytes + framing.BOX_OVERHEAD))
        sock.connect(self.endpoint)
        while not link.peer:  # the connection's notification: [routing id, b""]
            if not self._wait(sock, deadline):
                self._discard_socket()
                raise self._late(timeout)
            peer, data = sock.recv_multipart()
            if not data:
                link.peer = peer
        if self.curve is not None:
            self._handshake(link, deadline, timeout)
        return link

    def _handshake(self, link: _Link, deadline: float, timeout: float) -> None:
        """HELLO, WELCOME, READY (live/framing.py); the edge's refusal is EdgeUnavailable('refused')."""
        assert self.curve is not None
        sealer = Sealer(framing.raw_key(self.curve.secret), framing.raw_key(self.curve.server_public))
        link.sock.send_multipart([link.peer, framing.record(framing.hello(framing.raw_key(self.curve.public)))])
        body = self._next_record(link, deadline, timeout)
        ready = framing.answer_welcome(sealer, body)
        if ready is None:
            self._discard_socket()
            raise self._refusal(body, "its WELCOME does not open with the edge key given (a different edge?)")
        link.sock.send_multipart([link.peer, framing.record(ready)])
        link.sealer = sealer

    def _refusal(self, body: Any, otherwise: str) -> EdgeUnavailable:
        try:
            msg = env.decode(framing.unpack(body, 2), self.limits)
            reason = str(msg.meta.get("reason", otherwise))
        except EnvelopeError:
            reason = otherwise
        return EdgeUnavailable(reason="refused", message=f"the edge at {self.endpoint} refused this client: {reason}")

    def _next_record(self, link: _Link, deadline: float, timeout: float) -> bytearray:
        """The next whole record from the edge, by `deadline`."""
        while not link.records:
            if not self._wait(link.sock, deadline):
                self._discard_socket()
                raise self._late(timeout)
            _, data = link.sock.recv_multipart(copy=False)
            if not len(data):  # the edge closed the connection
                self._discard_socket()
                raise EdgeUnavailable(reason="closed", message=f"the edge at {self.endpoint} closed the connection")
            for item in link.reader.feed(data.buffer):
                if isinstance(item, framing.FramingError):  # a reply past this client's limit
                    self._discard_socket()
                    raise EnvelopeError(f"reply from the edge refused: {item.reason}", item.code)
                link.records.append(item)
        return link.records.popleft()

    def _wait(self, sock: zmq.Socket, deadline: float) -> bool:
        left = deadline - time.monotonic()
        return left > 0 and bool(sock.poll(max(1, math.ceil(left * 1000)), zmq.POLLIN))

    def _discard_socket(self) -> None:
        link: _Link | None = getattr(self._local, "link", None)
        self._local.link = None
        if link is not None:
            with self._lock:
                self._sockets.discard(link.sock)
            link.sock.close(0)

    # -- calls -----------------------------------------------------------------------------------

    def request(self, meta: Mapping[str, Any] | None = None, payloads: Sequence[Buffer] = (), *,
                timeout_s: float | None = None) -> Response:
        """Send a request and wait for its reply, at most `timeout_s` (default: the client's).

        Raises EdgeUnavailable (timeout, busy, deadline, shutdown, closed), EdgeError
        (the edge rejected the request or its handler failed), EnvelopeError (the request exceeds
        `limits`, or the reply is malformed), TypeError (meta msgpack cannot carry)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        sent_at = time.monotonic()
        rid = next(self._ids)
        frames = env.encode(Kind.REQUEST, rid, meta, payloads, deadline_ms=timeout * 1000)
        return self._exchange(frames, rid, sent_at, timeout, Kind.REPLY)

    def health(self, *, timeout_s: float = 2.0) -> Response:
        """Ask the edge how it is; answered even while its queue is full. meta: status ("ok",
        "busy", "stopping"), queued, outstanding, max_queue, workers, max_message_bytes, pid."""
        sent_at = time.monotonic()
        rid = next(self._ids)
        return self._exchange(env.encode(Kind.HEALTH, rid), rid, sent_at, timeout_s, Kind.HEALTH)

    def _exchange(self, frames: list[Any], rid: int, sent_at: float, timeout: float, expect: Kind) -> Response:
        deadline = sent_at + timeout
        nbytes = env.message_bytes(frames)
        if nbytes > self.limits.max_message_bytes:
            raise EnvelopeError(f"request of {nbytes} bytes; the limit is {self.limits.max_message_bytes}",
                                "oversize", rid)
        link = self._link(deadline, timeout)
        data = framing.parts(frames, link.sealer)
        request_bytes = sum(memoryview(p).nbytes for p in data)
        if self.link is not None and self.link.up is not None:
            release = self.link.up.schedule(sent_at, request_bytes)
            if release > deadline:
                _sleep_until(deadline)
                raise self._late(timeout)
            _sleep_until(release)
        try:
            framing.write(link.sock, link.peer, data, zmq.NOBLOCK)
        except zmq.Again:  # the socket's queue is full: the edge has not been reachable for a while
            self._discard_socket()
            raise self._late(timeout) from None
        except zmq.ZMQError as exc:  # the connection is gone (EHOSTUNREACH)
            self._discard_socket()
            raise EdgeUnavailable(reason="closed",
                                  message=f"the connection to the edge at {self.endpoint} is gone ({exc})") from None
        while True:
            record = self._next_record(link, deadline, timeout)
            arrived = time.monotonic()
            try:
                plain = link.sealer.open(record) if link.sealer is not None else record
                msg = env.decode(framing.unpack(plain, self.limits.max_frames + 1), self.limits)
            except EnvelopeError as exc:
                self._discard_socket()
                raise EnvelopeError(f"malformed reply from the edge: {exc.reason}", exc.code, rid) from None
            if msg.id not in (rid, 0):
                continue  # not ours (cannot happen after a discard; a guard all the same)
            if msg.kind is Kind.ERROR and msg.meta.get("code") == "refused":
                self._discard_socket()
                raise EdgeUnavailable(reason="refused", message=f"the edge at {self.endpoint} refused this client: "
                                                 f"{msg.meta.get('reason', '')}")
            reply_bytes = len(record) + framing.PREFIX.size
            if self.link is not None and self.link.down is not None:
                release = self.link.down.schedule(arrived, reply_bytes)
                if release > deadline:
                    _sleep_until(deadline)
                    raise self._late(timeout)
                _sleep_until(release)
            return self._result(msg, expect, sent_at, time.monotonic(), request_bytes, reply_bytes)

    def _late(self, timeout: float) -> EdgeUnavailable:
        return EdgeUnavailable(reason="timeout", message=f"no reply from the edge at {self.endpoint} within "
                                                         f"{timeout:g} s (not reachable, or too slow)")

    def _result(self, msg: env.Envelope, expect: Kind, sent_at: float, received_at: float, request_bytes: int,
                reply_bytes: int) -> Response:
        if msg.kind is expect:
            return Response(msg.id, msg.meta, msg.payloads, sent_at, received_at, request_bytes, reply_bytes,
                            dict(msg.timing or {}))
        if msg.kind is Kind.BUSY:
            raise EdgeUnavailable(reason="busy", message=f"the edge at {self.endpoint} is busy "
                                          f"({msg.meta.get('queued')} of {msg.meta.get('max_queue')} queued)")
        if msg.kind is Kind.ERROR:
            code, reason = str(msg.meta.get("code", "unknown")), str(msg.meta.get("reason", ""))
            if code in ("deadline", "shutdown"):
                raise EdgeUnavailable(reason=code, message=f"the edge at {self.endpoint}: {reason}")
            raise EdgeError(code, reason)
        raise EnvelopeError(f"expected a {expect} message from the edge, got {msg.kind}", request_id=msg.id)
