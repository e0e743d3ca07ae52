"""Link shaping for live runs: two network namespaces joined by a veth pair, each direction shaped
on the egress of its side (uplink on the device end, downlink on the edge end), or loopback with
shaping in user space when namespaces or qdiscs are not available.

Backends (the string a run writes into versions.json as `shaping`):
  "tbf+netem"  tbf rate, netem delay RTT/2 and loss, all in the kernel
  "tbf"        tbf rate in the kernel; netem missing, so the transport adds RTT/2 each way (and,
               with loss, what the sim's TCP Reno model adds beyond serialization) in user space
               (live.pacing)
  "htb"        the same with an htb class instead of tbf
  "user-space" loopback, no kernel shaping: the transport paces at rate*efficiency (or by the trace)
               and adds the delay (no root, no namespaces, or asked for)

`probe()` finds out what this machine has and tells "module missing" (NetlinkError ENOENT) from
"permission denied" (EPERM).

A mahimahi trace drives the link: the kernel backends change the tbf rate (htb class rate) over
time from a thread, in steps of 500 ms with neighbours within 5% merged (the source traces are
per-second samples; each change refills the tbf bucket, so fewer changes keep the rate honest: at
100 ms steps a 5 MB upload ran 4% fast); the user-space backend paces the sender by the trace's
delivery opportunities exactly as the sim does (`MahimahiLink.deliver`, mahimahi's rule).

Names are per run: namespaces `tblive-<pid>.<start time>-<token>-dev|edge`. Devices and qdiscs
live only inside them, so removing a run's namespaces removes everything it set up. Set-up and
tear-down are idempotent; tear-down runs on leaving the context manager (exceptions, SIGINT, and
SIGTERM, for which a handler is installed while the link is up in the main thread); namespaces left
by a killed run (its pid gone) are removed by the next set-up (`cleanup_stale`).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import math
import os
import secrets
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

from testbed.live import netns
from testbed.live.client import EdgeClient
from testbed.live.edge_server import TESTBED_NETNS_PREFIX, EdgeServer
from testbed.live.edge_spawn import EdgeProcess, spawn_edge
from testbed.live.errors import ShapingError
from testbed.live.pacing import Pacer, UserLink
from testbed.bandwidth import MahimahiLink, mahimahi_bytes, mean_mbps, read_mahimahi, scale_to_mean
from testbed.direction import link_seed

log = logging.getLogger(__name__)

PREFIX = TESTBED_NETNS_PREFIX
DEVICE_IF, EDGE_IF = "tbl-dev", "tbl-edge"  # inside the run's namespaces, so they never collide
DEVICE_ADDR, EDGE_ADDR, PREFIXLEN = "10.201.0.1", "10.201.0.2", 30
BACKENDS = ("tbf+netem", "tbf", "htb", "user-space")
ROOT = 0x10000  # handle 1:
TC_H_ROOT = 0xFFFFFFFF
TBF_UNDER_NETEM = 0x100000  # handle 10:, child of netem's 1:1
HTB_CLASS = 0x10010  # 1:10, the default class
MIN_RATE_BPS = 8_000  # a trace bin with no opportunities: tbf needs a rate > 0


@dataclass(frozen=True)
class LinkSpec:
    """What the link should look like. Rates are the shaped (L2) rates; goodput is rate*efficiency.
    Traces are mahimahi opportunity stamps (ms), already scaled (see load_trace); a direction with
    a trace ignores its fixed rate."""

    up_mbps: float
    down_mbps: float
    rtt_ms: float
    loss: float = 0.0
    efficiency: float = 1 / 1.055
    mtu: int = 1500
    up_trace: np.ndarray | None = field(default=None, compare=False)
    down_trace: np.ndarray | None = field(default=None, compare=False)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("up_mbps", "down_mbps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ShapingError(f"{name} must be > 0, got {v}")
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ShapingError(f"rtt_ms must be >= 0, got {self.rtt_ms}")
        if not 0 <= self.loss < 1:
            raise ShapingError(f"loss must be in [0, 1), got {self.loss}")
        if not 0 < self.efficiency <= 1:
            raise ShapingError(f"efficiency must be in (0, 1], got {self.efficiency}")
        for name in ("up_trace", "down_trace"):
            t = getattr(self, name)
            if t is not None and (len(t) == 0 or t[-1] <= 0):
                raise ShapingError(f"{name} is an empty mahimahi trace")

    def trace_link(self, direction: str) -> MahimahiLink | None:
        """The sim's model of a trace direction: MahimahiLink(stamps), as sim/engine builds it."""
        stamps = self.up_trace if direction == "up" else self.down_trace
        return None if stamps is None else MahimahiLink(stamps)

    def expected_transfer_s(self, direction: str, nbytes: int, start_s: float = 0.0) -> float:
        """The sim's time for `nbytes` over an idle link starting at trace time `start_s`: serialization
        at rate*efficiency (or over the trace), plus RTT/2."""
        trace = self.trace_link(direction)
        if trace is not None:
            ser = trace.finish_s(start_s, mahimahi_bytes(nbytes, self.mtu)) - start_s
        else:
            rate = self.up_mbps if direction == "up" else self.down_mbps
            ser = nbytes * 8 / (rate * 1e6 * self.efficiency)
        return ser + self.rtt_ms / 2000


