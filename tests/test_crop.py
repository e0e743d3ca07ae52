"""Seed 003's crop retransmission: the arithmetic on hand-made inputs (min-entropy, the relative-attention
box, clipping, the crop itself), the policies' effects under a scripted interpreter, the trace's
crop columns, and the sim on the calibrated synthetic workload against the issue's acceptance."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.crop import (CropError, as_grid, box_around, check_box, clip_box, crop_side, hd_frames, hd_grid,
                          max_probability, min_entropy, peak_box, random_box, relative_attention, unit_draw,
                          view_size)
from testbed.crop_image import crop, global_view, hd_tiles, jpeg, make_view
from testbed.errors import TraceError
from testbed.policies.base import PolicyContext, RunState
from testbed.policies.crop import CROP_PLAN, CropKnobs, CropPlan, entropy_crop, full_res, plan_crop, random_crop
from testbed.policies.driver import drive
from testbed.policies.effects import Crop, Inference, Infer, Offload, Payload, Tokenize
from testbed.query import ImageMeta, Query


# -- min-entropy ------------------------------------------------------------------------------------
def test_min_entropy_on_hand_made_logits():
    assert min_entropy(np.zeros(4)) == pytest.approx(math.log(4))  # uniform: log K
    # p = (e^2, 1, 1) / (e^2 + 2): H_min = -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2)
    assert min_entropy(np.array([2.0, 0.0, 0.0])) == pytest.approx(math.log(1 + 2 * math.exp(-2)))
    assert min_entropy(np.array([1000.0, 0.0])) == pytest.approx(0.0, abs=1e-12)  # stable for large logits
    assert max_probability(np.array([2.0, 0.0, 0.0])) == pytest.approx(math.exp(2) / (math.exp(2) + 2))
    with pytest.raises(CropError):
        min_entropy(np.array([np.nan, 1.0]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=8), st.floats(-100, 100))
def test_min_entropy_is_between_zero_and_log_k_and_shift_invariant(logits, shift):
    z = np.array(logits)
    h = min_entropy(z)
    assert -1e-12 <= h <= math.log(len(z)) + 1e-9
    assert min_entropy(z + shift) == pytest.approx(h, abs=1e-9)


# -- the relative-attention box ---------------------------------------------------------------------
def test_a_known_attention_peak_gives_a_known_box():
    asked = np.ones(16)
    asked[1 * 4 + 2] = 5.0  # row 1, column 2 of a 4 x 4 token grid
    grid = as_grid(relative_attention(asked, np.ones(16)))
    # the cell's centre on a 400 x 400 image: x = 2.5 * 100, y = 1.5 * 100; a 100 px box around it
    assert peak_box(grid, 400, 400, 100) == (200, 100, 300, 200)


def test_relative_attention_discounts_what_every_prompt_attends_to():
    asked = np.full(16, 1.0)
    asked[0], asked[9] = 20.0, 3.0  # token 0 is an attention sink: the generic prompt attends to it too
    generic = np.full(16, 1.0)
    generic[0] = 20.0
    rel = relative_attention(asked, generic)
    assert int(np.argmax(rel)) == 9 and int(np.argmax(asked)) == 0


def test_boxes_are_clipped_to_the_image():
    corner = np.zeros((4, 4))
    corner[0, 0] = 1.0  # centre (50, 50) on 400 x 400: a 150 px box is shifted inside, not cut
    assert peak_box(corner, 400, 400, 150) == (0, 0, 150, 150)
    far = np.zeros((4, 4))
    far[3, 3] = 1.0
    assert peak_box(far, 400, 300, 100) == (300, 200, 400, 300)
    assert box_around(10, 10, 500, 400, 300) == (0, 0, 400, 300)  # a box larger than the image: the image
    assert clip_box((-20, 50, 120, 400), 100, 300) == (0, 50, 100, 300)
    with pytest.raises(CropError, match="does not overlap"):
        clip_box((200, 0, 300, 10), 100, 100)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.floats(0.01, 1.0), st.integers(0, 10**6))
def test_random_and_peak_boxes_lie_inside_the_image(width, height, scale, seed):
    side = crop_side(width, height, scale)
    for box in (random_box(seed, "q", width, height, side),
                peak_box(np.random.default_rng(seed).random((3, 5)), width, height, side)):
        assert check_box(box, width, height) == box
        assert (box[2] - box[0], box[3] - box[1]) == (min(side, width), min(side, height))
    assert random_box(seed, "q", width, height, side) == random_box(seed, "q", width, height, side)
    assert 0 <= unit_draw(seed, "q", 0) < 1


def test_bad_boxes_are_one_line_errors():
    for box, what in (((0, 0, 0, 10), "empty crop"), ((5, 5, 5, 5), "empty crop"), ((-1, 0, 10, 10), "outside"),
                      ((0, 0, 101, 10), "outside"), ((0, 0, 1.5, 2), "four integers"), ((1, 2, 3), "four integers"),
                      ("box", "four integers")):
        with pytest.raises(CropError, match=what):
            check_box(box, 100, 100)


def test_hd_grid_and_view_size_by_hand():
    assert hd_grid(1024, 768) == (2, 2) and hd_frames(1024, 768) == 5  # 2 x 2 tiles of 336 + global
    assert hd_grid(300, 200) == (1, 1) and hd_frames(300, 200) == 2
    assert hd_grid(700, 300) == (2, 1)
    assert view_size(1024, 768, 336) == (336, 252) and view_size(200, 100, 336) == (200, 100)


# -- the crop on real pixels --------------------------------------------------------------------------
def _coords(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 whose pixel (y, x) holds (x % 256, y % 256, 7): a crop says where it came from."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x % 256, y % 256, np.full_like(x, 7)], axis=-1).astype(np.uint8)


def test_a_crop_is_the_boxs_pixels_at_full_detail():
    pixels = _coords(120, 200)
    out = crop(pixels, (30, 10, 90, 50))
    assert out.shape == (40, 60, 3)
    assert out[0, 0].tolist() == [30, 10, 7] and out[-1, -1].tolist() == [89, 49, 7]
    with pytest.raises(CropError, match="outside"):
        crop(pixels, (150, 0, 250, 10))
    with pytest.raises(CropError, match="empty"):
        crop(pixels, (10, 10, 10, 20))


def test_views_of_an_image_file(tmp_path):
    from PIL import Image

    path = tmp_path / "im.png"
    Image.fromarray(_coords(300, 800)).save(path)
    data, w, h = make_view(path, "global", side=100)
    assert (w, h) == (100, 38) and Image.open(io.BytesIO(data)).size == (100, 38)
    data, w, h = make_view(path, "crop", (100, 50, 164, 114))
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert (w, h) == (64, 64) and decoded.shape == (64, 64, 3)
    assert abs(int(decoded[32, 32, 0]) - 132) <= 3  # JPEG keeps the detail: x = 100 + 32
    assert make_view(path, "full")[0] == path.read_bytes()
    assert global_view(_coords(300, 800), 100).shape == (38, 100, 3)
    assert hd_tiles(_coords(300, 800), 400).shape == (1 + 2 * 1, 400, 400, 3)  # global + 2 columns x 1 row


def test_hd_tiles_cap_the_grid_at_two_by_two():
    tiles = hd_tiles(_coords(300, 800), 100)  # 8 x 3 tiles of 100 would cover it; LLaVA-1.5-HD stops at 2 x 2
    assert tiles.shape == (1 + 2 * 2, 100, 100, 3)
    assert tiles[1][0, 0, 0] <= 4 and tiles[1][0, 0, 1] <= 4  # the first tile starts at the corner (resampled)
    assert len(jpeg(_coords(10, 10))) > 0
    with pytest.raises(CropError):
        jpeg(np.zeros((0, 5, 3), np.uint8))


# -- the policies under a scripted interpreter ------------------------------------------------------------
IMAGE = ImageMeta(1000, 800, 250_000, "")
QUERY = Query("q1", "b", IMAGE, "what does the sign say?", ("a", "b", "c", "d"))
SURE = np.array([6.0, 0.0, 0.0, 0.0])  # H_min = log(1 + 3 e^-6) ~ 0.0074
UNSURE = np.array([0.3, 0.0, 0.0, 0.0])  # H_min ~ 1.16


def _ctx(**knobs) -> PolicyContext:
    plan = CropPlan(math.exp(-0.5), 0.5, float("nan"), "fixed", 0, 0)  # retransmit above H_min = 0.5
    state = RunState()
    CROP_PLAN.put(state, plan)
    return PolicyContext(CropKnobs(**knobs), state, 16)


def _script(policy, first: np.ndarray, roi=(100, 100, 420, 420)):
    """Drive `policy` with an edge that answers `first`, naming `roi` where asked to locate; return the
    effects it yielded and its answer."""
    seen = []

    def perform(e):
        seen.append(e)
        if isinstance(e, Crop):
            return Payload("image", {"global": 30_000, "crop": 12_000, "full": IMAGE.file_bytes}[e.view],
                           media=ImageMeta(10, 10, 1, "", e.view, e.box))
        assert isinstance(e, Offload)
        infer = e.steps[-1]
        if len(e.payloads) == 2:
            return Inference("large", np.array([0.0, 5.0, 0.0, 0.0]))
        loc = infer.locate
        located = loc is not None and min_entropy(first) > loc.above
        return Inference("large", first, roi=roi if located else None)

    gen = drive(policy(QUERY, _ctx()), perform)
    try:
        next(gen)
    except StopIteration as stop:
        return seen, stop.value
    raise AssertionError("scripted effects never yield")


def test_entropy_crop_retransmits_the_attention_crop_only_when_unsure():
    seen, answer = _script(entropy_crop, SURE)
    assert [type(e) for e in seen] == [Crop, Offload] and answer.choice == 0
    assert seen[0].view == "global" and seen[1].steps[-1].locate.above == pytest.approx(0.5)
    seen, answer = _script(entropy_crop, UNSURE)
    assert [type(e) for e in seen] == [Crop, Offload, Crop, Offload] and answer.choice == 1
    assert seen[2].view == "crop" and seen[2].box == (100, 100, 420, 420)
    second = seen[3]
    held, local = second.payloads
    assert held.held and held.media.view == "global" and not local.held and local.media.view == "crop"
    assert [type(s) for s in second.steps] == [Tokenize, Tokenize, Infer]  # both views, one Infer
    assert answer.score == pytest.approx(max_probability(UNSURE))


def test_a_box_from_a_faulty_edge_is_clipped_or_the_global_answer_stands():
    seen, _ = _script(entropy_crop, UNSURE, roi=(900, 700, 1300, 1100))
    assert seen[2].box == (900, 700, 1000, 800)  # clipped to the 1000 x 800 image
    seen, answer = _script(entropy_crop, UNSURE, roi=(2000, 0, 2100, 100))
    assert [type(e) for e in seen] == [Crop, Offload] and answer.fallback and answer.choice == 0


def test_views_locate_and_held_payloads_survive_the_wire():
    from testbed.policies.effects import Locate
    from testbed.policies.remote import RemoteError, digest, offload_from_request, offload_request

    g = Payload("image", 3, media=ImageMeta(336, 252, 3, "g.jpg", "global"), data=b"abc")
    c = Payload("image", 2, media=ImageMeta(40, 30, 2, "c.jpg", "crop", (10, 20, 50, 50), (1000, 800)), data=b"de")
    loc = Locate(0.25, 0.4, 1000, 800)
    steps = (Tokenize(g.media, _sampler(), False, "large"), Tokenize(c.media, _sampler(), False, "large"),
             Infer("large", None, 16, "q?", ("a", "b"), locate=loc))
    meta, frames = offload_request(Offload((replace(g, held=True), c), steps))
    assert frames[0] == b"" and meta["payloads"][0]["held"] == digest(b"abc")  # held: no bytes travel
    sizes = {b"abc": (336, 252), b"de": (40, 30)}
    off = offload_from_request(meta, frames, lambda i, kind, data: ImageMeta(*sizes[bytes(data)], len(data)),
                               held_for={digest(b"abc"): b"abc"}.get)
    got_g, got_c = off.payloads
    assert got_g.held and got_g.media.view == "global" and got_c.media.box == (10, 20, 50, 50)
    assert got_c.media.source_size == (1000, 800) and off.steps[-1].locate == loc
    # seed 001's grounding (a box per named category) travels too; an unknown reading is refused
    ground = Locate(0.0, 0.3, 1000, 800, "multi-label")
    meta, frames = offload_request(Offload((c,), (Tokenize(c.media, _sampler(), False, "large"),
                                                  Infer("large", None, 16, "q?", ("a", "b"), locate=ground))))
    off = offload_from_request(meta, frames, lambda i, kind, data: ImageMeta(40, 30, len(data)))
    assert off.steps[-1].locate == ground
    meta["steps"][-1]["locate"]["labels"] = "detection"
    with pytest.raises(RemoteError, match="labels must be multi-label or single-label"):
        offload_from_request(meta, frames, lambda i, kind, data: ImageMeta(40, 30, len(data)))


def _sampler():
    from testbed.tokenizer.sampling import DEFAULT_SAMPLER

    return DEFAULT_SAMPLER


def test_baselines_send_what_they_say():
    seen, _ = _script(full_res, UNSURE)
    assert [type(e) for e in seen] == [Crop, Offload] and seen[0].view == "full"
    seen, _ = _script(random_crop, UNSURE)  # the plan's share is 0.5: whether q1 retransmits is its draw
    again, _ = _script(random_crop, UNSURE)
    assert [(type(e), getattr(e, "box", None)) for e in seen] == [(type(e), getattr(e, "box", None)) for e in again]
    retransmits = unit_draw(0, "q1", 0) < 0.5
    assert len(seen) == (4 if retransmits else 2)
    if retransmits:
        side = crop_side(1000, 800, 0.4)
        assert seen[2].box == random_box(0, "q1", 1000, 800, side)
        assert seen[1].steps[-1].locate is None  # random-crop never asks the edge to locate


def test_a_crop_policy_refuses_a_video():
    from testbed.errors import TestbedError
    from testbed.query import VideoMeta

    video = Query("v", "b", VideoMeta(1.0, 1.0, 1, 10, 10, 10, (0,)), "q", ("a", "b"))
    with pytest.raises(TestbedError, match="image queries"):
        next(entropy_crop(video, _ctx()))


# -- the trace's crop columns and the plan -------------------------------------------------------------
def test_crop_outcomes_round_trip_through_the_trace_and_a_bad_box_is_an_error():
    from testbed.traces import table_to_workload, to_table
    from testbed.workload.synthetic_crop import TEXTVQA_LIKE, generate

    frame = generate(TEXTVQA_LIKE, 30, seed=3)
    wl = table_to_workload(to_table(frame, "synthetic:calibrated-seed003:3"))
    r, row = wl.records[4], frame.iloc[4]
    assert r.views is not None and r.views.box == tuple(row.view_box)
    assert np.allclose(r.views.crop_logits, row.view_crop_logits, atol=1e-5)
    assert r.views.global_bytes == row.view_global_bytes and r.query.media.file_bytes == row.file_bytes
    frame.at[4, "view_box"] = [900, 0, 1100, 200]  # past the 1024 px edge
    with pytest.raises(TraceError, match="view_box.*outside"):
        table_to_workload(to_table(frame, "synthetic:calibrated-seed003:3"))


def test_the_plan_retransmits_the_target_share_of_the_profiling_queries():
    from testbed.traces import table_to_workload, to_table
    from testbed.workload.synthetic_crop import TEXTVQA_LIKE, generate

    wl = table_to_workload(to_table(generate(TEXTVQA_LIKE, 400, seed=1), "synthetic:calibrated-seed003:1"))
    prof = wl.split("profile")
    plan = plan_crop(CropKnobs(target_retransmit_share=0.25), prof, seed=1)
    unsure = [min_entropy(r.views.global_logits) > plan.h_min_above for r in prof]
    assert plan.share == pytest.approx(np.mean(unsure)) and abs(plan.share - 0.25) <= 1.0 / len(prof)
    fixed = plan_crop(CropKnobs(h_min_threshold=0.7), prof, seed=1)
    assert fixed.h_min_above == pytest.approx(0.7) and fixed.target == "fixed"
