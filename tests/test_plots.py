"""Every plot of every shipped scenario, drawn from a small run of it: no two policies in a figure
look alike, no text falls outside the figure, every axis is labelled (issue 25 item 2).

Figures are checked where they would be saved (Figure.savefig is replaced by the audit), so what is
checked is what the plotting code made, laid out as it would be written."""

from __future__ import annotations

import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import tomli_w  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from testbed.cli.main import main  # noqa: E402
from testbed import report  # noqa: E402
from testbed.report import plots  # noqa: E402
from testbed.plotstyle import FIXED, MARKERS, PALETTE, styles_for  # noqa: E402
from testbed.policies.registry import policy_names  # noqa: E402
from testbed.results import workload_label  # noqa: E402
from testbed.scenario import REPO_ROOT  # noqa: E402

SHIPPED = sorted((REPO_ROOT / "scenarios").glob("*.toml"))
SLACK_PX = 1.0


def _inside(box, fig_box) -> bool:
    return (box.x0 >= fig_box.x0 - SLACK_PX and box.y0 >= fig_box.y0 - SLACK_PX
            and box.x1 <= fig_box.x1 + SLACK_PX and box.y1 <= fig_box.y1 + SLACK_PX)


def audit(fig: Figure) -> tuple[list[str], dict[str, tuple[str, str, str]]]:
    """What is wrong with a laid-out figure (text outside it, an axis without a label, two policies
    with one colour or one marker), and each policy legend entry's (colour, marker, line style)."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    problems: list[str] = []
    ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks |= {id(tick.label1), id(tick.label2)}
            extent = axis.get_tightbbox(renderer)  # the drawn tick labels and the axis label
            if extent is not None and not _inside(extent, box):
                problems.append(f"{axis.axis_name} axis of {ax.get_title()!r} reaches outside the figure")
        if not ax.get_xlabel().strip() or not ax.get_ylabel().strip():
            problems.append(f"axes {ax.get_title()!r} lacks a label: x {ax.get_xlabel()!r}, y {ax.get_ylabel()!r}")
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    for t in texts:
        if not _inside(t.get_window_extent(renderer), box):
            problems.append(f"text {t.get_text()[:60]!r} is not inside the figure")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    styles: dict[str, tuple[str, str, str]] = {}
    title = fig._suptitle.get_window_extent(renderer) if fig._suptitle is not None else None
    for legend in legends:
        if not _inside(legend.get_window_extent(renderer), box):
            problems.append("a legend is not inside the figure")
        if title is not None and title.overlaps(legend.get_window_extent(renderer)):
            problems.append("the title runs into a legend")
        if legend.get_gid() == report.POLICY_LEGEND:
            for handle, text in zip(legend.legend_handles, legend.get_texts()):
                styles[text.get_text()] = (to_hex(handle.get_color()), str(handle.get_marker()),
                                           str(handle.get_linestyle()))
    for i, what in ((0, "colour"), (1, "marker")):
        seen: dict[str, str] = {}
        for policy, style in styles.items():
            if style[i] in seen:
                problems.append(f"{policy} and {seen[style[i]]} share the {what} {style[i]}")
            seen[style[i]] = policy
    return problems, styles


@pytest.fixture
def figures(monkeypatch):
    """Every figure the code under test saves, audited instead of written: (file name, title, problems, styles)."""
    found: list[tuple[str, str, list[str], dict]] = []

    def save(fig: Figure, path, *args, **kwargs) -> None:
        title = fig._suptitle.get_text() if fig._suptitle is not None else ""
        found.append((Path(path).name, title, *audit(fig)))

    monkeypatch.setattr(Figure, "savefig", save)
    return found


def small(path: Path, folder: Path) -> Path:
    """A copy of a shipped scenario that runs in seconds: 10 queries per benchmark, 1 stream per
    synthetic set, 2 replications, each swept key's first and last values (the third key on: its
    first). Written into folder/scenarios/ beside a link to traces/, so its relative paths resolve."""
    data = tomllib.loads(path.read_text())
    workload = data.setdefault("workload", {})
    if workload.get("kind") == "stream":
        data.setdefault("stream", {})["streams_per_dataset"] = 1
    elif workload.get("kind") != "stream-trace":
        workload["queries_per_benchmark"] = 10
    if "replications" in data:
        data["replications"] = 2
    if "sweep" in data:
        data["sweep"] = {k: ([v[0], v[-1]] if i < 2 else v[:1]) for i, (k, v) in enumerate(data["sweep"].items())}
    (folder / "scenarios").mkdir(parents=True, exist_ok=True)
    if not (folder / "traces").exists():
        (folder / "traces").symlink_to(REPO_ROOT / "traces")
    out = folder / "scenarios" / path.name
    out.write_text(tomli_w.dumps(data))
    return out


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_plot_of_a_small_run_of_each_shipped_scenario(path, tmp_path, figures):
    scenario = small(path, tmp_path)
    assert main(["sim", str(scenario), "--executor", "serial", "--out", str(tmp_path / "out")]) == 0
    assert figures, "the run drew no figure"
    synthetic = tomllib.loads(path.read_text()).get("workload", {}).get("kind", "synthetic") in (
        "synthetic", "synthetic-image", "synthetic-crop", "stream")
    for name, title, problems, _ in figures:
        assert problems == [], f"{name}: {problems}"
        assert title, f"{name} has no title"
        assert not synthetic or "SYNTHETIC" in title, f"{name}: {title!r}"
    policy_figures = [(name, styles) for name, _, _, styles in figures
                      if name not in ("reliability.png", "delay_breakdown.png")]
    assert all(styles for _, styles in policy_figures), f"a figure of policies has no policy legend: {policy_figures}"


def _live_frames(policies: list[str], n: int = 6) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """A small live result (delay per query and policy) and two sim replays of it, the shape fidelity.py gives."""
    rng = np.random.default_rng(0)
    live = pd.DataFrame([{"policy": p, "query_id": f"q{i}", "delay_s": float(rng.uniform(0.05, 8.0))}
                         for p in policies for i in range(n)])
    sims = {mode: live.assign(delay_s=live.delay_s * rng.uniform(0.5, 2.0, len(live)))
            for mode in ("strict", "profile")}
    return live, sims


def test_the_live_only_plots_pass_the_same_checks(tmp_path, figures):
    """fidelity.png (made after a live run) on a small synthetic live frame of the default scenario's
    policies, titled as fidelity.py titles it; the threshold sweep of `testbed routers`; and a live
    run's longest title on a one-panel figure."""
    run = tomllib.loads((REPO_ROOT / "scenarios" / "default.toml").read_text())["policies"]["run"]
    live, sims = _live_frames(run)
    label = workload_label("synthetic:ffmpeg-lavfi:0", "live")
    report.plot_fidelity(live, sims, tmp_path / "fidelity.png", f"default: sim vs live delay per query - {label}")
    table = pd.DataFrame([{"policy": p, "tau_route": t, "mean_s": 0.2 + t + i / 10, "accuracy": 50 + 40 * t,
                           "local_share": 1 - t} for i, p in enumerate(["quickgrasp", "input-aware"])
                          for t in (0.2, 0.5, 0.8)])
    picked = table[table.tau_route == 0.5]
    report.plot_threshold_sweep(table, picked, tmp_path / "threshold_sweep.png", "routers - " + label)
    long = (f"default - answers are noise: random weights; {label}; profile measured (live, models tiny) "
            "on a machine with a long name")
    q = pd.DataFrame({"policy": ["quickgrasp", "nosharing"] * 3, "benchmark": "mvbench", "regret": [0.1] * 6,
                      "submit_s": np.arange(6.0), "delay_s": np.linspace(0.2, 3.0, 6)})
    report.plot_regret(q, tmp_path / "cumulative_regret.png", long)
    report.plot_delay_cdf(q, tmp_path / "delay_cdf.png", long)
    assert [f[0] for f in figures] == ["fidelity.png", "threshold_sweep.png", "cumulative_regret.png", "delay_cdf.png"]
    for name, title, problems, styles in figures:
        assert problems == [], f"{name}: {problems}"
        assert "SYNTHETIC" in title
        assert styles
    assert set(figures[0][3]) == set(run)


