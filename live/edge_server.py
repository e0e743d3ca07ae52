"""The edge node's transport: one ZeroMQ STREAM socket serving many local nodes with the testbed's own
length-prefixed framing (live/framing.py), a bounded queue in front of a pluggable handler,
per-request deadlines, a health check, clean shutdown.

Memory: a message's length is read before any of it is kept. One above the message limit gets an
"oversize" error, one that would take the edge past its receive budget (the limit plus
RECEIVE_MARGIN, counting every request held: arriving, queued or in service) a "busy" answer, and
either way its bytes are dropped as they arrive. So whatever peers send, the edge holds at most
that much request data, plus what libzmq queues per connection (CHUNK_HWM chunks, for at most
MAX_CONNECTIONS peers). ZeroMQ's own protocol would have assembled every frame of a multipart
message first. An edge with CURVE keys admits a connection only after its handshake (framing.py),
and holds at most MAX_HANDSHAKE bytes of a peer before that.

Threads: one loop thread owns the socket (ZeroMQ sockets are not thread-safe); it parses every
message, answers health checks, errors and "busy" itself, and hands requests to `workers` worker
threads through a queue of at most `max_queue` waiting requests. A worker calls
`handler(request) -> Reply` and passes the encoded reply back over an inproc socket (zero-copy) for
the loop to send. So a health check is answered at once however long the handler takes, and a
malformed message never reaches the handler.

Every request gets exactly one reply: the handler's, an error (malformed, deadline passed before
service, handler failed, shutting down) or "busy". Shutdown (stop(), SIGINT/SIGTERM under
serve_until_signal): requests still waiting get a "shutdown" error, requests in service finish and
their replies are sent (up to `drain_s`), then sockets close with a bounded linger.

Binding: loopback, or any address when the server runs inside a testbed namespace
(live.shaping's); anything else only with public=True (`--public`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import zmq

from testbed.live import envelope as env
from testbed.live import netns
from testbed.live import framing
from testbed.live.curve import ServerCurve, server_curve
from testbed.live.envelope import Kind, Limits
from testbed.live.errors import EnvelopeError
from testbed.live.messages import READY, Handler, Reply, Request
from testbed.argtypes import COUNT, Integer, Number, Parser
from testbed.errors import ConfigError, TestbedError

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)
POLL_MS = 50  # how often the loop looks at the stop flag; shutdown starts within this
TESTBED_NETNS_PREFIX = "tblive-"
RECEIVE_MARGIN = 8 * 2**20
"""Request bytes the edge may hold beyond one message of the limit (see the module docstring)."""
MAX_CONNECTIONS = 256
"""Peers connected at once; a further one is closed at once (its 'busy' error says why)."""
REFUSALS_LOGGED = 20
"""Refused connections the edge logs one line each for (a flood of bad handshakes is then only counted)."""
CHUNK_HWM = 32
"""Chunks (of at most 8 KiB: libzmq's read size) libzmq queues per connection before it stops reading
it: with MAX_CONNECTIONS, at most 64 MiB of the edge's memory outside the receive budget."""


@dataclass
class _Conn:
    """One peer's connection: its reader, and its sealer once a CURVE handshake admitted it."""

    reader: framing.Reader
    sealer: framing.Sealer | None = None
    offered: framing.Sealer | None = None  # WELCOME sent with it; READY awaited
    cookie: bytes = b""


def inside_testbed_netns() -> bool:
    """Whether the calling thread is in a namespace live.shaping made (so its address is private)."""
    here = netns.current_inode()
    return any(netns.inode_of(n) == here for n in netns.list_names() if n.startswith(TESTBED_NETNS_PREFIX))


def check_bind(endpoint: str, public: bool = False) -> None:
    """Refuse an endpoint other hosts could reach unless `public`. Raises ConfigError."""
    m = re.fullmatch(r"(tcp|ipc|inproc)://(.+)", endpoint)
    if not m:
        raise ConfigError("--bind", f"{endpoint!r} is not a ZeroMQ endpoint like tcp://127.0.0.1:5555")
    if m.group(1) != "tcp" or public:
        return
    host, sep, port = m.group(2).rpartition(":")
    if not sep or not (port == "*" or port.isdigit()):
        raise ConfigError("--bind", f"{endpoint!r} has no port (tcp://HOST:PORT, PORT may be *)")
    host = host.strip("[]")
    if host == "localhost":
        return
    if host == "*":
        raise ConfigError("--bind", f"{endpoint} listens on every interface; pass --public to allow that")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError("--bind", f"{host!r} is not an IP address; bind to loopback or the namespace's "
                                    "address, or pass --public") from None
    if ip.is_loopback:
        return
    if ip.is_unspecified:
        raise ConfigError("--bind", f"{endpoint} listens on every interface; pass --public to allow that")
    if inside_testbed_netns():
        return
    raise ConfigError("--bind", f"{host} is neither loopback nor inside a testbed namespace; "
                                "pass --public to serve on it")


class EdgeServer:
    """Serve `handler` on `bind` (see the module docstring). Opening binds; nothing happens in the
    constructor. Use as a context manager, or open(), then serve() (blocking) or start() (a thread),
    and close()."""

    def __init__(self, bind: str, handler: Handler, max_queue: int = 8, *, workers: int = 1,
                 limits: Limits = Limits(), linger_ms: int = 1000, drain_s: float = 30.0, public: bool = False,
                 context: zmq.Context | None = None, curve: ServerCurve | None = None) -> None:
        if max_queue < 0 or workers < 1:
            raise ValueError(f"max_queue must be >= 0 and workers >= 1 (got {max_queue}, {workers})")
        self.bind = bind
        self.handler = handler
        self.max_queue = max_queue
        self.workers = workers
        self.limits = limits
        self.linger_ms = linger_ms
        self.drain_s = drain_s
        self.public = public
        self._given_context = context
        self.curve = curve
        self._admitted: set[bytes] = set()  # raw public keys of the CURVE clients admitted
        self._conns: dict[bytes, _Conn] = {}
        self.budget = framing.Budget(limits.max_message_bytes + framing.BOX_OVERHEAD + RECEIVE_MARGIN)
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._done: zmq.Socket | None = None
        self._done_addr = f"inproc://edge-done-{id(self):x}"
        self._queue: queue.SimpleQueue[tuple[bytes, Request, int] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._serve_thread: threading.Thread | None = None
        self._stop_requested = False
        self._outstanding = 0  # accepted requests not yet answered (loop thread only)
        self._closed = False
        self.endpoint = ""
        self.counts = {"requests": 0, "replies": 0, "errors": 0, "busy": 0, "health": 0, "malformed": 0}

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> EdgeServer:
        """Bind and start the workers (idempotent). Raises ConfigError for a refused or busy address."""
        if self._router is not None:
            return self
        if self._closed:
            raise RuntimeError("EdgeServer is closed")
        check_bind(self.bind, self.public)
        if not self.bind.startswith("tcp://"):
            raise ConfigError("--bind", f"{self.bind}: the edge serves TCP endpoints only (tcp://HOST:PORT)")
        if self.curve is not None:  # every client must prove an admitted key before a request is read
            self._admitted = admitted_keys(self.curve.clients_dir)
        ctx = self._given_context or zmq.Context()
        router = ctx.socket(zmq.STREAM)
        try:
            router.setsockopt(zmq.LINGER, self.linger_ms)
            router.setsockopt(zmq.RCVHWM, CHUNK_HWM)
            router.bind(self.bind)
        except zmq.ZMQError as exc:
            router.close(0)
            if self._given_context is None:
                ctx.term()
            raise ConfigError("--bind", f"cannot bind {self.bind}: {exc}") from None
        self._ctx, self._router = ctx, router
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._done = ctx.socket(zmq.PULL)
        self._done.setsockopt(zmq.LINGER, 0)
        self._done.bind(self._done_addr)
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"edge-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __enter__(self) -> EdgeServer:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> EdgeServer:
        """Open, then serve in a background thread until stop() or close()."""
        self.open()
        if self._serve_thread is None:
            self._serve_thread = threading.Thread(target=self.serve, name="edge-serve", daemon=True)
            self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Ask the loop to shut down (safe from a signal handler or another thread)."""
        self._stop_requested = True

    def close(self, timeout_s: float | None = None) -> None:
        """Stop, wait for the loop to drain (at most drain_s + timeout_s), close the sockets."""
        self.stop()
        if self._serve_thread is not None:
            self._serve_thread.join(self.drain_s + (timeout_s if timeout_s is not None else 5.0))
            if self._serve_thread.is_alive():
                log.warning("edge loop did not stop in time; closing anyway")
                return
        elif self._router is not None and not self._closed:
            self._shutdown_workers(reject=True)
            self._close_sockets()
        self._closed = True

    # -- the loop --------------------------------------------------------------------------------

    def serve(self) -> None:
        """Run the loop in the calling thread until stop(); then drain and close the sockets."""
        self.open()
        router, done = self._router, self._done
        assert router is not None and done is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(done, zmq.POLLIN)
        stop_began: float | None = None
        try:
            while True:
                if self._stop_requested and stop_began is None:
                    stop_began = time.monotonic()
                    self._shutdown_workers(reject=True)
                if stop_began is not None:
                    if self._outstanding == 0:
                        break
                    if time.monotonic() - stop_began > self.drain_s:
                        log.warning("edge: %d request(s) still in service after %.3g s; closing",
                                    self._outstanding, self.drain_s)
                        break
                events = dict(poller.poll(POLL_MS))
                if done in events:
                    self._forward_replies(done, router)
                if router in events:
                    self._receive(router)
        finally:
            self._close_sockets()
            self._closed = True

    def _receive(self, router: zmq.Socket) -> None:
        for _ in range(256):  # then look at finished replies again
            try:
                ident, chunk = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # not [identity, data]: cannot come from a STREAM socket
                continue
            conn = self._conns.get(ident)
            if not chunk:  # a connection opened or closed
                if conn is not None:
                    self._drop(ident)
                elif len(self._conns) >= MAX_CONNECTIONS:
                    self.counts["busy"] += 1
                    self._write(router, ident, framing.record(framing.pack(env.encode(
                        Kind.BUSY, 0, {"reason": f"{MAX_CONNECTIONS} peers connected already"}))))
                    self._write(router, ident, b"")
                else:
                    self._conns[ident] = self._new_conn()
                continue
            if conn is None:
                continue
            try:
                for item in conn.reader.feed(chunk):
                    if isinstance(item, framing.FramingError):
                        self.counts["busy" if item.code == "busy" else "malformed"] += 1
                        kind = Kind.BUSY if item.code == "busy" else Kind.ERROR
                        meta = {"code": item.code, "reason": item.reason}
                        self._send(router, ident, env.encode(kind, 0, meta))
                    elif not self._on_record(router, ident, conn, item):
                        break
            except framing.FramingError as exc:  # a peer mid-handshake that sent more than a handshake
                self._refuse(router, ident, exc.reason)

    def _new_conn(self) -> _Conn:
        if self.curve is not None:
            return _Conn(framing.Reader(framing.MAX_HANDSHAKE, strict=True))
        return _Conn(self._reader())

    def _reader(self) -> framing.Reader:
        return framing.Reader(self.limits.max_message_bytes + framing.BOX_OVERHEAD, self.budget)

    def _drop(self, ident: bytes) -> None:
        conn = self._conns.pop(ident, None)
        if conn is not None:
            conn.reader.release()

    def _refuse(self, router: zmq.Socket, ident: bytes, reason: str) -> None:
        """Tell a peer it is refused (in the clear), then close its connection; the edge's log says so."""
        self.counts["malformed"] += 1
        self.counts["refused"] = self.counts.get("refused", 0) + 1
        if self.counts["refused"] <= REFUSALS_LOGGED:
            log.warning("edge: refused a connection: %s%s", reason, " (further refusals are counted, not logged)"
                        if self.counts["refused"] == REFUSALS_LOGGED else "")
        self._write(router, ident, framing.record(framing.pack(
            env.encode(Kind.ERROR, 0, {"code": "refused", "reason": reason}))))
        self._write(router, ident, b"")
        self._drop(ident)

    def _on_record(self, router: zmq.Socket, ident: bytes, conn: _Conn, body: bytearray) -> bool:
        """One whole record of a connection; False once the connection is closed."""
        held = len(body)
        if self.curve is not None and conn.sealer is None:
            return self._handshake(router, ident, conn, bytes(body))
        if self.curve is None and framing.is_handshake(body):
            self.budget.give(held)
            self._refuse(router, ident, "this edge does not use CURVE; connect without keys")
            return False
        queued = False
        try:
            plain = conn.sealer.open(body) if conn.sealer is not None else body
            queued = self._on_message(router, ident, framing.unpack(plain, self.limits.max_frames + 1), held)
        except framing.FramingError as exc:
            self.counts["malformed"] += 1
            self._error(router, ident, 0, exc.code, exc.reason)
        finally:
            if not queued:
                self.budget.give(held)
        return True

    def _handshake(self, router: zmq.Socket, ident: bytes, conn: _Conn, body: bytes) -> bool:
        assert self.curve is not None
        if conn.offered is None:
            key = framing.client_of_hello(body)
            if key is None:
                self._refuse(router, ident, "this edge serves CURVE clients only: give --edge-key and --client-key")
                return False
            if key not in self._admitted:
                self._refuse(router, ident, "this client's key is not admitted by the edge")
                return False
            conn.offered = framing.Sealer(framing.raw_key(self.curve.secret), key)
            hello, conn.cookie = framing.welcome(conn.offered)
            self._write(router, ident, framing.record(hello))
            return True
        if not framing.ready_matches(conn.offered, body, conn.cookie):
            self._refuse(router, ident, "the handshake failed: the client does not hold its key's secret")
            return False
        conn.sealer, conn.offered = conn.offered, None
        conn.reader.max_record, conn.reader.budget, conn.reader.strict = \
            self.limits.max_message_bytes + framing.BOX_OVERHEAD, self.budget, False
        return True

    def _forward_replies(self, done: zmq.Socket, router: zmq.Socket) -> None:
        while True:
            try:
                frames = done.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._outstanding -= 1
            self.counts["replies"] += 1
            self.budget.give(int.from_bytes(frames[1].bytes, "big"))
            self._send(router, frames[0].bytes, frames[2:])

    def _send(self, router: zmq.Socket, ident: bytes, frames: list[Any]) -> None:
        conn = self._conns.get(ident)
        if conn is None:  # the peer has gone: nobody to answer
            return
        self._write(router, ident, *framing.parts(frames, conn.sealer))

    def _write(self, router: zmq.Socket, ident: bytes, *data: Buffer) -> None:
        """Parts of a record to a peer, never blocking the loop: a peer gone since (its close not yet
        read) or one that has not read its last thousand messages is dropped, not an error, and its
        connection closed (a record may have been cut)."""
        try:
            framing.write(router, ident, data, zmq.NOBLOCK)
        except zmq.ZMQError:  # EHOSTUNREACH, or EAGAIN: its queue is full
            self._drop(ident)
            with contextlib.suppress(zmq.ZMQError):
                router.send_multipart([ident, b""], zmq.NOBLOCK)

    def _error(self, router: zmq.Socket, ident: bytes, rid: int, code: str, reason: str) -> None:
        self.counts["errors"] += 1
        self._send(router, ident, env.encode(Kind.ERROR, rid, {"code": code, "reason": reason}))

    def _on_message(self, router: zmq.Socket, ident: bytes, body: list[Any], held: int) -> bool:
        """One message's frames; True if it was queued for a worker (which then holds its bytes)."""
        received_at = time.monotonic()
        try:
            msg = env.decode(body, self.limits)
        except EnvelopeError as exc:
            self.counts["malformed"] += 1
            self._error(router, ident, exc.request_id or 0, exc.code, exc.reason)
            return False
        if msg.kind is Kind.HEALTH:
            self.counts["health"] += 1
            self._send(router, ident, env.encode(Kind.HEALTH, msg.id, self.health()))
            return False
        if msg.kind is not Kind.REQUEST:
            self.counts["malformed"] += 1
            self._error(router, ident, msg.id, "malformed", f"a {msg.kind} message is not a request")
            return False
        if self._stop_requested:
            self._error(router, ident, msg.id, "shutdown", "the edge is shutting down")
            return False
        if self._queue.qsize() >= self.max_queue and not self._idle_worker_likely():
            self.counts["busy"] += 1
            self._send(router, ident, env.encode(Kind.BUSY, msg.id, {"queued": self._queue.qsize(),
                                                                      "max_queue": self.max_queue}))
            return False
        deadline = None if msg.deadline_ms is None else received_at + msg.deadline_ms / 1000
        self.counts["requests"] += 1
        self._outstanding += 1
        self._queue.put((ident, Request(msg.id, msg.meta, msg.payloads, received_at, deadline), held))
        return True

    def _idle_worker_likely(self) -> bool:
        # with max_queue=0 a request is still accepted when a worker is free to start it at once
        return self.max_queue == 0 and self._outstanding < self.workers

    def health(self) -> dict[str, Any]:
        waiting = self._queue.qsize()
        status = "stopping" if self._stop_requested else "busy" if waiting >= self.max_queue else "ok"
        return {"status": status, "queued": waiting, "outstanding": self._outstanding, "max_queue": self.max_queue,
                "workers": self.workers, "max_message_bytes": self.limits.max_message_bytes, "pid": os.getpid(),
                "served": self.counts["replies"]}

    def _shutdown_workers(self, reject: bool) -> None:
        """Answer every waiting request with a shutdown error, then tell each worker to exit once
        its current request is done."""
        router = self._router
        while reject and router is not None:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._outstanding -= 1
                self.budget.give(item[2])
                self._error(router, item[0], item[1].id, "shutdown", "the edge shut down before serving this")
        for _ in self._threads:
            self._queue.put(None)

    def _close_sockets(self) -> None:
        for t in self._threads:
            t.join(timeout=1.0)
        stuck = [t.name for t in self._threads if t.is_alive()]
        for sock in (self._router, self._done):
            if sock is not None:
                sock.close(self.linger_ms if sock is self._router else 0)
        self._router = self._done = None
        if self._ctx is not None and self._given_context is None:
            if stuck:  # a handler that never returns still holds its socket: term() would wait for it
                log.warning("edge: %s still in a handler; leaving its socket to process exit", ", ".join(stuck))
            else:
                self._ctx.term()
        self._ctx = None

    # -- workers ---------------------------------------------------------------------------------

    def _work(self) -> None:
        assert self._ctx is not None
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, self.linger_ms)
        push.connect(self._done_addr)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                ident, req, held = item
                push.send_multipart([ident, held.to_bytes(8, "big"), *self._serve_one(req)], copy=False)
                # let the request's frames go now, while the reply travels, not when the next
                # request arrives (freeing a big frame costs ~0.1 ms of munmap)
                item = req = None  # type: ignore[assignment]
        finally:
            push.close()

    def _serve_one(self, req: Request) -> list[Any]:
        started = time.monotonic()
        if req.deadline is not None and started > req.deadline:
            return env.encode(Kind.ERROR, req.id, {"code": "deadline", "reason": f"deadline passed "
                              f"{(started - req.deadline) * 1000:.1f} ms before service could start"})
        try:
            reply = self.handler(req)
            if not isinstance(reply, Reply):
                raise TypeError(f"handler returned {type(reply).__name__}, not a Reply")
            finished = time.monotonic()
            return env.encode(Kind.REPLY, req.id, reply.meta, reply.payloads,
                              timing={"queue_s": started - req.received_at, "service_s": finished - started})
        except TestbedError as exc:  # bad input the handler detected (a corrupt token payload, ...)
            return env.encode(Kind.ERROR, req.id, {"code": "invalid", "reason": _one_line(exc)})
        except Exception as exc:  # a handler bug must not take the edge down
            log.exception("edge handler failed on request %d", req.id)
            return env.encode(Kind.ERROR, req.id, {"code": "internal",
                                                   "reason": f"{type(exc).__name__}: {_one_line(exc)}"})


def admitted_keys(clients_dir: Path) -> set[bytes]:
    """The raw public keys of the client key files (*.key) in `clients_dir`."""
    import zmq.auth

    keys = set()
    for path in sorted(clients_dir.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(path)
            keys.add(framing.raw_key(public))
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--curve-clients", f"{path} is not a ZeroMQ CURVE key file ({exc})") from None
    return keys


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- running a server until a signal; a server in a child process ---------------------------------

def serve_until_signal(server: EdgeServer) -> None:
    """Serve in the calling (main) thread until SIGINT or SIGTERM, then shut down cleanly."""
    def on_signal(signum: int, frame: object) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def load_handler(spec: str) -> Handler:
    """`module:function` to a handler. Raises ConfigError."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError("--handler", f"{spec!r} is not module:function")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("--handler", f"cannot load {spec}: {exc}") from None
    if not callable(obj):
        raise ConfigError("--handler", f"{spec} is not callable")
    return obj  # type: ignore[no-any-return]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="testbed edge",
                                description="Serve edge requests over ZeroMQ until SIGINT/SIGTERM.")
    p.add_argument("--bind", required=True, help="tcp://HOST:PORT (PORT may be *); loopback or a testbed namespace's "
                                                 "address unless --public")
    p.add_argument("--handler", default="testbed.live.handlers:probe",
                   help="module:function taking a Request, returning a Reply (default: the diagnostic probe handler)")
    p.add_argument("--max-queue", type=COUNT, default=8, help="requests that may wait; more get 'busy' (default 8)")
    p.add_argument("--workers", type=COUNT, default=1, help="requests served at once (default 1)")
    p.add_argument("--max-message-mb", type=Number(gt=0.0), default=env.DEFAULT_MAX_MESSAGE_BYTES / 2**20,
                   help="largest request accepted, MiB (default 512)")
    p.add_argument("--drain-s", type=Number(ge=0.0), default=30.0,
                   help="on shutdown, wait this long for requests in service")
    p.add_argument("--linger-ms", type=Integer(0), default=1000,
                   help="on shutdown, time to flush replies (default 1000)")
    p.add_argument("--netns", help="enter this network namespace first (the shaped link's edge side)")
    p.add_argument("--public", action="store_true", help="allow binding to a non-loopback address")
    p.add_argument("--models", help="serve the model pair's edge steps with this preset (tiny, real-size, pocket, a "
                                    "model-pair folder, or small=PATH,large=PATH checkpoint folders) instead of "
                                    "--handler")
    p.add_argument("--device", default="cpu", help="torch device for --models (default cpu)")
    p.add_argument("--chunk-frames", type=COUNT, default=16, help="frames per pipeline chunk for --models")
    p.add_argument("--curve-secret", help="serve with ZeroMQ CURVE: this edge's .key_secret file (testbed curve-keys)")
    p.add_argument("--curve-clients", help="with --curve-secret: the folder of client public keys (*.key) admitted")
    p.add_argument("--stop-on-stdin-eof", action="store_true",
                   help="shut down when stdin closes (a parent that dies takes its edge with it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run an edge server until a signal. Returns the exit code (2 for a user error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a refused flag (one line)
        return int(exc.code or 0)
    try:
        if args.netns:
            try:
                netns.enter_for_good(args.netns)  # before any thread exists: ZeroMQ's threads inherit it
            except OSError as exc:
                raise ConfigError("--netns", f"cannot enter network namespace {args.netns}: {exc.strerror}") from None
        handler = load_handler(args.handler) if not args.models else _model_handler(args)
        limits = Limits(max_message_bytes=int(args.max_message_mb * 2**20))
        try:
            if bool(args.curve_secret) != bool(args.curve_clients):
                raise ConfigError("--curve-secret", "give --curve-secret and --curve-clients together")
            curve = server_curve(Path(args.curve_secret), Path(args.curve_clients)) if args.curve_secret else None
            server = EdgeServer(args.bind, handler, args.max_queue, workers=args.workers, limits=limits,
                                linger_ms=args.linger_ms, drain_s=args.drain_s, public=args.public, curve=curve)
            with server:
                if args.stop_on_stdin_eof:
                    threading.Thread(target=_stop_on_eof, args=(server,), name="edge-stdin", daemon=True).start()
                print(f"{READY}{server.endpoint} (pid {os.getpid()})", flush=True)
                serve_until_signal(server)
        finally:  # a model handler holds a scratch folder and thread pools
            close = getattr(handler, "close", None)
            if callable(close):
                close()
    except TestbedError as exc:
        print(f"testbed: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _model_handler(args: argparse.Namespace) -> Handler:
    """The edge's real work: the model pair behind the edge steps (live.edge_node)."""
    from testbed.live.edge_node import ModelEdge
    from testbed.models.pair import make_pair

    return ModelEdge(make_pair(args.models, args.device), gpus=args.workers, chunk_frames=args.chunk_frames,
                     max_message_bytes=int(args.max_message_mb * 2**20))


def _stop_on_eof(server: EdgeServer) -> None:
    while os.read(sys.stdin.fileno(), 4096):
        pass
    server.stop()


if __name__ == "__main__":
    # run the importable module's main, so the server's classes are the importable module's
    from testbed.live.edge_server import main as _main

    sys.exit(_main())
