"""Link shaping: 5 MB uploads over each backend this machine has take the sim's time within 10%
(fixed rate and the hsdpa trace), the self-check, probing, and clean-up after killed runs.

Tests that need network namespaces or a qdisc skip with the probe's reason where they are missing.
Every test removes what it set up, also when it fails (the autouse fixture below)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import simpy

from testbed.live import netns, shaping
from testbed.live.errors import ShapingError
from testbed.live.pacing import Pacer
from testbed.live.shaping import PREFIX, LinkSpec, Probe, ShapedLink, load_trace
from testbed.sim.link import Channel
from testbed.bandwidth import MahimahiLink, mahimahi_bytes
from testbed.scenario import REPO_ROOT

FIVE_MB = 5_000_000
HSDPA_UP = REPO_ROOT / "traces" / "bandwidth" / "hsdpa-norway-norway_train_4.mahi"


@pytest.fixture(scope="module")
def kernel() -> Probe:
    return shaping.probe()


def require(kernel: Probe, backend: str) -> None:
    if backend not in kernel.available():
        pytest.skip(f"{backend} shaping not available here: {kernel.reason(backend)}")


def mine() -> list[str]:
    return [n for n in netns.list_names() if n.startswith(f"{PREFIX}{os.getpid()}.")]


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    left = mine()
    for name in left:
        netns.remove(name)
    assert left == [], f"namespaces left behind: {left}"


def upload(link: ShapedLink, nbytes: int) -> tuple[float, float, int]:
    """(measured upload s, trace time at send, request bytes) of one upload to a probe edge in a
    child process on the link's edge side."""
    with link.spawn_edge("testbed.live.handlers:probe") as edge, link.client(edge.endpoint, timeout_s=60) as client:
        client.health(timeout_s=10)  # connected before the clock starts
        r = client.request({"op": "sink"}, [bytes(nbytes)])
        return r.meta["received_at"] - r.sent_at, link.trace_time(r.sent_at), r.request_bytes


