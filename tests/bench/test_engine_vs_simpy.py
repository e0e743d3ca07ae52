"""The engine against a bare SimPy model of the same events (issue 24 item 3): what the interpreter,
the cost curves and the policies add on top of SimPy's own event loop. Run by `make bench`.

The bare model is counted off the engine: one counting run of the default scenario's policies records,
per policy, the events SimPy schedules (resource requests and releases on the device's and the edge's
GPU and CPU pools and on the uplink and downlink, timeouts, conditions, processes). The bare model
then replays as many of each kind per query, as plain SimPy: a process per query that requests a
resource, holds it for a timeout and releases it, and so on. Both are timed in this process,
interleaved, best of several rounds.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any
from collections.abc import Generator

import pytest
import simpy
from simpy.events import Condition
from simpy.resources.base import Get, Put

import testbed.sim.engine
from testbed.sim.engine import load_workload, run_scenario
from testbed.policies.registry import resolve
from testbed.profiles import load_profile
from testbed.scenario import Scenario, load_scenario, with_overrides

QUERIES_PER_BENCHMARK = 200
ROUNDS = 5
GOAL = 2.0
"""The engine may cost at most this many times the bare model (issue 24), its policies' learning aside."""
BOUND = 5.0
"""Until GOAL is reached (3.1-3.8x on a loaded 2-core machine when this was written, from 4.4-5.8x before
issue 24's work), a ratio above this fails the bench; one between GOAL and BOUND is an expected failure."""

NODES = ("dev", "edge")
HELD = ("dev.cpu", "dev.gpu", "up", "edge.cpu", "edge.gpu", "down")
"""The resources of a World, in the order a query uses them."""


def _scenario(agents: bool) -> Scenario:
    """The default scenario's link, profile and policies (those with a density agent only if `agents`),
    on fewer queries."""
    sc = load_scenario("default")
    run = [p for p in sc.policies.run if agents or not resolve(p).agent]
    return with_overrides(sc, {"workload.queries_per_benchmark": QUERIES_PER_BENCHMARK, "policies.run": run})


class _Counting(simpy.Environment):
    """An Environment that counts the events it schedules, by kind (a request or release also by the
    resource it is for)."""

    labels: dict[int, str] = {}
    made: list["_Counting"] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kinds: Counter[str] = Counter()
        _Counting.made.append(self)

    def schedule(self, event: simpy.Event, priority: int = 1, delay: float = 0) -> None:
        if isinstance(event, (Put, Get)):
            kind = f"{'Request' if isinstance(event, Put) else 'Release'}:{self.labels.get(id(event.resource), '?')}"
        elif isinstance(event, Condition):
            kind = "Condition"
        else:
            kind = type(event).__name__
        self.kinds[kind] += 1
        super().schedule(event, priority, delay)  # type: ignore[arg-type]


def _engine_counts(sc: Scenario, profile, workload, monkeypatch) -> list[tuple[int, Counter[str]]]:
    """Per policy of `sc`: its queries and the events its run scheduled, by kind."""
    build = testbed.sim.engine.build_world

    def labelled(*args: Any, **kwargs: Any):
        w = build(*args, **kwargs)
        for node, name in [(d, "dev") for d in w.devices] + [(w.edge, "edge")]:
            _Counting.labels[id(node.gpu)], _Counting.labels[id(node.cpu)] = f"{name}.gpu", f"{name}.cpu"
        for chans, name in ((w.uplinks, "up"), (w.downlinks, "down")):
            _Counting.labels.update({id(c.fifo): name for c in chans})
        return w

    _Counting.made.clear()
    with monkeypatch.context() as m:
        m.setattr(simpy, "Environment", _Counting)
        m.setattr(testbed.sim.engine, "build_world", labelled)
        queries = run_scenario(sc, profile=profile, workload=workload).queries
    assert len(_Counting.made) == len(sc.policies.run), "one environment per policy"
    per_policy = queries.groupby("policy").size()
    return [(int(per_policy[p]), env.kinds) for p, env in zip(sc.policies.run, _Counting.made)]


