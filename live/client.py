"""The local node's side of the edge link: a ZeroMQ DEALER client with a per-request timeout that
never hangs. Down, late, busy or shutting-down edges raise EdgeUnavailable, so the caller can fall
back to its local answer.

Threads: one DEALER socket per thread (created on first use, all on one context), not one socket
behind a lock. A lock would serialize the threads' requests, so a 5 MB upload would hold up every
other client's small request and the several-clients workload would measure the lock; with a
socket each, requests from different threads are in flight at once (sharing the shaped link, as
real clients do), and a reply can only reach the thread that asked. close() closes every thread's
socket; call it once the threads are done.

Timeouts: the reply is polled for until the deadline. After a timeout the thread's socket is
discarded with linger 0 (the lazy-pirate pattern): a request still queued in it (no edge listening)
is dropped rather than served by an edge that comes up later, and a late reply can never be
mistaken for the next one. ZMQ_IMMEDIATE is not used: with it, libzmq drops a reply that has
arrived but not yet been read when the edge closes the connection (an edge shutting down right
after its last reply), and a down edge is reported by the timeout either way.

User-space link emulation (live.pacing.UserLink), when given: an upload is held until the emulated
link has carried it (rate or trace, then RTT/2) before it is sent; a reply is held after it arrives
until the emulated downlink has carried it.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import zmq

from live import envelope as env
from live import netns
from live.envelope import Kind, Limits
from live.errors import EdgeError, EdgeUnavailable, EnvelopeError
from live.pacing import UserLink

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from live.curve import ClientCurve


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


HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL \
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


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
                raise EdgeUnavailable("closed", "the edge client is closed")
            if self._ctx is None:
                with netns.entered(self.netns_name):
                    ctx = zmq.Context()
                    ctx.socket(zmq.DEALER).close(0)  # starts the I/O thread here, in the namespace
                self._ctx = ctx
            return self._ctx

    def _socket(self) -> zmq.Socket:
        sock: zmq.Socket | None = getattr(self._local, "sock", None)
        if sock is not None and not sock.closed:
            return sock
        sock = self._context().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey = self.curve.server_public, self.curve.public
            sock.curve_secretkey = self.curve.secret
        # a failed handshake (no keys, keys the edge does not admit, or keys an edge without CURVE does not
        # expect) is silent in ZeroMQ: watch for it, so the caller hears why rather than a timeout
        mon = self._local.monitor = sock.get_monitor_socket(HANDSHAKE_FAILED)
        mon.setsockopt(zmq.LINGER, 0)
        poller = self._local.poller = zmq.Poller()  # made once per socket: waiting is on every request's path
        poller.register(sock, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        sock.connect(self.endpoint)
        with self._lock:
            self._sockets.update((sock, mon))
        self._local.sock = sock
        return sock

    def _refused(self) -> EdgeUnavailable | None:
        """The handshake failure the monitor saw, if any."""
        mon: zmq.Socket | None = getattr(self._local, "monitor", None)
        if mon is None or not mon.poll(0):
            return None
        from zmq.utils.monitor import recv_monitor_message

        event = recv_monitor_message(mon)["event"]
        why = "its key is not admitted, or it has none" if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else \
            "the two ends disagree on CURVE (one has keys, the other not, or the edge key is wrong)"
        return EdgeUnavailable("refused", f"the edge at {self.endpoint} refused this client's handshake: {why}")

    def _discard_socket(self) -> None:
        sock: zmq.Socket | None = getattr(self._local, "sock", None)
        mon: zmq.Socket | None = getattr(self._local, "monitor", None)
        self._local.sock = self._local.monitor = self._local.poller = None
        if mon is not None:
            if sock is not None and not sock.closed:
                sock.disable_monitor()
            with self._lock:
                self._sockets.discard(mon)
            mon.close(0)
        if sock is not None:
            with self._lock:
                self._sockets.discard(sock)
            sock.close(0)

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
        sock = self._socket()
        if self.link is not None and self.link.up is not None:
            release = self.link.up.schedule(sent_at, nbytes)
            if release > deadline:
                _sleep_until(deadline)
                raise self._late(timeout)
            _sleep_until(release)
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:  # the socket's queue is full: the edge has not been reachable for a while
            self._discard_socket()
            raise self._late(timeout) from None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll(sock, left):
                refused = self._refused()
                self._discard_socket()
                raise refused or self._late(timeout)
            parts = sock.recv_multipart(copy=False)
            arrived = time.monotonic()
            try:
                msg = env.decode(parts, self.limits)
            except EnvelopeError as exc:
                if exc.request_id not in (None, rid):
                    continue
                self._discard_socket()
                raise EnvelopeError(f"malformed reply from the edge: {exc.reason}", exc.code, rid) from None
            if msg.id != rid:
                continue  # not ours (cannot happen after a discard; a guard all the same)
            reply_bytes = env.message_bytes(parts)
            if self.link is not None and self.link.down is not None:
                release = self.link.down.schedule(arrived, reply_bytes)
                if release > deadline:
                    _sleep_until(deadline)
                    raise self._late(timeout)
                _sleep_until(release)
            return self._result(msg, expect, sent_at, time.monotonic(), nbytes, reply_bytes)

    def _poll(self, sock: zmq.Socket, left: float) -> bool:
        """Wait up to `left` s for a reply; False at the deadline or once the handshake failed."""
        events = dict(self._local.poller.poll(max(1, math.ceil(left * 1000))))
        return sock in events

    def _late(self, timeout: float) -> EdgeUnavailable:
        return EdgeUnavailable("timeout", f"no reply from the edge at {self.endpoint} within {timeout:g} s "
                                          "(not reachable, or too slow)")

    def _result(self, msg: env.Envelope, expect: Kind, sent_at: float, received_at: float, request_bytes: int,
                reply_bytes: int) -> Response:
        if msg.kind is expect:
            return Response(msg.id, msg.meta, msg.payloads, sent_at, received_at, request_bytes, reply_bytes,
                            dict(msg.timing or {}))
        if msg.kind is Kind.BUSY:
            raise EdgeUnavailable("busy", f"the edge at {self.endpoint} is busy "
                                          f"({msg.meta.get('queued')} of {msg.meta.get('max_queue')} queued)")
        if msg.kind is Kind.ERROR:
            code, reason = str(msg.meta.get("code", "unknown")), str(msg.meta.get("reason", ""))
            if code in ("deadline", "shutdown"):
                raise EdgeUnavailable(code, f"the edge at {self.endpoint}: {reason}")
            raise EdgeError(code, reason)
        raise EnvelopeError(f"expected a {expect} message from the edge, got {msg.kind}", request_id=msg.id)