BACKENDS = ["tbf+netem", "tbf", "htb", "user-space"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_five_mb_upload_takes_the_expected_time(kernel, backend):
    """20 Mbit/s, RTT 40 ms: never faster than bytes*8/(rate*efficiency) + RTT/2 by more than 10%. A busy
    host's sender and receiver can only slow it, so above that time the bound is loose (+50%); the
    printed ratio is the accuracy figure (within 10% on a quiet machine)."""
    require(kernel, backend)
    spec = LinkSpec(up_mbps=20, down_mbps=20, rtt_ms=40)
    with ShapedLink(spec, backend) as link:
        assert link.backend == backend
        took, _, nbytes = upload(link, FIVE_MB)
    expected = nbytes * 8 / (20e6 * spec.efficiency) + 0.020
    efficiency = nbytes * 8 / (20e6 * (took - 0.020))
    print(f"\n{backend}: 5 MB upload {took:.3f} s, expected {expected:.3f} s ({took / expected - 1:+.1%}), "
          f"measured efficiency {efficiency:.4f} (1/{1 / efficiency:.4f})")
    assert 0.90 < took / expected < 1.50


@pytest.mark.parametrize("backend", BACKENDS)
def test_five_mb_upload_over_the_hsdpa_trace_takes_the_sims_time(kernel, backend):
    """The trace_hsdpa uplink (train_4 scaled to a mean of 10 Mbit/s, RTT 20 ms): within 10% of
    MahimahiLink(stamps).deliver(start, mahimahi_bytes(nbytes)) + RTT/2, as sim/engine builds it."""
    require(kernel, backend)
    stamps = load_trace(HSDPA_UP, 10.0)
    spec = LinkSpec(up_mbps=10, down_mbps=20, rtt_ms=20, up_trace=stamps)
    # from t=2.5 s of the trace, the upload crosses its steps from ~14 to ~8 to ~5 Mbit/s
    with ShapedLink(spec, backend, trace_offset_s=2.5) as link:
        took, start, nbytes = upload(link, FIVE_MB)
        # a run records where the trace's t = 0 was, so a replay starts each policy at its own trace time
        assert link.manifest()["trace_origin_monotonic_s"] == link.trace_origin
    sim = MahimahiLink(stamps).deliver(start, mahimahi_bytes(nbytes))[0] - start + 0.010
    print(f"\n{backend} + hsdpa trace: 5 MB upload from t={start:.2f} s took {took:.3f} s, sim {sim:.3f} s "
          f"({took / sim - 1:+.1%})")
    assert abs(took / sim - 1) < 0.10


def test_self_check_measures_both_ways_and_warns_when_off(kernel):
    backend = kernel.available()[0]
    with ShapedLink(LinkSpec(up_mbps=20, down_mbps=10, rtt_ms=30)) as link:
        assert link.backend == backend
        check = link.self_check()
    print(f"\nself-check ({backend}): {check}")
    manifest = link.manifest(check)
    assert manifest["shaping"] == backend and manifest["self_check"]["rtt_ms"] == check.rtt_ms
    assert manifest["trace_origin_monotonic_s"] is None  # no traces: nothing to align
    assert check.warnings == ()
    assert abs(check.rtt_ms / 30 - 1) < 0.10
    assert abs(check.up_mbps / check.up_mbps_expected - 1) < 0.10
    assert abs(check.down_mbps / check.down_mbps_expected - 1) < 0.10
    assert check.up_mbps_expected == pytest.approx(20 / 1.055) and check.down_efficiency is not None

    # a configured efficiency far from the real one: the check says so, in one line each
    with ShapedLink(LinkSpec(up_mbps=20, down_mbps=20, rtt_ms=10, efficiency=0.6), "user-space") as link:
        link.user_link.up.direction.efficiency = link.user_link.down.direction.efficiency = 0.95  # the "real" link
        bad = link.self_check()
    goodput = [w for w in bad.warnings if "goodput" in w]  # (a busy host may also add an RTT warning)
    assert len(goodput) == 2 and all("\n" not in w for w in bad.warnings)


def test_probe_tells_module_missing_from_permission_denied(kernel):
    from pyroute2.netlink.exceptions import NetlinkError

    assert shaping.why(NetlinkError(errno.ENOENT)) == "module missing"
    assert shaping.why(NetlinkError(errno.EPERM)) == "permission denied"
    assert shaping.why(PermissionError(errno.EPERM, "Operation not permitted")) == "permission denied"
    assert shaping.why(NetlinkError(errno.EINVAL)).startswith("NetlinkError")
    print(f"\nthis machine: {kernel}; backends: {kernel.available()}")
    assert kernel.available()[-1] == "user-space"
    if kernel.netns == "ok":
        assert kernel.netem in ("ok", "module missing")


def test_without_namespaces_the_link_falls_back_to_user_space(monkeypatch):
    denied = Probe("permission denied", "untested", "untested", "untested")
    monkeypatch.setattr(shaping, "probe", lambda: denied)
    with ShapedLink(LinkSpec(20, 20, 40)) as link:
        assert link.backend == "user-space" and link.device_netns is None
        assert link.endpoint(5555) == "tcp://127.0.0.1:5555"
        assert any("permission denied" in note for note in link.notes)
        assert link.user_link is not None and link.user_link.up.shapes_rate
    with pytest.raises(ShapingError, match="permission denied"):
        ShapedLink(LinkSpec(20, 20, 40), "tbf").setup()
    missing = Probe("ok", "ok", "ok", "module missing")
    monkeypatch.setattr(shaping, "probe", lambda: missing)
    with pytest.raises(ShapingError, match="netem: module missing"):
        ShapedLink(LinkSpec(20, 20, 40), "tbf+netem").setup()


def test_set_up_and_tear_down_are_idempotent_and_names_per_run(kernel):
    require(kernel, "tbf")
    a = ShapedLink(LinkSpec(20, 20, 10), "tbf", run_id="first")
    b = ShapedLink(LinkSpec(5, 5, 10), "tbf")
    a.setup()
    a.setup()
    b.setup()
    try:
        assert a.device_netns != b.device_netns and "first" in a.device_netns
        assert set(mine()) == {a.device_netns, a.edge_netns, b.device_netns, b.edge_netns}
        assert all("tbf" in kinds for kinds in a.qdiscs().values())
    finally:
        a.teardown()
        a.teardown()
        b.teardown()
    assert mine() == []


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from testbed.live.shaping import LinkSpec, ShapedLink
    with ShapedLink(LinkSpec(20, 20, 40), sys.argv[1]) as link:
        print(link.device_netns, link.edge_netns, flush=True)
        {after}
""")


def run_child(backend: str, after: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(after=after), backend], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_runs_namespaces_and_qdiscs_go_at_the_next_start(kernel):
    require(kernel, "tbf")
    child = run_child("tbf", "os.kill(os.getpid(), signal.SIGKILL)")
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    left = out.split()
    try:
        assert len(left) == 2 and all(n in netns.list_names() for n in left)
        link = ShapedLink(LinkSpec(20, 20, 40), "tbf")
        assert all("tbf" in kinds for kinds in _qdiscs(left).values())  # the killed run's shaping is still there
        # one more leftover, as a run of another boot would leave it (its pid long gone)
        stale = f"{PREFIX}999999999.1-old-dev"
        netns.create(stale)
        with link:
            assert set(link.stale_removed) >= {*left, stale}
            assert any("stale" in note for note in link.notes)
        assert not any(n in netns.list_names() for n in [*left, stale])
    finally:
        for name in [*left, f"{PREFIX}999999999.1-old-dev"]:
            netns.remove(name)


def _qdiscs(names: list[str]) -> dict[str, list[str]]:
    from pyroute2 import IPRoute

    out = {}
    for name in names:
        with IPRoute(netns=name, flags=0) as ipr:
            out[name] = [q.get_attr("TCA_KIND") for q in ipr.get_qdiscs()]
    return out


def test_sigterm_tears_the_link_down(kernel):
    require(kernel, "tbf")
    child = run_child("tbf", "import time; time.sleep(60)")
    try:
        names = child.stdout.readline().split()
        assert len(names) == 2 and all(n in netns.list_names() for n in names)
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 128 + signal.SIGTERM
        assert not any(n in netns.list_names() for n in names)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


def test_pacer_is_the_sims_channel():
    p = Pacer(delay_s=0.02, rate_mbps=8, efficiency=0.5)
    assert p.schedule(10.0, 1_000_000) == pytest.approx(10.0 + 2.0 + 0.02)
    assert p.schedule(10.5, 500_000) == pytest.approx(12.0 + 1.0 + 0.02)  # FIFO behind the first
    assert p.schedule(20.0, 0) == pytest.approx(20.02)
    stamps = load_trace(HSDPA_UP, 10.0)
    sim = MahimahiLink(stamps)
    t = Pacer(delay_s=0.01, trace=sim, trace_origin=100.0)
    assert t.schedule(103.0, FIVE_MB) == pytest.approx(100.0 + sim.deliver(3.0, mahimahi_bytes(FIVE_MB))[0] + 0.01)
    lossy = [Pacer(rate_mbps=10, loss=0.01, rtt_s=0.05, seed=s).schedule(0.0, 1_500_000) for s in (1, 1, 2)]
    assert lossy[0] == lossy[1] != lossy[2]  # seeded
    assert lossy[0] > 1_500_000 * 8 / 10e6  # the Reno window stalls and resends on top of serialization


def _sim_transfer_s(nbytes: int, **link) -> float:
    """The sim's time for one transfer over an idle Channel (sim/link.py), RTT/2 included."""
    env = simpy.Environment()
    ch = Channel(env, link["rate_mbps"], link["rtt_s"], 1.0, 1500, link["loss"], np.random.default_rng(link["seed"]))
    env.process(ch.transfer(nbytes))
    env.run()
    return env.now


@pytest.mark.parametrize("loss", [0.0, 0.002, 0.02])
def test_lossy_pacer_times_a_transfer_as_the_sim(loss):
    link = {"rate_mbps": 10.0, "rtt_s": 0.05, "loss": loss, "seed": (3, 2, 0, 0)}
    sim = _sim_transfer_s(1_500_000, **link)
    user = Pacer(delay_s=0.025, **link).schedule(100.0, 1_500_000) - 100.0
    assert user == pytest.approx(sim, rel=1e-9)
    kernel = Pacer(delay_s=0.025, kernel_rate_mbps=10.0, rtt_s=0.05, loss=loss, seed=link["seed"])
    serialization = 1_500_000 * 8 / 10e6  # what tbf does in the kernel; the pacer adds the rest
    assert kernel.schedule(100.0, 1_500_000) - 100.0 + serialization == pytest.approx(sim, rel=1e-9)


def test_a_message_queued_behind_another_uses_the_rest_of_its_opportunity():
    stamps = np.arange(1, 1001, dtype=np.int64)  # one 1504-byte opportunity per millisecond
    p = Pacer(trace=MahimahiLink(stamps), trace_origin=50.0)
    first, second = p.schedule(50.0, 100), p.schedule(50.0, 100)
    env = simpy.Environment()
    ch = Channel(env, 1.0, 0.0, 1.0, 1500, 0.0, np.random.default_rng(0), MahimahiLink(stamps))
    ends = []

    def send():
        yield from ch.transfer(100)
        ends.append(env.now)

    env.process(send())
    env.process(send())
    env.run()
    assert [first - 50.0, second - 50.0] == pytest.approx(ends)
    assert first == second  # both fit one opportunity


def test_trace_steps_keep_the_traces_bytes():
    stamps = load_trace(HSDPA_UP, 10.0)
    steps = shaping._segments(stamps, 1500, 500)
    ends = [s for s, _ in steps[1:]] + [stamps[-1] / 1000]
    carried = sum(rate * (end - start) for (start, rate), end in zip(steps, ends))
    assert carried == pytest.approx(len(stamps) * 1500 * 8, rel=0.01)
    assert len(steps) < stamps[-1] / 500  # neighbours merged: fewer tbf changes than bins
    assert np.all(np.diff([s for s, _ in steps]) > 0)


def test_netem_requests_are_well_formed(kernel):
    """netem is missing here, so tbf+netem never runs; at least its requests must reach the kernel
    (which answers ENOENT, module missing) rather than fail to encode."""
    if kernel.netns != "ok" or kernel.netem == "ok":
        pytest.skip("needs namespaces and a kernel without netem (with netem, the backend tests run it)")
    from pyroute2.netlink.exceptions import NetlinkError

    name = f"{PREFIX}{shaping._owner_tag()}-netemcheck"
    netns.create(name)
    try:
        with shaping._ipr(name) as ipr:
            ipr.link("add", ifname="tbl-p0", kind="veth", peer={"ifname": "tbl-p1"})
            idx = ipr.link_lookup(ifname="tbl-p0")[0]
            link = ShapedLink(LinkSpec(20, 20, 40, loss=0.01), "tbf+netem")
            link.backend = "tbf+netem"
            with pytest.raises(NetlinkError) as info:
                link._add_qdiscs(ipr, idx, 20e6)
            assert info.value.code == errno.ENOENT
    finally:
        netns.remove(name)
