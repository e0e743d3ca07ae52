"""Sweeps and replications as library calls (sim/sweep.py): the same sweep.csv whatever runs the points, a failed point
named and its folder never half-written, command-line overrides keeping the sweep."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from testbed.cli.main import main
from testbed.sim.sweep import PointFailed, run_sweep

SWEEP = ('seed = 3\n[workload]\nqueries_per_benchmark = 12\n[policies]\nrun = ["device-native", "edge-hosted"]\n'
         '[sweep]\n"network.up_mbps" = [5.0, 50.0]\n"network.rtt_ms" = [10.0, 80.0]\n')


def test_serial_and_local_executors_write_the_same_sweep_csv(tmp_path):
    sc = tmp_path / "sw.toml"
    sc.write_text(SWEEP)
    for ex in ("serial", "local"):
        assert main(["sim", str(sc), "--executor", ex, "--workers", "2", "--out", str(tmp_path / ex)]) == 0
    (serial,), (local,) = (tmp_path / "serial" / "sw").iterdir(), (tmp_path / "local" / "sw").iterdir()
    assert (serial / "sweep.csv").read_bytes() == (local / "sweep.csv").read_bytes()
    table = pd.read_csv(serial / "sweep.csv")
    assert len(table) == 4 * 2 and list(table.columns[:2]) == ["network.up_mbps", "network.rtt_ms"]
    points = sorted(p.name for p in local.iterdir() if p.is_dir())
    assert points == ["point-000", "point-001", "point-002", "point-003"]
    assert not list(local.glob("point-000/*.png"))  # per-point figures only with --plots all
    assert (local / "sweep.png").is_file()
    from testbed.cli.runs import list_runs

    (entry,) = list_runs(tmp_path / "local")  # testbed runs lists a sweep by its points
    assert entry.folder == f"sw/{local.name}" and entry.headline == "sweep of 4 points (sweep.csv)"


def test_a_failed_point_is_named_and_leaves_no_half_written_folder(tmp_path, monkeypatch):
    import testbed.sim.engine

    sc = tmp_path / "sw.toml"
    sc.write_text(SWEEP)
    real = testbed.sim.engine.run_scenario

    def flaky(point, *a, **kw):
        if point.network.up_mbps == 50.0 and point.network.rtt_ms == 10.0:
            raise RuntimeError("the model fell over")
        return real(point, *a, **kw)

    monkeypatch.setattr(testbed.sim.engine, "run_scenario", flaky)
    with pytest.raises(PointFailed) as err:
        run_sweep(str(sc), tmp_path / "out", executor="serial")
    msg = str(err.value)
    assert "sweep point 2" in msg and "'network.up_mbps': 50.0" in msg and "the model fell over" in msg
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["point-000", "point-001"]


def test_command_line_overrides_keep_the_sweep(tmp_path):
    sc = tmp_path / "sw.toml"
    sc.write_text(SWEEP)
    assert main(["sim", str(sc), "--queries", "10", "--seed", "4", "--executor", "serial",
                 "--out", str(tmp_path / "r")]) == 0
    (run,) = (tmp_path / "r" / "sw").iterdir()
    assert len(pd.read_csv(run / "sweep.csv")) == 8
    toml = (run / "point-003" / "scenario.toml").read_text()
    assert "seed = 4" in toml and "queries_per_benchmark = 10" in toml


def test_the_ray_executor_writes_the_same_sweep_csv(tmp_path):
    pytest.importorskip("ray")
    sc = tmp_path / "sw.toml"
    sc.write_text(SWEEP)
    serial = run_sweep(str(sc), tmp_path / "s", executor="serial")
    on_ray = run_sweep(str(sc), tmp_path / "r", executor="ray")
    pd.testing.assert_frame_equal(serial.table, on_ray.table)


def test_a_point_alone_is_the_grids_point_in_product_order(tmp_path):
    import itertools

    from testbed.scenario import load_scenario

    sc_path = tmp_path / "g.toml"
    sc_path.write_text('[sweep]\n"network.up_mbps" = [1.0, 2.0]\n"network.rtt_ms" = [5.0, 6.0, 7.0]\n'
                       '"seed" = [0, 1]\n')
    sc = load_scenario(str(sc_path))
    want = [dict(zip(sc.sweep, v)) for v in itertools.product(*sc.sweep.values())]
    assert sc.points == 12 and [sc.point(i)[0] for i in range(12)] == want
    assignment, point = sc.point(7)
    assert (point.network.up_mbps, point.network.rtt_ms, point.seed) == (2.0, 5.0, 1) == tuple(assignment.values())
    with pytest.raises(IndexError):
        sc.point(12)


def test_replications_are_a_library_call_equal_to_one_run_per_seed(tmp_path):
    """run_replications on a process pool: each seed's summary is that of a plain run on that seed,
    and the replication table's mean is their mean (its CI half-width from Student t)."""
    from testbed.sim.engine import run_scenario
    from testbed.sim.sweep import run_replications
    from testbed import report
    from testbed.scenario import load_scenario, with_overrides

    result = run_replications("default", tmp_path, 3, overrides={"workload.queries_per_benchmark": 12},
                              executor="local", workers=2, plots=False)
    assert result.seeds == [0, 1, 2] and all((tmp_path / f"seed-{s}" / "summary.csv").is_file() for s in range(3))
    sc = with_overrides(load_scenario("default"), {"workload.queries_per_benchmark": 12})
    for s, p in zip(result.seeds, result.points):
        alone = report.summarize(run_scenario(replace(sc, seed=s)).queries, sc.policies.baselines)
        pd.testing.assert_frame_equal(p.summary, alone)
    t = result.table
    row = t[(t.benchmark == report.ALL) & (t.policy == "edge-hosted") & (t.metric == "mean_s")].iloc[0]
    means = [p.summary.set_index(["benchmark", "policy"]).loc[(report.ALL, "edge-hosted"), "mean_s"]
             for p in result.points]
    assert row["n"] == 3 and row["mean"] == pytest.approx(sum(means) / 3)
