"""Run-level additions that belong to one paper's policies, kept off the core types: a policy family
names the artifact rows its runs add (`ArtifactRows`, carried by its Router), a run keeps them as
`Artifact`s, and the paper's report module registers the `section` that writes them (and whatever
else that paper adds to a results folder). Adding a paper adds its own modules and registrations;
RunState, RunResult and the folder writer stay as they are."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from testbed.policies.base import RunState
    from testbed.results import RunResult


@dataclass(frozen=True)
class Artifact:
    """One kind of run-level table: a row per policy that added one."""

    kind: str
    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ArtifactRows:
    """How a policy family's run adds to an artifact: `row(policy, its RunState, its query rows)`, or
    None where that policy has nothing to add."""

    kind: str
    row: Callable[[str, RunState, pd.DataFrame], dict[str, Any] | None]


Section = Callable[[Path, "RunResult", str, bool], list[str]]
"""(results folder, run, figure title, plots) -> the summary.md lines of the files it wrote there."""

_SECTIONS: dict[str, tuple[int, Section]] = {}


def section(name: str, order: int) -> Callable[[Section], Section]:
    """Register a results-folder section (sections are written in `order`; registering a name again
    replaces it)."""
    def register(fn: Section) -> Section:
        _SECTIONS[name] = (order, fn)
        return fn
    return register


def write_sections(out: Path, run: RunResult, title: str, plots: bool) -> list[str]:
    """Every registered section's files, and their summary.md lines in order."""
    lines: list[str] = []
    for _, fn in sorted(_SECTIONS.values(), key=lambda s: s[0]):
        lines += fn(out, run, title, plots)
    return lines


def collect(runs: Sequence[tuple[str, Sequence[ArtifactRows], RunState]],
            queries: pd.DataFrame) -> tuple[Artifact, ...]:
    """The artifacts of a run: for each (policy, its family's artifact rows, its state), the rows it adds,
    given its own query rows; kinds in the order they first appear."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for policy, kinds, state in runs:
        if not kinds:
            continue
        mine = queries[queries.policy == policy] if len(queries) else queries
        for k in kinds:
            row = k.row(policy, state, mine)
            if row is not None:
                by_kind.setdefault(k.kind, []).append(row)
    return tuple(Artifact(kind, tuple(rows)) for kind, rows in by_kind.items())
