"""A paper's run-level additions plug in without touching the core types (issue 26 item 1): a toy
family defines what it learns (a Learned slot), the rows its runs add (ArtifactRows on its Router)
and the section that writes them (testbed.artifacts.section); a sim run of it carries the artifact
and its results folder gets the section's file and summary lines. Everything below lives in this
file and the registry's dict, as a fifth paper would in its own modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

import testbed.artifacts as artifacts
import testbed.policies.registry as registry
from testbed import report
from testbed.artifacts import Artifact, ArtifactRows, collect, section, write_sections
from testbed.policies.base import Learned, PolicySpec, Router, RunState
from testbed.policies.baselines import device_native
from testbed.results import write_run
from testbed.scenario import load_scenario, resolved_toml, with_overrides
from testbed.sim.engine import load_workload, run_scenario

COUNTED: Learned[int] = Learned("toy: profiling queries seen")


def _warm_up(spec: Any, knobs: Any, state: RunState, split: Any, density: int, seed: int) -> None:
    COUNTED.put(state, len(split))


def _row(policy: str, state: RunState, mine: pd.DataFrame) -> dict[str, Any] | None:
    return {"policy": policy, "profiled": COUNTED.get(state), "answered": int(len(mine))}


TOY = ArtifactRows("toy", _row)


def _toy_section(out: Path, run: Any, title: str, plots: bool) -> list[str]:
    rows = run.rows_of("toy")
    if not rows:
        return []
    pd.DataFrame(list(rows)).to_csv(out / "toy.csv", index=False)
    return ["## Toy", "", f"{len(rows)} policy rows", ""]


def test_a_new_family_adds_its_artifact_and_section_without_core_changes(monkeypatch, tmp_path):
    spec = PolicySpec("toy-native", device_native, router=Router("toy", _warm_up, artifacts=(TOY,)),
                      description="device-native, counting its profiling split")
    monkeypatch.setitem(registry.FIXED, spec.name, spec)
    monkeypatch.setitem(artifacts._SECTIONS, "toy", (99, _toy_section))
    sc = with_overrides(load_scenario("default"), {"workload.queries_per_benchmark": 20,
                                                   "policies.run": ["toy-native", "device-native"]})
    run = run_scenario(sc)
    (row,) = run.rows_of("toy")  # device-native's family adds none
    answered = int((run.queries.policy == "toy-native").sum())
    assert row["policy"] == "toy-native" and row["answered"] == answered > 0
    assert row["profiled"] == len(load_workload(sc).split("profile")) > 0
    write_run(tmp_path, sc.name, sc.description, resolved_toml(sc), run,
              report.summarize(run.queries, sc.policies.baselines), None, sc.seed, plots=False)
    assert pd.read_csv(tmp_path / "toy.csv").to_dict("records") == [row]
    assert "## Toy" in (tmp_path / "summary.md").read_text()


def test_artifacts_collect_rows_by_kind_in_first_seen_order():
    a, b = ArtifactRows("a", lambda p, s, m: {"policy": p, "n": len(m)}), ArtifactRows("b", lambda p, s, m: None)
    q = pd.DataFrame({"policy": ["x", "x", "y"]})
    got = collect([("x", (b, a), RunState()), ("y", (a,), RunState()), ("z", (), RunState())], q)
    assert got == (Artifact("a", ({"policy": "x", "n": 2}, {"policy": "y", "n": 1})),)


def test_sections_are_written_in_their_order(monkeypatch, tmp_path):
    monkeypatch.setattr(artifacts, "_SECTIONS", {})
    section("late", 2)(lambda out, run, title, plots: ["late"])
    section("early", 1)(lambda out, run, title, plots: ["early"])
    assert write_sections(tmp_path, None, "", False) == ["early", "late"]  # type: ignore[arg-type]