def load_trace(path: Path, mean_mbps: float = 0.0, mtu: int = 1500) -> np.ndarray:
    """A mahimahi trace's stamps, scaled to `mean_mbps` when > 0 (as the sim does)."""
    stamps = read_mahimahi(Path(path))
    return scale_to_mean(stamps, mean_mbps, mtu) if mean_mbps > 0 else stamps


# -- probing ---------------------------------------------------------------------------------------

def why(exc: BaseException) -> str:
    """'module missing', 'permission denied' or the error itself, from a NetlinkError or OSError."""
    code = getattr(exc, "code", None) if not isinstance(exc, OSError) else exc.errno
    if code == errno.ENOENT:
        return "module missing"
    if code == errno.EPERM or code == errno.EACCES:
        return "permission denied"
    if code == errno.EOPNOTSUPP:
        return "not supported by this kernel"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Probe:
    """What this machine can do: "ok" or why not, for namespaces and each qdisc."""

    netns: str
    tbf: str
    htb: str
    netem: str

    def available(self) -> list[str]:
        """Usable backends, best first; user-space is always there."""
        ok = self.netns == "ok"
        out = []
        if ok and self.tbf == "ok" and self.netem == "ok":
            out.append("tbf+netem")
        if ok and self.tbf == "ok":
            out.append("tbf")
        if ok and self.htb == "ok":
            out.append("htb")
        return out + ["user-space"]

    def reason(self, backend: str) -> str:
        if backend == "user-space":
            return "ok"
        if self.netns != "ok":
            return f"network namespaces: {self.netns}"
        need = {"tbf+netem": ("tbf", "netem"), "tbf": ("tbf",), "htb": ("htb",)}[backend]
        bad = [f"{q}: {getattr(self, q)}" for q in need if getattr(self, q) != "ok"]
        return "; ".join(bad) or "ok"


