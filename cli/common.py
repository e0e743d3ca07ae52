"""What the `testbed` commands share: the scenario a command line names (with its overrides), a
results folder's name, and the edge a real run offloads to."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any


def stamp(mode: str = "") -> str:
    """A results folder's name: when the run started, and what ran it (sim, live, inproc)."""
    import datetime

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{mode}" if mode else stamp


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The scenario keys --seed and --queries set."""
    overrides: dict[str, object] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.queries is not None:
        overrides["workload.queries_per_benchmark"] = args.queries
    return overrides


def scenario_from_args(args: argparse.Namespace) -> Any:
    """The scenario named on the command line, with --seed and --queries applied (a sweep stays a sweep)."""
    from dataclasses import replace

    from testbed.scenario import load_scenario, with_overrides

    sc = load_scenario(args.scenario)
    given = overrides(args)
    return replace(with_overrides(sc, given, FLAGS), sweep=sc.sweep) if given else sc


FLAGS = {"seed": "--seed", "workload.queries_per_benchmark": "--queries", "models.preset": "--models",
         "models.device": "--device"}
"""Scenario keys the command line sets, and the flag an error about them names."""


def client_curve(args: argparse.Namespace) -> Any:
    """The CURVE keys of `testbed live --edge ... --edge-key ... --client-key ...` (None without them)."""
    if not (args.edge_key or args.client_key):
        return None
    from testbed.live.curve import client_curve as load_client_curve
    from testbed.errors import ConfigError

    if not (args.edge and args.edge_key and args.client_key):
        raise ConfigError("--edge-key", "CURVE keys are for an edge you started (--edge): give --edge, --edge-key "
                                        "and --client-key together")
    return load_client_curve(Path(args.edge_key), Path(args.client_key))


def edge_link(stack: contextlib.ExitStack, console: Any, sc: Any, args: argparse.Namespace,
              extra: dict[str, Any]) -> tuple[Any, str]:
    """The edge a real run offloads to, entered on `stack`: None with --inproc (its steps run in this
    process), else an edge process behind a link shaped as the scenario says (or --edge), whose
    description goes into `extra`. Returns (link, where the run is, for the progress line)."""
    if args.inproc:
        return None, "in one process"
    from testbed.live.run import live_link

    console.print(f"using the edge at {args.edge} ..." if args.edge else
                  f"starting the edge and the link for {sc.name} ...")

    link, info = stack.enter_context(live_link(sc, sc.model_pair(), sc.models.device, args.edge,
                                               curve=getattr(args, "curve", None)))
    extra.update(info)
    return link, f"live ({extra.get('shaping')})"
