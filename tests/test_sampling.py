"""Samplers and the decode-cost model against hand-computed cases."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from testbed.tokenizer.sampling import (KEYFRAME_SAMPLER, Sampler, decode_work, fps_indices, gop_keyframes,
                                        keyframe_aligned_indices, pipeline_makespan, uniform_indices)


def test_uniform_indices_are_segment_centres():
    assert uniform_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert uniform_indices(3, 8).tolist() == [0, 1, 2]


def test_fps_sampler_clamps_to_videochat_flash_limits():
    # 10 s at 30 fps -> 10 frames at 1 FPS, clamped up to 64
    assert len(fps_indices(300, 30.0, 1.0, 64, 512)) == 64
    # 100 s -> 100 frames, 1 every 30
    idx = fps_indices(3000, 30.0, 1.0, 64, 512)
    assert len(idx) == 100 and idx[0] == 15 and np.all(np.diff(idx) == 30)
    # 1 h -> capped at 512
    assert len(fps_indices(108000, 30.0, 1.0, 64, 512)) == 512


def test_keyframe_aligned_short_video_takes_every_frame():
    assert keyframe_aligned_indices(50, 30.0, np.array([0]), KEYFRAME_SAMPLER).tolist() == list(range(50))


def test_keyframe_aligned_uses_keyframes_when_enough():
    keys = gop_keyframes(18000, 150)  # 10 min at 30 fps, GOP 150: 120 keyframes
    assert keyframe_aligned_indices(18000, 30.0, keys).tolist() == keys.tolist()


def test_keyframe_aligned_subsamples_too_many_keyframes():
    keys = gop_keyframes(30 * 3600, 30)  # 1 h, one keyframe per second: 3600 keyframes
    got = keyframe_aligned_indices(len(keys) * 30, 30.0, keys)
    assert len(got) == 512
    assert set(got.tolist()) <= set(keys.tolist())
    assert got.tolist() == keys[uniform_indices(3600, 512)].tolist()


def test_keyframe_aligned_falls_back_to_fixed_rate_with_few_keyframes():
    keys = gop_keyframes(3600, 150)  # 2 min, 24 keyframes < N_min
    assert keyframe_aligned_indices(3600, 30.0, keys).tolist() == fps_indices(3600, 30.0, 1.0, 64, 512).tolist()


def test_decode_work_hand_example():
    keys = np.array([0, 10, 20])
    # 5: seek to 0, decode 0..5 (6); 8: continue 6..8 (3); 12: seek to 10, decode 10..12 (3); 20: seek, 1
    w = decode_work(np.array([5, 8, 12, 20]), keys)
    assert (w.sampled, w.decoded, w.seeks) == (4, 13, 3)
    # keyframes only: one frame per sample
    assert decode_work(keys, keys).decoded == 3


def test_fixed_rate_decodes_nearly_every_frame_keyframes_only_their_own():
    keys = gop_keyframes(18000, 150)
    fps = fps_indices(18000, 30.0, 1.0, 64, 512)
    # independent count: in each GOP the decoder runs from the keyframe to the GOP's last sample
    expected = sum(int(fps[(fps >= k) & (fps < k + 150)].max()) - k + 1 for k in keys
                   if ((fps >= k) & (fps < k + 150)).any())
    work = decode_work(fps, keys)
    assert work.decoded == expected and work.decoded > 0.85 * 18000
    assert work.seeks == 120
    assert decode_work(keys, keys).decoded == 120


def test_pipeline_makespan_formula():
    assert pipeline_makespan((1.0, 2.0, 3.0), 1) == pytest.approx(6.0)
    # 3 chunks of stages (1/3, 2/3, 1): (6 + 2*3)/3 = 4 = last stage total + fill of the others
    assert pipeline_makespan((1.0, 2.0, 3.0), 3) == pytest.approx(4.0)
    assert pipeline_makespan((1.0, 2.0, 3.0), 10**6) == pytest.approx(3.0, rel=1e-5)


@given(st.lists(st.floats(0, 10), min_size=1, max_size=4), st.integers(1, 100))
def test_pipeline_between_slowest_stage_and_sum(stages, chunks):
    m = pipeline_makespan(stages, chunks)
    assert max(stages) - 1e-9 <= m <= sum(stages) + 1e-9


def test_sampler_rejects_bad_kind():
    with pytest.raises(ValueError):
        Sampler("everything")  # type: ignore[arg-type]


def _decode_work_loop(idx, keys):
    """Reference: step the decoder target by target."""
    keys = list(keys) if len(keys) and keys[0] == 0 else [0, *keys]
    decoded = seeks = 0
    pos = -1
    for target in idx:
        key = max(k for k in keys if k <= target)
        if key <= pos < target:
            decoded += target - pos
        elif pos == target:
            continue
        else:
            decoded += target - key + 1
            seeks += 1
        pos = target
    return decoded, seeks


@given(st.lists(st.integers(0, 500), max_size=60), st.lists(st.integers(0, 500), max_size=20, unique=True))
def test_decode_work_equals_stepping_the_decoder(targets, keys):
    keys = sorted(keys)
    w = decode_work(np.array(targets, dtype=np.int64), np.array(keys, dtype=np.int64))
    assert (w.decoded, w.seeks) == _decode_work_loop(targets, keys) and w.sampled == len(targets)
