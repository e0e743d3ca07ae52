"""The edge node's transport: one ZeroMQ ROUTER socket serving many local nodes, a bounded queue in
front of a pluggable handler, per-request deadlines, a health check, clean shutdown.

Threads: one loop thread owns the ROUTER (ZeroMQ sockets are not thread-safe); it parses every
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
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import zmq

from live import envelope as env
from live import netns
from live.curve import ServerCurve, server_curve
from live.envelope import Kind, Limits
from live.errors import EnvelopeError
from testbed.argtypes import COUNT, Integer, Number, Parser
from testbed.errors import ConfigError, TestbedError

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)
POLL_MS = 50  # how often the loop looks at the stop flag; shutdown starts within this
TESTBED_NETNS_PREFIX = "tblive-"


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler gets. Times are this host's monotonic clock (time.monotonic())."""

    id: int
    meta: Mapping[str, Any]
    payloads: tuple[memoryview, ...]  # zero-copy views of the received frames; copy what you keep
    received_at: float
    deadline: float | None  # the latest start the client asked for; the server checks it first


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler returns: plain msgpack-able meta and binary payloads (sent without a copy)."""

    meta: Mapping[str, Any] = field(default_factory=dict)
    payloads: Sequence[Buffer] = ()


Handler = Callable[[Request], Reply]
WORKDIR_PREFIX = "testbed-edge-"
"""A model edge's scratch folder is `<tmp>/testbed-edge-<pid>-*`: spawn_edge removes it after the edge
exits, in case it died without doing so (killed)."""


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
        self._auth: Any = None  # the ZAP handler that admits CURVE clients (zmq.auth.thread)
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._done: zmq.Socket | None = None
        self._done_addr = f"inproc://edge-done-{id(self):x}"
        self._queue: queue.SimpleQueue[tuple[bytes, Request] | None] = queue.SimpleQueue()
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
        ctx = self._given_context or zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        try:
            router.setsockopt(zmq.LINGER, self.linger_ms)
            # libzmq refuses a single frame above this before allocating it (and drops the peer);
            # everything up to it gets a proper error reply from the envelope checks
            router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
            if self.curve is not None:  # every client must prove an admitted key before a request is read
                self._auth = _admit(ctx, self.curve)
                router.curve_secretkey, router.curve_publickey = self.curve.secret, self.curve.public
                router.curve_server = True
            router.bind(self.bind)
        except zmq.ZMQError as exc:
            router.close(0)
            self._stop_auth()
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
                frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._on_message(router, frames)

    def _forward_replies(self, done: zmq.Socket, router: zmq.Socket) -> None:
        while True:
            try:
                frames = done.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._outstanding -= 1
            self.counts["replies"] += 1
            router.send_multipart(frames, copy=False)

    def _send(self, router: zmq.Socket, ident: Any, frames: list[Any]) -> None:
        router.send_multipart([ident, *frames], copy=False)

    def _error(self, router: zmq.Socket, ident: Any, rid: int, code: str, reason: str) -> None:
        self.counts["errors"] += 1
        self._send(router, ident, env.encode(Kind.ERROR, rid, {"code": code, "reason": reason}))

    def _on_message(self, router: zmq.Socket, frames: list[Any]) -> None:
        received_at = time.monotonic()
        ident, body = frames[0], frames[1:]
        try:
            msg = env.decode(body, self.limits)
        except EnvelopeError as exc:
            self.counts["malformed"] += 1
            self._error(router, ident, exc.request_id or 0, exc.code, exc.reason)
            return
        if msg.kind is Kind.HEALTH:
            self.counts["health"] += 1
            self._send(router, ident, env.encode(Kind.HEALTH, msg.id, self.health()))
            return
        if msg.kind is not Kind.REQUEST:
            self.counts["malformed"] += 1
            self._error(router, ident, msg.id, "malformed", f"a {msg.kind} message is not a request")
            return
        if self._stop_requested:
            self._error(router, ident, msg.id, "shutdown", "the edge is shutting down")
            return
        if self._queue.qsize() >= self.max_queue and not self._idle_worker_likely():
            self.counts["busy"] += 1
            self._send(router, ident, env.encode(Kind.BUSY, msg.id, {"queued": self._queue.qsize(),
                                                                      "max_queue": self.max_queue}))
            return
        deadline = None if msg.deadline_ms is None else received_at + msg.deadline_ms / 1000
        self.counts["requests"] += 1
        self._outstanding += 1
        self._queue.put((ident.bytes if isinstance(ident, zmq.Frame) else bytes(ident),
                         Request(msg.id, msg.meta, msg.payloads, received_at, deadline)))

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
                self._error(router, item[0], item[1].id, "shutdown", "the edge shut down before serving this")
        for _ in self._threads:
            self._queue.put(None)

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def _close_sockets(self) -> None:
        for t in self._threads:
            t.join(timeout=1.0)
        stuck = [t.name for t in self._threads if t.is_alive()]
        for sock in (self._router, self._done):
            if sock is not None:
                sock.close(self.linger_ms if sock is self._router else 0)
        self._router = self._done = None
        self._stop_auth()
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
                ident, req = item
                push.send_multipart([ident, *self._serve_one(req)], copy=False)
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


def _admit(ctx: zmq.Context, curve: ServerCurve) -> Any:
    """A ZAP handler on `ctx` that admits the CURVE clients whose public keys are in curve.clients_dir."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx, log=logging.getLogger("testbed.edge.auth"))
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.clients_dir))
    return auth


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