def _plan(n: int, kinds: Counter[str]) -> list[list[tuple[str, str]]]:
    """Per query, the bare model's steps that schedule, over `n` queries, the events in `kinds`: a
    'pair' (a CPU and a GPU held together: two requests, a condition, a timeout, two releases), a
    'hold' (a request, a timeout, a release), a 'sleep' (a timeout), a 'spawn' (a process started
    and waited for). Each kind of step is spread evenly over the queries."""
    left = Counter(kinds)
    steps: list[tuple[tuple[str, str], int]] = []
    for node in NODES:  # conditions: a CPU and a GPU of one node held together (the pipelined tokenizer)
        k = min(left["Condition"], left[f"Request:{node}.cpu"], left[f"Request:{node}.gpu"])
        steps.append((("pair", node), k))
        for kind in ("Condition", "Timeout", f"Request:{node}.cpu", f"Request:{node}.gpu", f"Release:{node}.cpu",
                     f"Release:{node}.gpu"):
            left[kind] -= k
    for res in HELD:
        k = left[f"Request:{res}"]
        steps.append((("hold", res), k))
        left[f"Request:{res}"] -= k
        left[f"Release:{res}"] -= k
        left["Timeout"] -= k
    steps.append((("sleep", ""), left["Timeout"]))
    spawned = left["Initialize"] - n - 1  # beyond a process per query and the client's
    steps.append((("spawn", ""), spawned))
    left["Timeout"] = 0
    left["Initialize"] -= n + 1 + spawned
    left["Process"] -= n + 1 + spawned
    assert not +left and not -left, f"events the bare model does not make: {dict(+left)} {dict(-left)}"
    plan: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    for step, total in steps:
        for i in range(n):
            plan[i] += [step] * ((i + 1) * total // n - i * total // n)
    return plan


def _bare(plan: list[list[tuple[str, str]]], env: simpy.Environment) -> None:
    """The bare SimPy model: one closed client running `plan`'s queries one after another."""
    res = {name: simpy.Resource(env, capacity=1) for name in HELD}
    dur = 1e-3

    def nothing() -> Generator[simpy.Event, Any, None]:
        return
        yield

    def query(steps: list[tuple[str, str]]) -> Generator[simpy.Event, Any, None]:
        for op, arg in steps:
            if op == "hold":
                with res[arg].request() as req:
                    yield req
                    yield env.timeout(dur)
            elif op == "pair":
                with res[f"{arg}.cpu"].request() as cpu, res[f"{arg}.gpu"].request() as gpu:
                    yield cpu & gpu
                    yield env.timeout(dur)
            elif op == "sleep":
                yield env.timeout(dur)
            else:
                yield env.process(nothing())

    def client() -> Generator[simpy.Event, Any, None]:
        for steps in plan:
            yield env.process(query(steps))

    env.process(client())
    env.run()


@pytest.mark.benchmark(group="engine")
@pytest.mark.parametrize("agents", [False, True], ids=["no-agents", "agents"])
def test_engine_costs_at_most_twice_a_bare_simpy_model(benchmark, record_ratio, monkeypatch, agents):
    """Without the density agents (their feature building, posterior draws and updates are numpy work
    of their own, per escalated query) the engine must stay within GOAL of the bare model (BOUND until
    it does); with them, the ratio is recorded (and guarded against regressions by `make bench`)."""
    sc = _scenario(agents)
    profile, workload = load_profile(sc.profile_path()), load_workload(sc)
    counted = _engine_counts(sc, profile, workload, monkeypatch)  # also warms the engine's caches
    plans = [_plan(n, kinds) for n, kinds in counted]
    for plan, (_, kinds) in zip(plans, counted):  # the bare model schedules exactly the engine's events
        env = _Counting()
        _bare(plan, env)
        assert sum(env.kinds.values()) == sum(kinds.values())
    queries = sum(n for n, _ in counted)
    events = sum(sum(k.values()) for _, k in counted)

    def engine() -> float:
        t0 = time.perf_counter()
        run_scenario(sc, profile=profile, workload=workload)
        return time.perf_counter() - t0

    def bare() -> float:
        t0 = time.perf_counter()
        for plan in plans:
            _bare(plan, simpy.Environment())
        return time.perf_counter() - t0

    t_engine, t_bare = [], []
    for _ in range(ROUNDS):  # interleaved, so that drift in machine load hits both alike
        t_engine.append(engine())
        t_bare.append(bare())
    ratio = min(t_engine) / min(t_bare)
    benchmark.extra_info.update(queries=queries, events=events, engine_s=min(t_engine), bare_s=min(t_bare),
                                engine_over_bare=ratio)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    what = "with" if agents else "without"
    print(f"\nengine vs bare SimPy, default scenario's policies {what} density agents ({len(counted)} policies, "
          f"{queries} queries, {events / queries:.3g} events a query): engine {min(t_engine) * 1e3:.3g} ms, bare "
          f"SimPy {min(t_bare) * 1e3:.3g} ms, engine/bare = {ratio:.3g}x"
          + ("" if agents else f" (goal: at most {GOAL:g}x)"))
    record_ratio(f"engine_bare_simpy_over_engine{'_agents' if agents else ''}", 1 / ratio)
    if not agents:
        assert ratio <= BOUND, f"the engine costs {ratio:.3g}x the bare SimPy model (bound {BOUND:g}x)"
        if ratio > GOAL:
            pytest.xfail(f"issue 24 item 3 open: the engine costs {ratio:.3g}x the bare SimPy model (goal {GOAL:g}x)")
