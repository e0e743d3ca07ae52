"""edgeVLM's keyframe schedule (seed 001 Sec. 3.4) against a brute-force copy, hand-worked streams
and the bounds that decide how close any latency can bring it to Table 1; `testbed table1-reach`."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.streams.paper import TABLE1
from testbed.streams.synthetic import edgevlm_schedule
from testbed.streams.table1 import search, table1, whole_frames

latencies = st.lists(st.one_of(st.floats(0.0, 12.0), st.integers(0, 12).map(float)), min_size=1, max_size=40)
"""Seconds; whole ones too, so that answers landing exactly on a frame's capture are tried."""
k_calls = st.integers(0, 9)


def brute_force(latency: list[float], fps: float, k_call: int, k_delay: int, max_lag: int,
                freshness: str) -> tuple[np.ndarray, np.ndarray]:
    """The rule read off the paper, with every set recomputed from scratch each frame."""
    n = len(latency)
    up = np.zeros(n, dtype=bool)
    lag = np.zeros(n, dtype=np.int64)
    arrive = np.full(n, np.inf)
    for t in range(n):
        back = [j for j in range(t) if up[j] and arrive[j] <= t / fps]
        pending = sum(1 for j in range(t) if up[j] and arrive[j] > t / fps)
        newest = max(back, default=-1)
        calls = [j for j in range(t) if up[j]]
        ref = newest if freshness == "reply" else max(calls, default=-1)
        if newest >= 0 and t - newest <= max_lag:
            lag[t] = t - newest
        if freshness == "spacing":  # the fewest frames between two calls
            fresh = bool(calls) and t - max(calls) < k_call
        else:
            fresh = ref >= 0 and t - ref <= k_call
        if not fresh and pending < k_delay:
            up[t] = True
            arrive[t] = t / fps + latency[t]
    return up, lag


@settings(max_examples=200, deadline=None)
@given(latencies, st.sampled_from([1.0, 2.0]), k_calls, st.integers(1, 5), st.integers(1, 12),
       st.sampled_from(["call", "reply", "spacing"]))
def test_the_schedule_equals_a_brute_force_reading_of_the_rule(lat, fps, k_call, k_delay, max_lag, freshness):
    got = edgevlm_schedule(np.array(lat), fps, k_call, k_delay, max_lag, freshness)
    want = brute_force(lat, fps, k_call, k_delay, max_lag, freshness)
    assert (got[0] == want[0]).all() and (got[1] == want[1]).all()


@settings(max_examples=200, deadline=None)
@given(latencies, k_calls)
def test_counting_from_the_call_uploads_at_most_one_frame_in_k_call_plus_one_whatever_the_latency(lat, k_call):
    """So at K_call = 1 a 20-frame stream's LCR is at most 50%: Table 1's 69.1% is out of this reading's reach."""
    up, _ = edgevlm_schedule(np.array(lat), 1.0, k_call, 4, 10, "call")
    assert up.sum() <= math.ceil(len(lat) / (k_call + 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 0.999), min_size=1, max_size=40), k_calls)
def test_when_every_answer_is_back_within_a_frame_both_readings_schedule_alike(lat, k_call):
    """So the reply reading can only exceed the call reading's LCR through answers later than a frame."""
    call = edgevlm_schedule(np.array(lat), 1.0, k_call, 4, 10, "call")
    reply = edgevlm_schedule(np.array(lat), 1.0, k_call, 4, 10, "reply")
    assert (call[0] == reply[0]).all() and (call[1] == reply[1]).all()


@settings(max_examples=200, deadline=None)
@given(latencies, st.sampled_from([1.0, 2.0]), st.integers(1, 9), st.integers(1, 5))
def test_the_spacing_reading_is_the_call_reading_with_k_call_moved_down_by_one(lat, fps, k_call, k_delay):
    spacing = edgevlm_schedule(np.array(lat), fps, k_call, k_delay, 10, "spacing")
    call = edgevlm_schedule(np.array(lat), fps, k_call - 1, k_delay, 10, "call")
    assert (spacing[0] == call[0]).all() and (spacing[1] == call[1]).all()


def test_the_spacing_reading_at_k_call_1_never_skips_a_frame_on_k_call():
    """Hand-worked: answers back within a frame, so K_delay never binds: every frame is uploaded (LCR 100%),
    and each frame after the first uses the previous one's answer (lag 1)."""
    up, lag = edgevlm_schedule(np.full(20, 0.5), 1.0, 1, 4, 10, "spacing")
    assert up.all() and lag.tolist() == [0] + [1] * 19
    assert table1(np.full((1, 20), 0.5), np.array([20]), "spacing").set_index("k_call").loc[1, "lcr"] == 100.0


def test_prompt_answers_give_lcr_and_lhl_worked_by_hand():
    """20 frames, answers back in 0.1 s, K_call 3: uploads at 0, 4, 8, 12, 16 (25%); frames 1-19 use
    history 1, 2, 3, 4 frames old in turn, the last three 1, 2, 3: LHL (4 * 10 + 6) / 19 s."""
    got = table1(np.full((1, 20), 0.1), np.array([20]), "reply").set_index("k_call")
    assert got.loc[3, "lcr"] == 25.0
    assert math.isclose(got.loc[3, "lhl_s"], 46 / 19)
    assert got.loc[1, "lcr"] == 50.0  # K_call 1: every other frame
    assert sorted(got.index) == sorted(TABLE1)


def test_table1_reach_writes_every_process_and_names_the_closest(tmp_path):
    out = tmp_path / "reach.csv"
    r = subprocess.run([sys.executable, "-m", "testbed.cli", "table1-reach", "--streams", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    scan = pd.read_csv(out)
    assert set(scan.freshness) == {"call", "reply", "spacing"} and set(scan.lengths) == {"20 s", "18-22 s"}
    assert (scan["max_err_%"] >= scan[["max_lcr_err_%", "max_lhl_err_%"]].max(axis=1) - 1e-9).all()
    assert scan["max_err_%"].is_monotonic_increasing
    assert "smallest max_err_%" in r.stdout


@settings(max_examples=200, deadline=None)
@given(latencies, st.sampled_from([1.0, 2.0]), k_calls, st.sampled_from(["call", "reply", "spacing"]))
def test_the_rule_sees_a_latency_only_as_the_whole_frames_it_spans(lat, fps, k_call, freshness):
    """Why searching distributions over whole-frame delays covers every i.i.d. latency process."""
    got = edgevlm_schedule(np.array(lat), fps, k_call, 4, 10, freshness)
    same = edgevlm_schedule(whole_frames(np.array(lat), fps), fps, k_call, 4, 10, freshness)
    assert (got[0] == same[0]).all() and (got[1] == same[1]).all()


def test_search_reports_the_worst_error_of_the_process_it_found():
    r = search(mixture=True, streams=8, max_iter=1)
    assert r["max_err_%"] == pytest.approx(max(map(abs, r["lcr_errs_%"] + r["lhl_errs_%"])), abs=0.051)
    assert r["family"] == "mixture of two" and "of streams" in str(r["latency"])