def test_a_clipped_title_and_a_shared_style_are_caught(figures):
    """The audit itself: a title wider than its figure (and over the legend), an unlabelled axis and
    two policies in one colour are each reported (the checks above can fail)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    fig.suptitle("SYNTHETIC " * 12)
    legend = fig.legend(handles=[plt.Line2D([], [], color="C0", marker="o", label="a"),
                                 plt.Line2D([], [], color="C0", marker="s", label="b")])
    legend.set_gid(report.POLICY_LEGEND)
    problems, styles = audit(fig)
    plt.close(fig)
    assert any("SYNTHETIC" in p and "not inside" in p for p in problems)
    assert "the title runs into a legend" in problems
    assert any("lacks a label" in p for p in problems)
    assert any("share the colour" in p for p in problems)
    assert styles["a"][1] == "o" and styles["b"][1] == "s"


def test_log_axes_label_more_than_one_tick_inside_a_decade(figures):
    """A delay axis from 0.3 s to 2.5 s (under one decade) reads 0.3, 0.5, 1, 2, not only "10^0"."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0.3, 2.5], [0, 1])
    plots._log_axis(ax, "x", "delay (s)", [0.3, 2.5])
    fig.draw_without_rendering()
    shown = [t.get_text() for t in ax.get_xticklabels(minor=True) + ax.get_xticklabels()
             if t.get_text() and 0.3 <= t.get_position()[0] <= 2.5]
    plt.close(fig)
    assert {"0.3", "0.5", "1", "2"} <= set(shown)