READY = "edge listening on "


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="testbed edge",
                                description="Serve edge requests over ZeroMQ until SIGINT/SIGTERM.")
    p.add_argument("--bind", required=True, help="tcp://HOST:PORT (PORT may be *); loopback or a testbed namespace's "
                                                 "address unless --public")
    p.add_argument("--handler", default="live.handlers:probe", help="module:function taking a Request, returning a "
                                                                   "Reply (default: the diagnostic probe handler)")
    p.add_argument("--max-queue", type=COUNT, default=8, help="requests that may wait; more get 'busy' (default 8)")
    p.add_argument("--workers", type=COUNT, default=1, help="requests served at once (default 1)")
    p.add_argument("--max-message-mb", type=Number(gt=0.0), default=env.DEFAULT_MAX_MESSAGE_BYTES / 2**20,
                   help="largest request accepted, MiB (default 512)")
    p.add_argument("--drain-s", type=Number(ge=0.0), default=30.0, help="on shutdown, wait this long for requests in service")
    p.add_argument("--linger-ms", type=Integer(0), default=1000, help="on shutdown, time to flush replies (default 1000)")
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
    from live.edge_node import ModelEdge
    from testbed.models.pair import make_pair

    return ModelEdge(make_pair(args.models, args.device), gpus=args.workers, chunk_frames=args.chunk_frames,
                     max_message_bytes=int(args.max_message_mb * 2**20))


def _stop_on_eof(server: EdgeServer) -> None:
    while os.read(sys.stdin.fileno(), 4096):
        pass
    server.stop()


@dataclass
class EdgeProcess:
    """An edge server in a child process (spawn_edge)."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    _stderr: deque[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident set size of the edge process, from /proc."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.proc.pid}")

    def stderr_tail(self) -> str:
        return "".join(self._stderr)


@contextlib.contextmanager
def spawn_edge(bind: str, handler: str = "live.handlers:probe", *, netns_name: str | None = None,
               max_queue: int = 8, workers: int = 1, extra_args: Sequence[str] = (), ready_timeout_s: float = 30.0,
               stop_timeout_s: float = 10.0) -> Iterator[EdgeProcess]:
    """Run `python -m live.edge_server` in a child (inside `netns_name` when given) and wait until it
    listens. On exit: SIGTERM, a clean drain, SIGKILL only if it overstays `stop_timeout_s`. The child
    also stops when this process dies (its stdin closes). Raises TestbedError if it does not start."""
    cmd = [sys.executable, "-m", "live.edge_server", "--bind", bind, "--handler", handler, "--max-queue",
           str(max_queue), "--workers", str(workers), "--stop-on-stdin-eof",
           *(["--netns", netns_name] if netns_name else []), *extra_args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail: deque[str] = deque(maxlen=40)
    assert proc.stdout is not None and proc.stderr is not None
    drain = threading.Thread(target=_collect, args=(proc.stderr, tail), daemon=True)
    drain.start()
    try:
        endpoint = _wait_ready(proc, ready_timeout_s, tail)
        yield EdgeProcess(proc, endpoint, tail)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        drain.join(timeout=1.0)
        proc.stderr.close()
        _remove_scratch(proc.pid)


def _remove_scratch(pid: int) -> None:
    """The scratch folder of a model edge that is gone (a killed one could not remove its own)."""
    import shutil
    import tempfile

    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{pid}-*"):
        shutil.rmtree(path, ignore_errors=True)


def _collect(pipe: Any, tail: deque[str]) -> None:
    for raw in iter(pipe.readline, b""):
        tail.append(raw.decode(errors="replace"))


def _wait_ready(proc: subprocess.Popen[bytes], timeout_s: float, tail: deque[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline().decode(errors="replace")
            if line.startswith(READY):
                return line[len(READY):].split()[0]
            if not line:  # EOF: the child exited
                proc.wait()
                time.sleep(0.05)  # let the stderr reader catch the last line
                raise TestbedError(f"edge exited with code {proc.returncode}: {''.join(tail).strip() or 'no output'}")
    raise TestbedError(f"edge did not start listening within {timeout_s:g} s")


if __name__ == "__main__":
    # run the importable module's main, so a handler's `from live.edge_server import Reply` is our Reply
    from live.edge_server import main as _main

    sys.exit(_main())
