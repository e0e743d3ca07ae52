"""The soak harness on a small scale: every request ends answered or fallen back across an edge killed and
restarted, an unreachable spell and a slow edge; the report says so and each fault's recovery."""

import pandas as pd
import pytest

from testbed.cli.main import main
from testbed.live.soak import SoakConfig, rss_slope, soak


def test_a_small_soak_loses_nothing_across_every_fault():
    cfg = SoakConfig(queries=400, clients=3, timeout_s=0.5, unreachable_s=0.6, slow_queries=6)
    t = soak(cfg)
    req, faults = t["requests"], t["faults"]
    assert len(req) == 400 and (req.outcome != "lost").all()
    assert set(faults.fault) == {"kill-restart", "unreachable", "slow"}
    assert req.outcome.str.startswith("fallback").sum() >= 6  # at least the slow ones came back too late
    assert (req[req.slow].outcome != "answered").all()  # a reply after the client's timeout is dropped
    assert faults.recovery_s.notna().all()  # answered again after each fault
    slow = faults.set_index("fault").loc["slow"]  # lasts until its last slow request gave up, all fallen back
    assert slow.fault_s >= cfg.timeout_s and slow.fallen_back_during >= cfg.slow_queries
    assert (req[req.request > 0.9 * 400].outcome == "answered").mean() > 0.9  # and the end of the run is healthy


def test_rss_slope_is_mb_per_thousand_requests_after_warm_up():
    rss = pd.DataFrame({"done": [0, 100, 500, 1000, 1500, 2000], "rss_mb": [5.0, 40.0, 41.0, 42.0, 43.0, 44.0]})
    assert rss_slope(rss) == pytest.approx(2.0)  # the warm-up jump (first 20%) left out


def test_the_command_writes_its_report(tmp_path, capsys):
    assert main(["soak", "--queries", "200", "--clients", "2", "--no-faults", "--out", str(tmp_path)]) == 0
    (run,) = (tmp_path / "soak").iterdir()
    assert {"soak.md", "per_thousand.csv", "rss.csv", "faults.csv",
            "requests.parquet"} <= {p.name for p in run.iterdir()}
    assert "lost 0" in capsys.readouterr().out