def _owner_tag() -> str:
    """pid.start-time of this process: a namespace's owner is alive only if both still match."""
    return f"{os.getpid()}.{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _owner_alive(name: str) -> bool:
    tag = name[len(PREFIX):].split("-", 1)[0]
    pid_s, _, start = tag.partition(".")
    if not pid_s.isdigit():
        return False
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start == "" or _start_time(pid) == start


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Remove namespaces (with their veth ends and qdiscs) left by runs whose process is gone.
    Returns the names removed."""
    removed = []
    for name in netns.list_names():
        if name.startswith(prefix) and not _owner_alive(name):
            try:
                if netns.remove(name):
                    removed.append(name)
            except OSError as exc:
                log.warning("could not remove stale namespace %s: %s", name, why(exc))
    return removed


def _ipr(name: str) -> Any:
    from pyroute2 import IPRoute

    return IPRoute(netns=name, flags=0)


def _veth_pair(dev_ns: str, edge_ns: str) -> None:
    with _ipr(dev_ns) as ipr:
        ipr.link("add", ifname=DEVICE_IF, kind="veth", peer={"ifname": EDGE_IF, "net_ns_fd": edge_ns})
    for ns, ifname, addr in ((dev_ns, DEVICE_IF, DEVICE_ADDR), (edge_ns, EDGE_IF, EDGE_ADDR)):
        with _ipr(ns) as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=addr, prefixlen=PREFIXLEN)
            ipr.link("set", index=idx, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def probe() -> Probe:
    """Try a namespace, a veth pair and each qdisc in a scratch namespace; never raises."""
    name = f"{PREFIX}{_owner_tag()}-probe{secrets.token_hex(2)}"
    try:
        netns.create(name)
    except Exception as exc:  # any failure means: no namespaces here
        return Probe(why(exc), "untested", "untested", "untested")
    try:
        try:
            with _ipr(name) as ipr:
                ipr.link("add", ifname="tbl-p0", kind="veth", peer={"ifname": "tbl-p1"})
                idx = ipr.link_lookup(ifname="tbl-p0")[0]
        except Exception as exc:
            return Probe(f"veth: {why(exc)}", "untested", "untested", "untested")
        results = {}
        tries: dict[str, Callable[[Any], None]] = {
            "tbf": lambda ipr: ipr.tc("add", "tbf", idx, ROOT, rate="10mbit", burst=3200, latency="50ms"),
            "htb": lambda ipr: ipr.tc("add", "htb", idx, ROOT, default=0x10),
            "netem": lambda ipr: ipr.tc("add", "netem", idx, ROOT, delay=1000),
        }
        with _ipr(name) as ipr:
            for kind, attempt in tries.items():
                try:
                    attempt(ipr)
                    results[kind] = "ok"
                    ipr.tc("del", index=idx, handle=ROOT, parent=TC_H_ROOT)
                except Exception as exc:
                    results[kind] = why(exc)
        return Probe("ok", results["tbf"], results["htb"], results["netem"])
    finally:
        netns.remove(name)


# -- the shaped link -------------------------------------------------------------------------------

def _segments(stamps: np.ndarray, mtu: int, bin_ms: int, tolerance: float = 0.05) -> list[tuple[float, float]]:
    """(start s, rate bit/s) steps of a trace's rate over one period. Opportunities are counted per
    `bin_ms` bin; neighbouring bins within `tolerance` of the step's mean join it, and each step
    carries its bins' mean, so the trace's bytes are kept while the rate changes (each of which
    refills the tbf bucket) stay few."""
    period = int(stamps[-1])
    nbins = max(1, math.ceil(period / bin_ms))
    counts = np.bincount(np.clip((stamps - 1) // bin_ms, 0, nbins - 1), minlength=nbins).astype(np.float64)
    widths = np.minimum(bin_ms, period - np.arange(nbins) * bin_ms).clip(min=1) / 1000
    steps: list[list[float]] = []  # [start s, packets, seconds]
    for i in range(nbins):
        rate = counts[i] / widths[i]
        if steps and abs(rate - steps[-1][1] / steps[-1][2]) <= tolerance * max(steps[-1][1] / steps[-1][2], 1e-9):
            steps[-1][1] += counts[i]
            steps[-1][2] += widths[i]
        else:
            steps.append([i * bin_ms / 1000, counts[i], widths[i]])
    return [(start, max(packets * mtu * 8 / seconds, MIN_RATE_BPS)) for start, packets, seconds in steps]


def _step_at(segs: list[tuple[float, float]], period_s: float, t: float) -> tuple[int, int]:
    """(cycle, step index) of trace time `t` (the trace repeats every `period_s`)."""
    cycle, offset = divmod(max(t, 0.0), period_s)
    return int(cycle), max(0, bisect.bisect_right([start for start, _ in segs], offset) - 1)


def _tbf_args(rate_bps: float, mtu: int) -> dict[str, Any]:
    # bucket: 1 ms of tokens, at least two full frames; queue: the sim's FIFO is unbounded, so a
    # deep one (a second of traffic, at least 2 MB, more than TCP keeps queued per socket) that
    # never drops what TCP sends
    burst = max(2 * (mtu + 14), int(rate_bps / 8 / 1000))
    limit = max(2 * 2**20, int(rate_bps / 8))
    return {"rate": f"{int(rate_bps)}bit", "burst": burst, "limit": limit}


class _TraceDriver(threading.Thread):
    """Changes a kernel qdisc's rate over time following each trace direction."""

    def __init__(self, link: ShapedLink, origin: float, bin_ms: int) -> None:
        super().__init__(name="trace-driver", daemon=True)
        self.link = link
        self.origin = origin
        self.stop_event = threading.Event()
        spec = link.spec
        self.plans = []
        for stamps, ns, ifname in ((spec.up_trace, link.device_netns, DEVICE_IF),
                                   (spec.down_trace, link.edge_netns, EDGE_IF)):
            if stamps is not None and ns is not None:
                self.plans.append((_segments(stamps, spec.mtu, bin_ms), int(stamps[-1]) / 1000, ns, ifname))
        self.error: str | None = None  # why the driver stopped early (the rate then stayed where it was)

    def run(self) -> None:
        handles: dict[str, Any] = {}
        try:
            for _, _, ns, _ in self.plans:
                handles[ns] = _ipr(ns)
            idx = {ns: handles[ns].link_lookup(ifname=ifname)[0] for _, _, ns, ifname in self.plans}
            # the step in force now was set with the qdisc (or is set here, if set-up took long);
            # from then on each step is applied when it is due
            now = time.monotonic() - self.origin
            pos, cycle = [], []
            for segs, period, ns, _ in self.plans:
                c, p = _step_at(segs, period, now)
                self.link._set_rate(handles[ns], idx[ns], segs[p][1])
                pos.append((p + 1) % len(segs))
                cycle.append(c + (p + 1) // len(segs))
            while not self.stop_event.is_set():
                due = [(cycle[i] * p[1] + p[0][pos[i]][0], i) for i, p in enumerate(self.plans)]
                if not due:
                    return
                at, i = min(due)
                if self.stop_event.wait(max(0.0, self.origin + at - time.monotonic())):
                    return
                segs, _, ns, _ = self.plans[i]
                self.link._set_rate(handles[ns], idx[ns], segs[pos[i]][1])
                pos[i] += 1
                if pos[i] == len(segs):
                    pos[i], cycle[i] = 0, cycle[i] + 1
        except Exception as exc:  # noqa: BLE001  (a thread's error would only reach stderr)
            self.error = why(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        finally:
            for h in handles.values():
                h.close()


@dataclass(frozen=True)
class SelfCheck:
    """The shaped link measured before the first query, next to what was configured."""

    backend: str
    rtt_ms: float
    rtt_ms_configured: float
    up_mbps: float  # goodput
    up_mbps_expected: float  # rate*efficiency, or the trace's over the same interval
    down_mbps: float
    down_mbps_expected: float
    up_efficiency: float | None  # goodput / shaped rate (fixed-rate links only)
    down_efficiency: float | None
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShapedLink:
    """A shaped device-edge link for one run. Nothing happens in the constructor; `with` (or
    setup()/teardown(), both idempotent) builds and removes it.

    After set-up: `backend` (the versions.json `shaping` string), `notes` (why that backend),
    `device_netns`/`edge_netns` (None for user-space), `edge_host`, `endpoint(port)`,
    `user_link` (give it to EdgeClient(link=...)), `trace_origin` (monotonic time of trace t=0;
    `trace_offset_s` puts set-up at that trace time instead of at 0)."""

    def __init__(self, spec: LinkSpec, backend: str = "auto", *, run_id: str | None = None,
                 trace_bin_ms: int = 500, trace_offset_s: float = 0.0, handle_sigterm: bool = True) -> None:
        if backend != "auto" and backend not in BACKENDS:
            raise ShapingError(f"unknown shaping backend {backend!r}; one of auto, {', '.join(BACKENDS)}")
        self.spec = spec
        self.requested = backend
        self.run_id = run_id or secrets.token_hex(3)
        if not all(c.isalnum() or c in "_" for c in self.run_id) or len(self.run_id) > 32:
            raise ShapingError(f"run id {self.run_id!r}: letters, digits and _ only, at most 32")
        self.trace_bin_ms = trace_bin_ms
        self.trace_offset_s = trace_offset_s
        self.handle_sigterm = handle_sigterm
        self.backend = ""
        self.notes: tuple[str, ...] = ()
        self.probe: Probe | None = None
        self.device_netns: str | None = None
        self.edge_netns: str | None = None
        self.edge_host = "127.0.0.1"
        self.user_link: UserLink | None = None
        self.trace_origin: float | None = None
        self.stale_removed: list[str] = []
        self._created: list[str] = []
        self._driver: _TraceDriver | None = None
        self._previous_sigterm: Any = None
        self._up = False
        self._owner_pid = os.getpid()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> ShapedLink:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def setup(self) -> ShapedLink:
        if self._up:
            return self
        self.stale_removed = cleanup_stale()
        notes = [f"removed stale namespaces of killed runs: {', '.join(self.stale_removed)}"] \
            if self.stale_removed else []
        needs_kernel = self.requested not in ("user-space",)
        self.probe = probe() if needs_kernel else None
        if self.requested == "auto":
            assert self.probe is not None
            self.backend = self.probe.available()[0]
        elif self.probe is not None and self.requested not in self.probe.available():
            raise ShapingError(f"shaping backend {self.requested} is not available here: "
                               f"{self.probe.reason(self.requested)}")
        else:
            self.backend = self.requested
        if self.probe is not None and self.backend == "user-space":
            why_not = f"network namespaces: {self.probe.netns}" if self.probe.netns != "ok" else \
                f"tbf: {self.probe.tbf}, htb: {self.probe.htb}"
            notes.append(f"rate and delay in user space on loopback ({why_not})")
        elif self.probe is not None and self.backend in ("tbf", "htb"):
            netem = f"netem: {self.probe.netem}" if self.probe.netem != "ok" else "htb is used without netem"
            notes.append(f"rate in the kernel ({self.backend}), RTT/2 each way in user space ({netem})")
        self._install_sigterm()
        self._owner_pid = os.getpid()
        self._up = True
        try:
            if self.backend == "user-space":
                self._setup_user_space()
            else:
                self._setup_kernel()
        except BaseException:
            self.teardown()
            raise
        self.notes = tuple(notes)
        return self

    def teardown(self) -> None:
        if not self._up or os.getpid() != self._owner_pid:  # never from a forked child's copy of us
            return
        if self._driver is not None:
            self._driver.stop_event.set()
            self._driver.join(timeout=5.0)
            if self._driver.error:
                log.warning("the trace stopped driving the link's rate early (%s): the rest of the run had the "
                            "last rate set", self._driver.error)
            self._driver = None
        for name in self._created:
            try:
                netns.remove(name)
            except OSError as exc:
                log.warning("could not remove namespace %s: %s", name, why(exc))
        self._created = []
        self._restore_sigterm()
        self._up = False

    def _install_sigterm(self) -> None:
        if not self.handle_sigterm or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            owner = os.getpid()

            def on_term(signum: int, frame: object) -> None:
                if os.getpid() != owner:  # a forked child (pyroute2 forks helpers): die as by default
                    os._exit(128 + signum)
                raise SystemExit(128 + signum)  # unwinds through __exit__, which tears the link down

            self._previous_sigterm = signal.signal(signal.SIGTERM, on_term)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self._previous_sigterm = None

    # -- building --------------------------------------------------------------------------------

    def _pacer(self, direction: str, *, rate: bool) -> Pacer:
        """This direction's user-space part: everything (`rate`), or the delay and, with loss, what TCP
        adds beyond the kernel's serialization (at the trace's mean rate on a trace)."""
        spec = self.spec
        trace = spec.trace_link(direction)
        mbps = spec.up_mbps if direction == "up" else spec.down_mbps
        return Pacer(delay_s=spec.rtt_ms / 2000, rate_mbps=mbps if rate and trace is None else None,
                     efficiency=spec.efficiency, trace=trace if rate else None,
                     trace_origin=self.trace_origin or 0.0, loss=spec.loss, rtt_s=spec.rtt_ms / 1000, mtu=spec.mtu,
                     seed=link_seed(spec.seed, int(direction == "down")),  # as the sim's first channel
                     kernel_rate_mbps=None if rate else mbps if trace is None else trace.mean_bps / 1e6)

    def _setup_user_space(self) -> None:
        self.edge_host = "127.0.0.1"
        self.trace_origin = time.monotonic() - self.trace_offset_s
        self.user_link = UserLink(self._pacer("up", rate=True), self._pacer("down", rate=True))

    def _setup_kernel(self) -> None:
        tag = f"{PREFIX}{_owner_tag()}-{self.run_id}"
        self.device_netns, self.edge_netns = f"{tag}-dev", f"{tag}-edge"
        for name in (self.device_netns, self.edge_netns):
            netns.create(name)
            self._created.append(name)
        _veth_pair(self.device_netns, self.edge_netns)
        spec = self.spec
        starts = {"up": spec.up_mbps * 1e6, "down": spec.down_mbps * 1e6}
        for direction, trace in (("up", spec.up_trace), ("down", spec.down_trace)):
            if trace is not None:
                segs = _segments(trace, spec.mtu, self.trace_bin_ms)
                starts[direction] = segs[_step_at(segs, trace[-1] / 1000, self.trace_offset_s)[1]][1]
        for direction, ns, ifname in (("up", self.device_netns, DEVICE_IF), ("down", self.edge_netns, EDGE_IF)):
            with _ipr(ns) as ipr:
                idx = ipr.link_lookup(ifname=ifname)[0]
                self._add_qdiscs(ipr, idx, starts[direction])
        self.edge_host = EDGE_ADDR
        self.trace_origin = time.monotonic() - self.trace_offset_s
        if self.backend == "tbf+netem":
            self.user_link = None
        else:  # delay (and the sim's loss penalty) in user space
            self.user_link = UserLink(self._pacer("up", rate=False), self._pacer("down", rate=False))
        if spec.up_trace is not None or spec.down_trace is not None:
            self._driver = _TraceDriver(self, self.trace_origin, self.trace_bin_ms)
            self._driver.start()

    def _add_qdiscs(self, ipr: Any, idx: int, rate_bps: float) -> None:
        spec = self.spec
        if self.backend == "tbf+netem":
            rtt_us = int(spec.rtt_ms * 1000)
            ipr.tc("add", "netem", idx, ROOT, delay=rtt_us // 2, loss=spec.loss * 100, limit=100_000)
            ipr.tc("add", "tbf", idx, TBF_UNDER_NETEM, parent=ROOT + 1, **_tbf_args(rate_bps, spec.mtu))
        elif self.backend == "tbf":
            ipr.tc("add", "tbf", idx, ROOT, **_tbf_args(rate_bps, spec.mtu))
        elif self.backend == "htb":
            ipr.tc("add", "htb", idx, ROOT, default=0x10)
            ipr.tc("add-class", "htb", idx, HTB_CLASS, parent=ROOT, **self._htb_args(rate_bps))
            ipr.tc("add", "pfifo", idx, 0x100000, parent=HTB_CLASS, limit=100_000)
        else:  # pragma: no cover - guarded by setup
            raise ShapingError(f"no kernel set-up for backend {self.backend}")

    def _htb_args(self, rate_bps: float) -> dict[str, Any]:
        burst = max(2 * (self.spec.mtu + 14), int(rate_bps / 8 / 1000))
        return {"rate": f"{int(rate_bps)}bit", "ceil": f"{int(rate_bps)}bit", "burst": burst, "cburst": burst}

    def _set_rate(self, ipr: Any, idx: int, rate_bps: float) -> None:
        """Change a direction's kernel rate (trace driver)."""
        if self.backend == "htb":
            ipr.tc("change-class", "htb", idx, HTB_CLASS, parent=ROOT, **self._htb_args(rate_bps))
        elif self.backend == "tbf+netem":
            ipr.tc("change", "tbf", idx, TBF_UNDER_NETEM, parent=ROOT + 1, **_tbf_args(rate_bps, self.spec.mtu))
        else:
            ipr.tc("change", "tbf", idx, ROOT, **_tbf_args(rate_bps, self.spec.mtu))

    # -- using it ----------------------------------------------------------------------------------

    def client(self, endpoint: str, **kwargs: Any) -> EdgeClient:
        """An EdgeClient on the device side of this link, with its user-space shaping."""
        return EdgeClient(endpoint, netns_name=self.device_netns, link=self.user_link, **kwargs)

    def spawn_edge(self, handler: str = "testbed.live.handlers:probe", port: int | str = "*",
                   **kwargs: Any) -> contextlib.AbstractContextManager[EdgeProcess]:
        """An edge server process on the edge side of this link (live.edge_spawn.spawn_edge)."""
        return spawn_edge(self.endpoint(port), handler, netns_name=self.edge_netns, **kwargs)

    def manifest(self, check: SelfCheck | None = None) -> dict[str, Any]:
        """What a run records about its link (versions.json): `shaping` is the backend string."""
        spec = self.spec
        return {"shaping": self.backend, "shaping_notes": list(self.notes),
                "link": {"up_mbps": None if spec.up_trace is not None else spec.up_mbps,
                         "down_mbps": None if spec.down_trace is not None else spec.down_mbps,
                         "up_trace": spec.up_trace is not None, "down_trace": spec.down_trace is not None,
                         "rtt_ms": spec.rtt_ms, "loss": spec.loss, "efficiency": spec.efficiency},
                "self_check": None if check is None else check.as_dict(),
                # the monotonic time of the traces' t = 0: a policy that starts later reads them from there on
                "trace_origin_monotonic_s": self.trace_origin
                if spec.up_trace is not None or spec.down_trace is not None else None}

    def endpoint(self, port: int | str = "*") -> str:
        """The edge's address on this link: tcp://EDGE_HOST:PORT."""
        return f"tcp://{self.edge_host}:{port}"

    def edge(self) -> contextlib.AbstractContextManager[None]:
        """Run a block with the calling thread on the edge side (bind an EdgeServer here)."""
        return netns.entered(self.edge_netns)

    def trace_time(self, monotonic_s: float) -> float:
        """Seconds since the trace's t=0 (the sim's start_s for a transfer at that moment)."""
        return monotonic_s - (self.trace_origin or 0.0)

    def qdiscs(self) -> dict[str, list[str]]:
        """The qdisc kinds on each end (empty for user-space): for checks and the run's notes."""
        out: dict[str, list[str]] = {}
        for ns in (self.device_netns, self.edge_netns):
            if ns is not None and ns in netns.list_names():
                with _ipr(ns) as ipr:
                    out[ns] = [q.get_attr("TCA_KIND") for q in ipr.get_qdiscs()]
        return out

    def self_check(self, seconds: float = 0.25, tolerance: float = 0.10) -> SelfCheck:
        """Measure RTT (fastest of 7 pings) and goodput each way (faster of two transfers of about
        `seconds` each) through the transport, with a probe edge on this link (about 1.5 s in all).
        More than `tolerance` off what was configured gives a one-line warning (also logged)."""
        return self_check(self, seconds, tolerance)


def self_check(link: ShapedLink, seconds: float = 0.25, tolerance: float = 0.10) -> SelfCheck:
    from testbed.live.handlers import probe as probe_handler

    spec = link.spec
    with link.edge():
        server = EdgeServer(link.endpoint("*"), probe_handler, max_queue=4).open()
    with server.start(), EdgeClient(server.endpoint, netns_name=link.device_netns, link=link.user_link,
                                    timeout_s=max(30.0, 20 * seconds)) as client:
        client.health(timeout_s=10.0)  # connects
        # the fastest of several: a loaded CPU only ever adds time, the link's own figures do not
        rtt = min(client.health(timeout_s=10.0).round_trip_s for _ in range(7))
        measured: dict[str, float] = {}
        expected: dict[str, float] = {}
        for direction in ("up", "down"):
            mean = _mean_mbps(spec, direction)
            n = max(64 * 1024, int(mean * 1e6 * spec.efficiency / 8 * seconds))
            tries = []
            for _ in range(2):
                if direction == "up":
                    r = client.request({"op": "sink"}, [bytes(n)])
                    nbytes = r.request_bytes
                else:
                    r = client.request({"op": "source", "bytes": n})
                    nbytes = r.reply_bytes
                serial = max(1e-6, r.round_trip_s - rtt - r.timing.get("service_s", 0.0))
                start = link.trace_time(r.sent_at)
                exp_serial = spec.expected_transfer_s(direction, nbytes, start) - spec.rtt_ms / 2000
                tries.append((exp_serial / serial, nbytes * 8 / serial / 1e6, nbytes * 8 / exp_serial / 1e6))
            _, measured[direction], expected[direction] = max(tries)
    warnings = []
    rtt_ms = rtt * 1000
    if abs(rtt_ms - spec.rtt_ms) > max(tolerance * spec.rtt_ms, 1.0):
        warnings.append(f"shaped link: RTT measured {rtt_ms:.1f} ms, configured {spec.rtt_ms:g} ms ({link.backend})")
    for direction in ("up", "down"):
        m, e = measured[direction], expected[direction]
        if abs(m / e - 1) > tolerance:
            warnings.append(f"shaped link: {direction}link goodput measured {m:.2f} Mbit/s, expected {e:.2f} "
                            f"({(m / e - 1):+.0%}, {link.backend})")
    for w in warnings:
        log.warning(w)

    def eff(direction: str) -> float | None:
        if (spec.up_trace if direction == "up" else spec.down_trace) is not None:
            return None
        return measured[direction] / (spec.up_mbps if direction == "up" else spec.down_mbps)

    return SelfCheck(link.backend, rtt_ms, spec.rtt_ms, measured["up"], expected["up"], measured["down"],
                     expected["down"], eff("up"), eff("down"), tuple(warnings))


def _mean_mbps(spec: LinkSpec, direction: str) -> float:
    stamps = spec.up_trace if direction == "up" else spec.down_trace
    if stamps is None:
        return spec.up_mbps if direction == "up" else spec.down_mbps
    return mean_mbps(stamps, spec.mtu)