def test_every_registry_policy_has_a_fixed_style():
    assert set(policy_names()) == set(FIXED)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_shipped_scenarios_policies_keep_their_own_styles_and_share_none(path):
    """Stable across scenarios: no shipped scenario needs the fallback, so each policy looks the same in all."""
    run = tomllib.loads(path.read_text()).get("policies", {}).get("run", [])
    if not run:
        pytest.skip("runs the default policies")
    got = styles_for(run)
    assert got == {p: FIXED[p] for p in run}
    assert len({s.color for s in got.values()}) == len(run)
    assert len({s.marker for s in got.values()}) == len(run)


def test_the_styles_the_issue_found_clashing_now_differ():
    """tab20 gave nosharing and uncalibrated-fixed16 one colour, oracle and uncalibrated-fixed16 one marker."""
    s = styles_for(["nosharing", "oracle", "uncalibrated-fixed16"])
    assert s["nosharing"].color != s["uncalibrated-fixed16"].color
    assert s["oracle"].marker != s["uncalibrated-fixed16"].marker


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(policy_names()), unique=True, max_size=20),
       st.lists(st.text("abcdefgh-", min_size=1, max_size=6), unique=True, max_size=4))
def test_any_figure_of_up_to_20_policies_gets_distinct_colours_and_markers(known, unknown):
    """Mixed families and unknown names included; the same whatever order the names come in."""
    names = list(dict.fromkeys(known + unknown))[:20]
    got = styles_for(names)
    assert set(got) == set(names)
    assert len({s.color for s in got.values()}) == len(names)
    assert len({s.marker for s in got.values()}) == len(names)
    assert styles_for(reversed(names)) == got
    assert all(s.color in PALETTE and s.marker in MARKERS for s in got.values())


def test_past_20_policies_no_two_share_colour_and_marker():
    names = policy_names()
    got = styles_for(names)
    assert len({(s.color, s.marker) for s in got.values()}) == len(names)
