"""`testbed ope LOG --agent NAME`: evaluate a density agent off-policy on a run's decision log.

A run of an adaptive-density policy writes `decisions-<policy>.npz` (every decision's context,
density, proxy reward and propensity) and `profiling.npz` (plus `backbone.npz`), the fit its
agents start from, into its results folder. This command rebuilds another agent from that fit (or
from a state saved with `save_state`), freezes it, and estimates the reward it would have earned
on the logged queries with IPS and doubly robust estimators and their 95% intervals; where the
log knows every density's reward (sim runs on a trace) it also prints the exact value.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from testbed.argtypes import COUNT, INPUT_FILE, SEED, Number


def policy_agents() -> dict[str, str]:
    """Adaptive-density policies by name, and the agent kind each runs."""
    from testbed.policies.registry import FIXED

    return {name: spec.agent for name, spec in FIXED.items() if spec.agent}


def register(subparsers: Any) -> None:
    """Add the `ope` subcommand to the `testbed` parser."""
    o = subparsers.add_parser("ope", help="evaluate a density agent off-policy (IPS, doubly robust) on a "
                                          "decision log from a results folder")
    o.add_argument("log", type=INPUT_FILE, help="a decision log, decisions-<policy>.npz in a results folder")
    o.add_argument("--agent", required=True,
                   help="the agent to evaluate: fixed<a> (e.g. fixed8), neural-linear-thompson, epsilon-greedy, "
                        "epsilon-greedy-raw, linucb, or a policy name (quickgrasp, quickgrasp-eps, quickgrasp-linucb)")
    o.add_argument("--profiling", type=INPUT_FILE,
                   help="the profiling fit to warm-start it from (default: profiling.npz next to the log)")
    o.add_argument("--state", type=INPUT_FILE,
                   help="an agent state saved with the save_state knob, evaluated instead of the warm start")
    o.add_argument("--cost-weight", type=Number(ge=0.0),
                   help="lambda's scale for the agent's choices (default: the log's)")
    o.add_argument("--draws", type=COUNT, default=1000,
                   help="Monte Carlo draws per logged context for a randomised agent's probabilities")
    o.add_argument("--seed", type=SEED, default=0, help="seed of those draws")
    o.set_defaults(fn=_cmd_ope)


def build_agent(name: str, profiling: Any, cost: Any) -> Any:
    """A warm-started agent by name: `fixed<a>`, an agent kind, or an adaptive policy's name."""
    import re

    from testbed.bandit import AGENT_KINDS, make_agent
    from testbed.errors import TestbedError

    m = re.fullmatch(r"fixed(\d+)", name)
    if m:
        if int(m.group(1)) not in profiling.densities:
            raise TestbedError(f"--agent {name}: density {m.group(1)} is not one of {list(profiling.densities)}")
        return make_agent("fixed", profiling, cost, density=int(m.group(1)))
    agents = policy_agents()
    kind = agents.get(name, name)
    if kind not in AGENT_KINDS or kind in ("fixed", "oracle"):
        allowed = ["fixed<a>", *(k for k in AGENT_KINDS if k not in ("fixed", "oracle")), *agents]
        raise TestbedError(f"--agent {name!r}: unknown; allowed: {', '.join(allowed)} (the oracle needs hindsight)")
    if kind in ("neural-linear-thompson", "epsilon-greedy") and profiling.backbone is None:
        raise TestbedError(f"--agent {name}: needs the backbone, which this profiling fit does not have")
    return make_agent(kind, profiling, cost)


def _cmd_ope(args: argparse.Namespace) -> int:
    import numpy as np

    from testbed.bandit import (
        CostModel,
        doubly_robust,
        hindsight_value,
        ips,
        load_agent_state,
        load_log,
        load_profiling,
        target_probs,
    )
    from testbed.bandit.agents import MAX_FRAMES
    from testbed.errors import TestbedError
    from testbed.report import format_table

    path = Path(args.log)
    log = load_log(path)
    prof_path = Path(args.profiling) if args.profiling else path.with_name("profiling.npz")
    profiling = load_profiling(prof_path)
    if profiling.densities != log.densities:
        raise TestbedError(f"{prof_path}: fitted for densities {list(profiling.densities)}, the log has "
                           f"{list(log.densities)}")
    if profiling.contexts.shape[1] != log.contexts.shape[1]:
        raise TestbedError(f"{prof_path}: contexts of {profiling.contexts.shape[1]} features, the log's have "
                           f"{log.contexts.shape[1]}")
    if args.draws < 1:
        raise TestbedError("--draws must be at least 1")
    weight = args.cost_weight if args.cost_weight is not None else float(log.meta.get("cost_weight", 1.0))
    cost = CostModel(log.densities, int(log.meta.get("max_frames", MAX_FRAMES)), weight)
    agent = build_agent(args.agent, profiling, cost)
    if args.state:
        load_agent_state(args.state, agent)
    probs = target_probs(agent, log, np.random.default_rng(args.seed), draws=args.draws)
    import pandas as pd

    rows = []
    for name, est in (("IPS", ips(log, probs)), ("doubly robust", doubly_robust(log, probs))):
        rows.append({"estimator": name, "value": est.value, "se": est.se, "95% low": est.low, "95% high": est.high})
    exact = hindsight_value(log, probs)
    logged = float(log.rewards.mean())
    print(f"decision log {path}: {len(log)} decisions by {log.meta.get('policy', log.meta.get('agent', '?'))} "
          f"({log.meta.get('reward', 'reward')}), its mean reward {logged:.4f}")
    print(f"target: {args.agent} ({agent.kind}"
          f"{', from ' + args.state if args.state else ', warm-started on ' + str(prof_path)}"
          f", frozen), lambda weight {weight:g}")
    print(format_table(pd.DataFrame(rows), ".4f"))
    if np.isfinite(exact):
        print(f"exact value from every density's logged reward: {exact:.4f}")
    w = probs[np.arange(len(log)), log.action_index] / log.propensities
    ess = float(w.sum() ** 2 / max(float((w ** 2).sum()), 1e-300))
    print(f"importance weights: mean {w.mean():.3f} (about 1 when the log covers the target's choices), effective "
          f"sample size {ess:.0f} of {len(log)}")
    if w.mean() < 0.8:
        from testbed.notes import note

        note("the logging agent rarely chose what this target chooses (weights average well below 1): "
             "IPS is biased toward 0 and DR leans on its reward model; log with more exploration (quickgrasp-eps) "
             "to evaluate targets far from the logger")
    return 0
