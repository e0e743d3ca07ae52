"""A soak of the live transport with faults (`testbed soak`, `make soak`): many requests from several
clients to one edge process on loopback, the edge's memory sampled throughout, then faults injected in
the same run: the edge killed and restarted on its address, the edge unreachable for a while (stopped:
neither link direction moves), and a slow edge whose replies come after the clients gave up (dropped
as late). Every request must end answered or fallen back (EdgeUnavailable, the policies' fallback);
the report counts the lost ones (zero is the only passing figure), the RSS slope after warm-up, the
latency per thousand requests and each fault's recovery time.

The edge runs the diagnostic probe handler (no model): what is soaked is the transport, queueing and
fault handling that every live run goes through. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any
from collections.abc import Callable

import numpy as np
import pandas as pd

from testbed.live.client import EdgeClient
from testbed.live.edge_spawn import spawn_edge
from testbed.live.errors import EdgeError, EdgeUnavailable, EnvelopeError

FAULTS = ("kill-restart", "unreachable", "slow")


@dataclass(frozen=True)
class SoakConfig:
    """How much, how many, how long: the defaults take a few minutes on two cores."""

    queries: int = 10_000
    clients: int = 4
    timeout_s: float = 1.0
    unreachable_s: float = 3.0
    slow_queries: int = 40
    seed: int = 0
    faults: bool = True


@dataclass
class _Edge:
    """The current edge process (replaced on restart) and where it listens."""

    proc: Any
    endpoint: str


def _spawn(bind: str) -> AbstractContextManager[Any]:
    return spawn_edge(bind, "testbed.live.handlers:probe", max_queue=64, workers=2)


def soak(cfg: SoakConfig, say: Callable[[str], None] = lambda s: None) -> dict[str, pd.DataFrame]:
    """Run the soak; returns its tables: per request (`requests`), per thousand (`per_thousand`), RSS
    samples (`rss`) and faults (`faults`)."""
    rng = np.random.default_rng(cfg.seed)
    sizes = rng.integers(256, 64 * 1024, cfg.queries)
    sleeps = rng.uniform(0.0, 0.002, cfg.queries)
    fault_at = {int(cfg.queries * f): name for f, name in zip((0.5, 0.65, 0.8), FAULTS)} if cfg.faults else {}
    rows: list[dict[str, Any]] = [{} for _ in range(cfg.queries)]
    rss: list[dict[str, float]] = []
    faults: list[dict[str, Any]] = []
    lock = threading.Lock()
    state = {"next": 0, "slow_left": 0}
    stop = threading.Event()
    cm = _spawn("tcp://127.0.0.1:*")
    first = cm.__enter__()
    edge = _Edge(first, first.endpoint)
    exits = [cm]
    t_start = time.monotonic()

    def sample() -> None:
        while not stop.wait(0.25):
            try:
                mb = edge.proc.rss_bytes() / 2**20
            except (OSError, RuntimeError):  # between a kill and its restart
                continue
            with lock:
                rss.append({"t_s": time.monotonic() - t_start, "done": state["next"], "rss_mb": mb})

    def inject(name: str, at: int) -> None:
        t0 = time.monotonic()
        say(f"fault: {name}")
        if name == "kill-restart":
            edge.proc.proc.send_signal(signal.SIGKILL)
            edge.proc.proc.wait()
            new = _spawn(edge.endpoint)  # the same address: clients reconnect by themselves
            proc = new.__enter__()
            exits.append(new)
            edge.proc = proc
        elif name == "unreachable":
            edge.proc.proc.send_signal(signal.SIGSTOP)
            time.sleep(cfg.unreachable_s)
            edge.proc.proc.send_signal(signal.SIGCONT)
        else:
            with lock:
                state["slow_left"] = cfg.slow_queries
        faults.append({"fault": name, "at_request": at, "injected_s": t0 - t_start, "fault_s": time.monotonic() - t0})

    def client_loop(client: EdgeClient) -> None:
        while True:
            with lock:
                i = state["next"]
                if i >= cfg.queries:
                    return
                state["next"] += 1
                slow = state["slow_left"] > 0
                if slow:
                    state["slow_left"] -= 1
            if i in fault_at:
                inject(fault_at[i], i)
            seconds = 3 * cfg.timeout_s if slow else float(sleeps[i])  # slow: the reply comes after the timeout
            t0 = time.monotonic()
            try:
                client.request({"op": "sleep", "seconds": seconds}, [bytes(int(sizes[i]))], timeout_s=cfg.timeout_s)
                outcome = "answered"
            except (EdgeUnavailable, EdgeError, EnvelopeError) as exc:
                outcome = f"fallback:{getattr(exc, 'reason', type(exc).__name__)}"
            rows[i] = {"request": i, "outcome": outcome, "latency_s": time.monotonic() - t0,
                       "done_s": time.monotonic() - t_start, "slow": slow}

    sampler = threading.Thread(target=sample, name="soak-rss", daemon=True)
    sampler.start()
    try:
        with EdgeClient(edge.endpoint, timeout_s=cfg.timeout_s) as client:
            threads = [threading.Thread(target=client_loop, args=(client,), name=f"soak-client-{k}")
                       for k in range(cfg.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        stop.set()
        sampler.join(timeout=2.0)
        for cm in reversed(exits):
            try:
                cm.__exit__(None, None, None)
            except Exception:  # an edge already killed: nothing left to stop
                pass
    return _tables(cfg, rows, rss, faults)


def _tables(cfg: SoakConfig, rows: list[dict[str, Any]], rss: list[dict[str, float]],
            faults: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    req = pd.DataFrame([r if r else {"request": i, "outcome": "lost"} for i, r in enumerate(rows)])
    req["thousand"] = req.request // 1000
    ok = req[req.outcome == "answered"]
    per = req.groupby("thousand").agg(answered=("outcome", lambda o: int((o == "answered").sum())),
                                      fallen_back=("outcome", lambda o: int(o.str.startswith("fallback").sum())),
                                      lost=("outcome", lambda o: int((o == "lost").sum())))
    per["p50_ms"] = ok.groupby("thousand").latency_s.median() * 1e3
    per["p99_ms"] = ok.groupby("thousand").latency_s.quantile(0.99) * 1e3
    fault_rows = []
    for f in faults:  # recovery: from the fault's end to the next request answered after it
        if f["fault"] == "slow" and req.get("slow") is not None and req.slow.fillna(False).any():
            f = {**f, "fault_s": float(req[req.slow.fillna(False)].done_s.max()) - f["injected_s"]}  # the last slow one
        end = f["injected_s"] + f["fault_s"]
        after = ok[ok.done_s > end]
        fault_rows.append({**f, "recovery_s": float(after.done_s.min() - end) if len(after) else float("nan"),
                           "fallen_back_during": int(req[(req.outcome != "answered") & (req.done_s >= f["injected_s"])
                                                         & (req.done_s <= end + cfg.timeout_s * 2)].shape[0])})
    return {"requests": req, "per_thousand": per.reset_index(), "rss": pd.DataFrame(rss),
            "faults": pd.DataFrame(fault_rows)}


def rss_slope(rss: pd.DataFrame, warm_share: float = 0.2, before: int | None = None) -> float:
    """MB of edge RSS per thousand requests, fitted on the samples after the warm-up share and before
    request `before` (the first fault): flat is ~0."""
    if rss.empty:
        return float("nan")
    total = int(rss.done.max())
    s = rss[(rss.done >= warm_share * total) & (rss.done < (before if before is not None else total + 1))]
    if len(s) < 3 or s.done.nunique() < 2:
        return float("nan")
    return float(np.polyfit(s.done / 1000.0, s.rss_mb, 1)[0])


def slope_text(slope: float) -> str:
    """The RSS slope for people: n/a where too few samples fell between warm-up and the first fault."""
    if slope != slope:
        return "n/a (too few RSS samples between warm-up and the first fault: run more requests)"
    return f"{slope:+.3f} MB per 1,000 requests"


def write_report(out: Path, cfg: SoakConfig, tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """soak.md, per_thousand.csv, rss.csv, faults.csv and requests.parquet in `out`; returns the headline."""
    from testbed.report import format_table

    req, per, rss, faults = tables["requests"], tables["per_thousand"], tables["rss"], tables["faults"]
    first_fault = int(faults.at_request.min()) if len(faults) else None
    head = {"requests": len(req), "answered": int((req.outcome == "answered").sum()),
            "fallen_back": int(req.outcome.str.startswith("fallback").sum()),
            "lost": int((req.outcome == "lost").sum()),
            "rss_slope_mb_per_1000": rss_slope(rss, before=first_fault),
            "rss_peak_mb": float(rss.rss_mb.max()) if len(rss) else float("nan")}
    out.mkdir(parents=True, exist_ok=True)
    per.to_csv(out / "per_thousand.csv", index=False)
    rss.to_csv(out / "rss.csv", index=False)
    faults.to_csv(out / "faults.csv", index=False)
    req.to_parquet(out / "requests.parquet", index=False)
    md = [f"# Soak: {cfg.queries} requests from {cfg.clients} clients to one edge on loopback", "",
          f"Probe handler (no model); client timeout {cfg.timeout_s:g} s; seed {cfg.seed}.", "",
          f"- answered {head['answered']}, fallen back {head['fallen_back']}, **lost {head['lost']}**",
          f"- edge RSS: peak {head['rss_peak_mb']:.1f} MB; slope after warm-up, before the first fault: "
          f"{slope_text(head['rss_slope_mb_per_1000'])}", "", "## Per thousand requests", "",
          format_table(per), "", "## Faults", "",
          format_table(faults) if len(faults) else "(none)", ""]
    (out / "soak.md").write_text("\n".join(md))
    return head
