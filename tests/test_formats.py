"""Trace and profile validation: every malformed input is a one-line error of the right type."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.errors import ConfigError, TraceError
from testbed.profiles import Curve, load_profile, profile_from_dict, profile_to_dict
from testbed.scenario import REPO_ROOT
from testbed.traces import META_VERSION, read_trace, to_table, write_trace
from testbed.workload.synthetic import synthetic_workload

PROFILE = REPO_ROOT / "traces" / "profiles" / "paper-fitted.toml"


@pytest.fixture(scope="module")
def frame():
    return synthetic_workload(("mvbench",), 20, 0)[0]


def test_curve_interpolates_and_extrapolates():
    c = Curve((0.0, 10.0, 20.0), (1.0, 2.0, 4.0))
    assert c(5.0) == pytest.approx(1.5)
    assert c(15.0) == pytest.approx(3.0)
    assert c(30.0) == pytest.approx(6.0)  # last segment's slope
    assert c(-100.0) == 0.0  # never negative


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 1e9, allow_subnormal=False), min_size=2, max_size=12, unique=True),
       st.lists(st.floats(0, 1e3, allow_subnormal=False), min_size=12, max_size=12),
       st.lists(st.floats(-1e9, 2e9, allow_subnormal=False), min_size=1, max_size=20))
def test_curve_inside_gives_np_interp_to_the_bit(size, seconds, xs):
    """Between its first and last points a curve is evaluated on Python floats; it must give the very
    floats np.interp gives (the sim's numbers may not move), at the points themselves too."""
    size = sorted(size)
    c = Curve(tuple(size), tuple(seconds[: len(size)]))
    for x in [*xs, *size, *(a + (b - a) * f for a, b in zip(size, size[1:]) for f in (1e-9, 0.3, 0.5, 1 - 1e-9))]:
        if size[0] < x < size[-1]:
            assert c(x) == float(np.interp(x, size, seconds[: len(size)]))
        else:  # outside: the end segment's slope, never negative
            i, at = (0, 0) if x <= size[0] else (len(size) - 2, len(size) - 1)
            slope = (seconds[i + 1] - seconds[i]) / (size[i + 1] - size[i])
            assert c(x) == max(0.0, seconds[at] + slope * (x - size[at]))


def test_shipped_profile_round_trips():
    p = load_profile(PROFILE)
    assert p.provenance.startswith("paper-fitted")
    assert profile_from_dict(profile_to_dict(p)) == p


def test_an_edge_profile_with_request_and_reply_round_trips():
    d = profile_to_dict(load_profile(PROFILE))
    d["edge"].update(request={"size": [0.0, 1e5], "seconds": [0.001, 0.002]},
                     reply={"size": [0.0, 256.0], "seconds": [0.0003, 0.0003]})
    p = profile_from_dict(d)
    assert p.edge.optional("request", 5e4) == pytest.approx(0.0015) and p.edge.optional("reply", 256) == 0.0003
    assert profile_from_dict(profile_to_dict(p)) == p


@pytest.mark.parametrize("mutate,path", [
    (lambda d: d["local"].pop("decode"), "local.decode"),
    (lambda d: d["edge"].update(warp={"size": [0, 1], "seconds": [0, 1]}), "edge.warp"),
    (lambda d: d["meta"].update(schema_version=9), "meta.schema_version"),
    (lambda d: d["local"].update(encode={"size": [1, 0], "seconds": [0, 1]}), "local.encode"),
])
def test_bad_profiles(mutate, path):
    d = profile_to_dict(load_profile(PROFILE))
    mutate(d)
    with pytest.raises(ConfigError) as err:
        profile_from_dict(d)
    assert err.value.path == path


def test_trace_rejects_unknown_and_missing_columns(frame, tmp_path):
    with pytest.raises(TraceError, match="not in trace schema"):
        to_table(frame.assign(colour="red"), "synthetic:x:0")
    with pytest.raises(TraceError, match="missing required column 'answer'"):
        to_table(frame.drop(columns="answer"), "synthetic:x:0")
    with pytest.raises(TraceError, match="provenance"):
        to_table(frame, "made-up")


def test_trace_rejects_bad_rows(frame, tmp_path):
    bad = frame.copy()
    bad.loc[0, "answer"] = 7
    write_trace(bad, tmp_path / "a.parquet", "synthetic:x:0")
    with pytest.raises(TraceError, match="answer 7 outside"):
        read_trace(tmp_path / "a.parquet")
    bad = frame.copy()
    bad.at[1, "small_logits"] = [0.1]
    write_trace(bad, tmp_path / "b.parquet", "synthetic:x:0")
    with pytest.raises(TraceError, match="small_logits must hold"):
        read_trace(tmp_path / "b.parquet")


def test_trace_rejects_other_versions_and_non_parquet(frame, tmp_path):
    table = to_table(frame, "synthetic:x:0")
    meta = dict(table.schema.metadata)
    meta[META_VERSION] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v.parquet")
    with pytest.raises(TraceError, match="schema version 99"):
        read_trace(tmp_path / "v.parquet")
    (tmp_path / "junk.parquet").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(TraceError, match="not a readable Parquet"):
        read_trace(tmp_path / "junk.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(TraceError, match="no testbed schema version"):
        read_trace(tmp_path / "plain.parquet")


def test_recorded_stage_times_column_round_trips(frame, tmp_path):
    rec = frame.assign(recorded_s=[[("local.tokenize.fps.sequential", 0.5)]] * len(frame))
    write_trace(rec, tmp_path / "r.parquet", "live:host:small+large")
    wl = read_trace(tmp_path / "r.parquet")
    assert wl.records[0].recorded_s == {"local.tokenize.fps.sequential": 0.5}
    assert not wl.synthetic
