"""The paper comparison: every registered paper's figures a run can measure, next to the paper's values
(one module per paper: seed000, seed002, seed003; a new paper adds its module and a line to
FIGURES_BY_SEED), as a table and as display cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from testbed.report import seed000, seed002, seed003
from testbed.report.figures import Unmeasurable
from testbed.report.summary import ALL, format_table

FIGURES_BY_SEED = {seed000.SEED_ID: seed000.FIGURES, "002": seed002.FIGURES, "003": seed003.FIGURES}
"""Each paper's figures by its seed id: what paper_comparison measures."""


def paper_comparison(q: pd.DataFrame, synthetic: bool = True) -> pd.DataFrame:
    """Each figure of the seeds' papers (FIGURES_BY_SEED: 000, 002, 003) that these rows can measure, next
    to the paper's value: seed, role, benchmark, figure, source, paper (a value or a range), sim (the
    measured value, in real runs too), error (signed, a fraction; 0 inside a range). Figures whose
    policies, benchmark or columns the rows lack are left out (a seed-002 figure's benchmark "all" means
    every row); so are those the rows cannot measure (Unmeasurable), each with a line in
    `attrs["notes"]` saying why. `synthetic`: the outcomes come from the synthetic generator (a sim run
    on a synthetic workload); otherwise (a recorded workload, or a real run, whose models give the
    answers) a figure fitted only as the generator's input is held out: nothing was tuned to it there."""
    have = set(q.policy) if len(q) else set()
    benches = (set(q.benchmark) | {ALL}) if len(q) else set()
    rows = []
    notes: list[str] = []
    for seed, figures in FIGURES_BY_SEED.items():
        for f in figures:
            if not set(f.policies) <= have or f.benchmark not in benches or not set(f.columns) <= set(q.columns):
                continue
            try:
                with np.errstate(all="ignore"):
                    sim = f.measure(q)
            except ZeroDivisionError:  # e.g. a network speedup in a run without a network (--inproc)
                continue
            except Unmeasurable as why:
                notes.append(f"seed {seed} {f.benchmark} \"{f.label}\" left out: {why}")
                continue
            if not np.isfinite(sim):
                continue
            role = "held-out" if f.generator_input and not synthetic else f.role
            rows.append({"seed": seed, "role": role, "benchmark": f.benchmark, "figure": f.label,
                         "source": f.source, "paper": f.paper_text(), "sim": float(sim), "error": f.error(sim)})
    out = pd.DataFrame(rows, columns=["seed", "role", "benchmark", "figure", "source", "paper", "sim", "error"])
    out.attrs["notes"] = notes
    return out


def comparison_notes(table: pd.DataFrame) -> list[str]:
    """The notes paper_comparison left on a table: the figures it could not measure, and why."""
    return list(table.attrs.get("notes", []))


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _is_point(paper: str) -> bool:
    """Whether a paper cell is one value ("819", "-2"), not a range ("1.3-12.6", "< 5", ">= 1")."""
    try:
        float(paper)
    except ValueError:
        return False
    return True


def comparison_cells(table: pd.DataFrame, source: bool = True, measured: str = "sim") -> pd.DataFrame:
    """The comparison as display strings: fitted rows first, errors as signed percentages ("in
    range" inside a range the paper gives); with replications, sim is "mean [95% CI]". `measured`
    heads the measured column: "sim" for a simulated run, "measured" for a real one."""
    t = table.copy()
    t["role"] = pd.Categorical(t.role, ["fitted", "held-out"])
    t = t.sort_values("role", kind="stable")
    t["role"] = t.role.astype(str)
    if "sim_ci_low" in t:
        t["sim"] = [f"{_num(v)} [{_num(lo)}, {_num(hi)}]" for v, lo, hi in zip(t.sim, t.sim_ci_low, t.sim_ci_high)]
        t = t.drop(columns=["sim_ci_low", "sim_ci_high", "n"])
    else:
        t["sim"] = [_num(v) for v in t.sim]
    t["error"] = ["in range" if e == 0 and not _is_point(p) else f"{100 * e:+.0f}%" for e, p in zip(t.error, t.paper)]
    keep_seed = len(set(table.seed)) > 1 if len(table) else False
    t = t.drop(columns=([] if keep_seed else ["seed"]) + ([] if source else ["source"]))
    return t.rename(columns={"sim": measured})


def format_comparison(table: pd.DataFrame, source: bool = True, measured: str = "sim") -> str:
    """The comparison as Markdown (see comparison_cells)."""
    if table.empty:
        return "(no figure of the seeds' papers is measurable on this run)"
    return format_table(comparison_cells(table, source, measured))
