"""`testbed` end to end: results folders, sweeps, trace conversion and synthetic traces."""

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from testbed import report
from testbed.bandwidth import mean_mbps, read_mahimahi
from testbed.cli.main import main
from testbed.scenario import REPO_ROOT
from testbed.traces import read_trace

TINY = """
description = "tiny"
seed = 3
paper_comparison = true
[workload]
queries_per_benchmark = 30
[network]
up_trace = "{trace}"
trace_mean_mbps_up = 30.0
[policies]
run = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16"]
"""


def test_sim_writes_a_complete_results_folder(tmp_path, capsys):
    trace = REPO_ROOT / "traces" / "bandwidth" / "fcc-2016-trace_10322_http---edition.cnn.com.mahi"
    sc = tmp_path / "tiny.toml"
    sc.write_text(TINY.format(trace=trace))
    assert main(["sim", str(sc), "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "tiny").iterdir()
    names = {p.name for p in run.iterdir()}
    assert {"queries.parquet", "summary.csv", "summary.md", "scenario.toml", "versions.json", "delay_cdf.png",
            "delay_breakdown.png", "accuracy_vs_delay.png"} <= names
    q = pq.read_table(run / "queries.parquet")
    assert q.schema.metadata[b"testbed.provenance"].startswith(b"synthetic:")
    s = pd.read_csv(run / "summary.csv")
    assert set(s.policy) == {"device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16"}
    assert "SYNTHETIC" in (run / "summary.md").read_text()
    out = capsys.readouterr().out
    assert "SYNTHETIC workload" in out and "Measured vs seed 000" in out
    # the resolved scenario reruns as is and gives the same per-query results
    assert main(["sim", str(run / "scenario.toml"), "--out", str(tmp_path / "again")]) == 0
    (again,) = (tmp_path / "again" / "tiny").iterdir()
    pd.testing.assert_frame_equal(pd.read_parquet(run / "queries.parquet"), pd.read_parquet(again / "queries.parquet"))


def test_paper_comparison_csv_labels_each_row(tmp_path):
    sc = tmp_path / "pc.toml"
    sc.write_text('paper_comparison = true\n[workload]\nqueries_per_benchmark = 30\n[policies]\n'
                  'run = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16", "nosharing"]\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "pc").iterdir()
    table = pd.read_csv(run / "paper_comparison.csv", dtype={"seed": str})
    assert list(table.columns) == ["seed", "role", "benchmark", "figure", "source", "paper", "sim", "error"]
    assert set(table.seed) == {"000"} and set(table.role) == {"fitted", "held-out"}
    md = (run / "summary.md").read_text()
    assert "| fitted |" in md and "| held-out |" in md


def test_replications_report_means_with_confidence_intervals(tmp_path, capsys):
    sc = tmp_path / "rep.toml"
    sc.write_text('seed = 5\npaper_comparison = true\n[workload]\nqueries_per_benchmark = 20\n[policies]\n'
                  'run = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16", "nosharing"]\n')
    assert main(["sim", str(sc), "--replications", "3", "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "rep").iterdir()
    assert {p.name for p in run.iterdir()} >= {"replications.csv", "summary.md", "summary.csv", "paper_comparison.csv",
                                               "seed-5", "seed-6", "seed-7"}
    table = pd.read_csv(run / "replications.csv")
    assert list(table.columns) == ["benchmark", "policy", "metric", "kind", "n", "mean", "ci_low", "ci_high", "differs"]
    assert (table.n == 3).all() and (table.ci_low <= table["mean"]).all() and (table["mean"] <= table.ci_high).all()
    # the mean and CI of a metric, by hand from the three seeds' own summaries
    per_seed = [pd.read_csv(run / f"seed-{s}" / "summary.csv") for s in (5, 6, 7)]
    x = [float(s[(s.benchmark == "all") & (s.policy == "device-native")].mean_s.iloc[0]) for s in per_seed]
    row = table[(table.benchmark == "all") & (table.policy == "device-native") & (table.metric == "mean_s")].iloc[0]
    half = 4.302652729911275 * pd.Series(x).std() / 3 ** 0.5  # t(0.975, 2 dof)
    assert row["mean"] == pytest.approx(sum(x) / 3) and row.ci_high - row["mean"] == pytest.approx(half)
    ratio = table[(table.benchmark == "all") & (table.policy == "quickgrasp-fixed16")
                  & (table.metric == "speedup_vs_edge-hosted")].iloc[0]
    assert ratio.kind == "ratio" and ratio["differs"] == (ratio.ci_low > 1 or ratio.ci_high < 1)
    comparison = pd.read_csv(run / "paper_comparison.csv", dtype={"seed": str})
    assert {"role", "seed", "sim_ci_low", "sim_ci_high", "n"} <= set(comparison.columns)
    out = capsys.readouterr().out
    assert "3 replications" in out and "±" in out and "held-out" in out


def test_a_scenarios_replications_key_runs_its_seeds_as_the_flag_does(tmp_path):
    body = '[workload]\nqueries_per_benchmark = 10\n[policies]\nrun = ["device-native", "quickgrasp-fixed16"]\n'
    (tmp_path / "flag.toml").write_text(body)
    (tmp_path / "key.toml").write_text("replications = 2\n" + body)
    assert main(["sim", str(tmp_path / "flag.toml"), "--replications", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(["sim", str(tmp_path / "key.toml"), "--out", str(tmp_path / "b")]) == 0
    (a,), (b,) = (tmp_path / "a" / "flag").iterdir(), (tmp_path / "b" / "key").iterdir()
    pd.testing.assert_frame_equal(pd.read_csv(a / "replications.csv"), pd.read_csv(b / "replications.csv"))
    assert {p.name for p in b.iterdir()} >= {"seed-0", "seed-1"}


@pytest.mark.parametrize("text,why", [("replications = 1\n", "at least 2"),
                                      ('replications = 3\n[sweep]\n"network.up_mbps" = [5, 20]\n', "[sweep]")])
def test_a_replications_key_of_one_or_with_a_sweep_is_refused_in_one_line(tmp_path, capsys, text, why):
    (tmp_path / "r.toml").write_text(text)
    assert main(["sim", str(tmp_path / "r.toml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "replications" in err[0] and why in err[0]


@pytest.mark.parametrize("value", ["1", "0", "two", "2.5"])
def test_replications_must_be_an_integer_of_at_least_two(tmp_path, capsys, value):
    assert main(["sim", "default", "--replications", value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--replications" in err[0] and ">= 2" in err[0]
    assert not (tmp_path / "default").exists()


def test_resolved_scenario_is_complete(tmp_path):
    assert main(["sim", "default", "--queries", "12", "--out", str(tmp_path)]) == 0
    (run,) = (tmp_path / "default").iterdir()
    text = (run / "scenario.toml").read_text()
    assert "queries_per_benchmark = 12" in text and "[network]" in text and "up_mbps = 59.0" in text


def test_sweep_writes_one_table_and_one_plot(tmp_path):
    sc = tmp_path / "sw.toml"
    sc.write_text('[workload]\nqueries_per_benchmark = 12\n[policies]\nrun = ["device-native", "quickgrasp-fixed16"]\n'
                  '[sweep]\n"network.up_mbps" = [5.0, 50.0]\n"policies.quickgrasp-fixed16.tau_route" = [0.5, 0.7]\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "sw").iterdir()
    table = pd.read_csv(run / "sweep.csv")
    assert len(table) == 2 * 2 * 2 and (run / "sweep.png").stat().st_size > 0
    qg = table[table.policy == "quickgrasp-fixed16"].set_index(["network.up_mbps",
                                                                "policies.quickgrasp-fixed16.tau_route"]).mean_s
    assert qg[(5.0, 0.5)] > qg[(50.0, 0.5)]  # a slower uplink makes escalation slower


def test_convert_trace(tmp_path):
    src = tmp_path / "cooked.txt"
    src.write_text("0.0\t12.0\n1.0\t12.0\n")
    assert main(["convert-trace", str(src), str(tmp_path / "m.mahi")]) == 0
    stamps = read_mahimahi(tmp_path / "m.mahi")
    assert len(stamps) == 2000 and mean_mbps(stamps) == pytest.approx(12.0)
    assert main(["convert-trace", str(src), str(tmp_path / "s.mahi"), "--mean-mbps", "24"]) == 0
    assert mean_mbps(read_mahimahi(tmp_path / "s.mahi")) == pytest.approx(24.0)
    src.write_text("0.0\tlots\n")
    assert main(["convert-trace", str(src), str(tmp_path / "x.mahi")]) == 2


def test_synth_writes_a_readable_trace(tmp_path):
    assert main(["synth", str(tmp_path / "w.parquet"), "--queries", "15", "--benchmarks", "mlvu"]) == 0
    wl = read_trace(tmp_path / "w.parquet")
    assert len(wl.records) == 15 and wl.synthetic


def test_sim_runs_on_a_trace_file(tmp_path):
    assert main(["synth", str(tmp_path / "w.parquet"), "--queries", "15"]) == 0
    sc = tmp_path / "t.toml"
    sc.write_text(f'[workload]\nkind = "trace"\npath = "{tmp_path / "w.parquet"}"\n'
                  '[policies]\nrun = ["device-native", "oracle"]\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0


def test_a_failed_run_leaves_no_folder(tmp_path, capsys):
    sc = tmp_path / "broken.toml"
    sc.write_text('[workload]\nkind = "trace"\npath = "missing.parquet"\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "res")]) == 2
    assert "trace file not found" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()  # nothing half-written, not even the scenario's folder


def test_results_into_an_unwritable_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["sim", "default", "--queries", "10", "--out", str(blocker / "res")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "is a file, not a folder" in err[0]


def test_a_comparison_on_rows_without_a_network_leaves_the_network_figures_out(tmp_path):
    """An in-process run has no link: its network speedups are 0/0, left out rather than a crash."""
    sc = tmp_path / "pc.toml"
    sc.write_text('paper_comparison = true\n[workload]\nqueries_per_benchmark = 20\n[policies]\n'
                  'run = ["device-native", "edge-hosted", "collaborative", "quickgrasp-fixed16", "nosharing"]\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "pc").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    with_link = report.paper_comparison(q)
    assert with_link.figure.str.contains("network speedup").any()
    no_link = report.paper_comparison(q.assign(t_uplink_s=0.0, t_downlink_s=0.0))
    assert not no_link.figure.str.contains("network speedup").any()
    assert set(no_link.figure) < set(with_link.figure)


def test_arrivals_too_sparse_for_float_time_are_an_error_not_a_result(tmp_path, capsys):
    """rate_per_client = 1e-300 put every arrival at ~1e300 s, where adding a delay changes nothing (all 0.0)."""
    sc = tmp_path / "sparse.toml"
    sc.write_text('[arrivals]\nkind = "poisson"\nrate_per_client = 1e-300\n[workload]\nqueries_per_benchmark = 10\n'
                  '[policies]\nrun = ["device-native"]\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rate_per_client" in err[0]
    assert not list((tmp_path / "r").rglob("queries.parquet"))  # no results


def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(tmp_path):
    """A SIGKILLed run leaves `.<stamp>.<pid>.partial`; the next run in the folder removes it, not a live one's."""
    import subprocess
    import sys

    from testbed.results import RunFolders

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / "s" / f".20260101-000000.{dead.stdout.strip()}.partial"
    alive = tmp_path / "s" / f".20260101-000001.{os.getpid()}.partial"
    for p in (gone, alive):
        p.mkdir(parents=True)
        (p / "queries.parquet").write_bytes(b"")
    folders = RunFolders()
    folders.new(tmp_path, "s", "20260101-000002")
    assert not gone.exists() and alive.exists()
    folders.discard()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one, on purpose
def test_an_interrupt_that_a_finalizer_swallowed_still_stops_the_command(tmp_path):
    """Ctrl-C landing inside a finalizer is printed and ignored by Python ("Exception ignored in"); the
    command must still end with 130 and leave no results folder."""
    import argparse
    import signal
    import time

    from testbed.cli.main import _interrupts, _run
    from testbed.results import RunFolders

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, inside the finalizer

    def command(args):
        Finalized()  # dropped at once
        return 0

    folders = RunFolders()
    out = folders.new(tmp_path, "s", "x")
    with _interrupts() as interrupts:
        assert _run(argparse.Namespace(fn=command), folders, interrupts) == 130
    assert not out.exists() and not (tmp_path / "s" / "x").exists()


def test_a_second_run_reuses_the_cached_backbone_and_says_so(tmp_path, capsys, monkeypatch):
    import testbed.experiment

    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    sc = tmp_path / "bb.toml"
    sc.write_text('[workload]\nqueries_per_benchmark = 20\n[policies]\nrun = ["device-native", "quickgrasp"]\n')
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0
    assert "cached" not in capsys.readouterr().out
    monkeypatch.setattr(testbed.experiment, "_FITS", {})  # a new process: nothing fitted in memory
    assert main(["sim", str(sc), "--out", str(tmp_path / "r")]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if "cached" in x]
    assert len(lines) == 1 and "backbone" in lines[0]
    first, second = sorted((tmp_path / "r" / "bb").iterdir())
    pd.testing.assert_frame_equal(pd.read_parquet(first / "queries.parquet"),
                                  pd.read_parquet(second / "queries.parquet"))


def test_output_to_a_pipe_keeps_whole_column_names(tmp_path):
    import subprocess
    import sys

    sc = tmp_path / "w.toml"
    sc.write_text('[workload]\nqueries_per_benchmark = 10\n[policies]\nrun = ["device-native", "edge-hosted", '
                  '"collaborative"]\n')
    out = subprocess.run([sys.executable, "-m", "testbed.cli.main", "sim", str(sc), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert "x vs device-native" in out.stdout and "…" not in out.stdout


def test_a_metric_equal_across_seeds_shows_no_float_noise_in_its_interval():
    from testbed import report

    table = pd.DataFrame([{"benchmark": "all", "policy": "p", "metric": "energy_j_per_query", "kind": "mean", "n": 3,
                           "mean": 961.0, "ci_low": 961.0 - 1.14e-13, "ci_high": 961.0 + 1.14e-13, "differs": False},
                          {"benchmark": "all", "policy": "p", "metric": "accuracy", "kind": "mean", "n": 3,
                           "mean": 80.0, "ci_low": 78.0, "ci_high": 82.0, "differs": False}])
    row = report.replication_table(table, "all", []).iloc[0]
    assert row["J/q"] == "961 ± 0" and row["acc %"] == "80.0 ± 2.0"


def test_results_folders_say_what_made_them_and_runs_lists_them(tmp_path, capsys):
    """A sim run writes results/<scenario>/<stamp>-sim/; `testbed runs` lists it with its mode, workload and
    the most accurate and fastest policy read from its summary.csv (the oracle, a bound, left out)."""
    import pandas as pd

    from testbed.cli.main import main

    assert main(["sim", "default", "--queries", "10", "--out", str(tmp_path)]) == 0
    (run,) = (tmp_path / "default").iterdir()
    assert run.name.endswith("-sim") and len(run.name) == len("20260101-000000-sim")
    capsys.readouterr()
    assert main(["runs", "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    s = pd.read_csv(run / "summary.csv")
    s = s[(s.benchmark == "all") & (s.policy != "oracle")]
    best = s.loc[s.accuracy.idxmax()]
    assert f"default/{run.name}" in shown and " sim " in shown and "SYNTHETIC" in shown
    assert f"most accurate {best.policy} {best.accuracy:.1f}%" in shown
    assert main(["runs", "defualt", "--out", str(tmp_path)]) == 2
    assert "did you mean 'default'" in capsys.readouterr().err


def test_notes_print_one_line_each_and_quiet_silences_them(capsys):
    """Every note goes through the "testbed" logger (testbed/notes.py) to one handler: `note: ` and one
    line (a multi-line message keeps its first), nothing with --quiet, `debug:` details with --verbose."""
    from testbed.cli.ui import setup_logging
    from testbed.notes import detail, note

    try:
        setup_logging(0)
        note("a skipped policy\nsecond line")
        detail("hidden")
        assert capsys.readouterr().out.splitlines() == ["note: a skipped policy"]
        setup_logging(-1)
        note("silenced")
        assert capsys.readouterr().out == ""
        setup_logging(1)
        detail("shown")
        assert capsys.readouterr().out.strip() == "debug: shown"
    finally:
        setup_logging(0)
    assert main(["sim", "--help"]) == 0 and "--quiet" in capsys.readouterr().out


def test_a_paper_comparison_on_a_handful_of_queries_says_it_is_noise(tmp_path, capsys):
    """--queries 10 leaves a few test queries per benchmark: the comparison still prints, with one note
    that its errors are mostly sampling noise at that size."""
    from testbed.cli.main import SMALL_SAMPLE

    assert main(["sim", "default", "--queries", "10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    noise = [line for line in out.splitlines() if "sampling noise" in line]
    assert len(noise) == 1 and noise[0].startswith("note: ") and str(SMALL_SAMPLE) in noise[0]
    assert "Measured vs seed 000" in out
