"""The pocket pair: trained easy-VQA heads over EfficientNet-Lite0 tokens. Option logits are the
named answers' logits; a repeated frame is the same as one frame with log-count weight; composed
videos need their one scene; training is deterministic; the committed weights load, meet the
card's acceptance figures, and a missing or corrupt file is one line saying how to rebuild; the
workloads read as manifests and run in process with real answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from testbed.cli.main import main
from testbed.models.pocket import (BIGRAM_BUCKETS, DEFAULT_DIR, LARGE, REBUILD, SMALL, VOCAB, HeadConfig, PocketHead,
                                   PocketVLM, PocketWeightsError, load_head, load_pocket_models, save_head, word_ids)
from testbed.models.pocket_data import ANSWERS, COLORS, SHAPES, Split, image_labels, options_for
from testbed.models.pocket_train import (VIDEO_TEMPLATES, TrainConfig, build_data, build_mosaics, compose_video,
                                         fit_pca, merged_features, mosaic_question, train_head)

TINY = HeadConfig("attn", 16, 8, 2)


def _head(cfg: HeadConfig = SMALL, seed: int = 0) -> PocketHead:
    torch.manual_seed(seed)
    head = PocketHead(cfg)
    rng = np.random.default_rng(seed)
    head.set_pca(rng.normal(size=1280).astype(np.float32), rng.normal(size=(1280, 256)).astype(np.float32) / 30)
    return head.eval()


def test_words_and_word_pairs_of_a_question():
    ids, pairs = word_ids("What is the color of the circle? (video)")
    expected = [VOCAB.index(w) for w in ("what", "is", "the", "color", "of", "the", "circle", "video")]
    assert ids == expected
    assert pairs == [(a * len(VOCAB) + b) % BIGRAM_BUCKETS for a, b in zip(expected, expected[1:])]
    assert word_ids("zebra!")[0] == [0]  # unknown words are <unk>


@pytest.mark.parametrize("cfg", [SMALL, TINY])
def test_option_logits_are_the_named_answers_logits(cfg):
    model = PocketVLM(_head(cfg))
    vision = torch.randn(3, 8, 1280, generator=torch.Generator().manual_seed(1))
    answers = model.answer_logits(vision, "what is the color of the circle?").double().numpy()
    got = model.option_logits(vision, "what is the color of the circle?", ("Teal", "red", "a zebra"))
    np.testing.assert_allclose(got[:2], [answers[ANSWERS.index("teal")], answers[ANSWERS.index("red")]])
    assert got[2] == pytest.approx(answers.mean())  # no answer named: no opinion
    assert model.text_tokens("what is the color of the circle?", ("red", "teal")) == 7


@pytest.mark.parametrize("cfg", [SMALL, TINY])
def test_a_repeated_frame_counts_as_its_log_multiplicity(cfg):
    """Frames are pooled by a softmax over their relevance, so a frame shown k times weighs as one
    frame with bias log k: training computes identical frames once."""
    head = _head(cfg)
    gen = torch.Generator().manual_seed(2)
    frames = torch.randn(3, 4, 1280, generator=gen)
    repeated = torch.cat([frames[:1], frames[1:2].expand(3, -1, -1), frames[2:]])  # frame 1 three times
    words, pairs = word_ids("is there a red shape in the video?")
    from testbed.models.pocket import pad_ids

    text = (*pad_ids([words]), *pad_ids([pairs]))
    def inputs(x):
        return (head.project(x)[None] if head.reads_tokens else None), x.mean(1)[None]

    with torch.no_grad():
        once = head(*inputs(frames), torch.tensor([[0.0, math.log(3), 0.0]]), *text)
        many = head(*inputs(repeated), torch.zeros(1, 5), *text)
    torch.testing.assert_close(once, many, rtol=1e-5, atol=1e-5)


def test_image_labels_are_read_off_the_questions():
    split = Split("hand", ("what is the red shape?", "what color is the shape?", "what shape is present?",
                           "is there not a blue shape?", "does the image contain a triangle?"),
                  ("circle", "teal", "rectangle", "no", "yes"), np.array([0, 1, 1, 2, 2]), ())
    split = Split(split.name, split.questions, split.answers, split.image_ids, tuple([None] * 3))  # type: ignore
    shape, color = image_labels(split)
    assert shape.tolist() == [SHAPES.index("circle"), SHAPES.index("rectangle"), SHAPES.index("triangle")]
    assert color.tolist() == [COLORS.index("red"), COLORS.index("teal"), COLORS.index("blue")]


@pytest.mark.parametrize("kind", list(VIDEO_TEMPLATES))
def test_a_composed_video_needs_its_one_scene(kind):
    rng = np.random.default_rng(0)
    shape = rng.integers(0, 3, 200)
    color = rng.integers(0, 8, 200)
    pool = np.arange(200)
    for _ in range(20):
        v = compose_video(rng, shape, color, pool, 12, kind)
        assert len(v.scenes) == 12
        attr = shape if kind in ("color_of_shape", "has_shape") else color
        values = SHAPES if kind in ("color_of_shape", "has_shape") else COLORS
        named = [w for w in values if w in v.question.split() or f"{w}?" in v.question.split()]
        assert len(named) == 1
        having = [i for i, s in enumerate(v.scenes) if values[attr[s]] == named[0]]
        assert having == ([v.target] if v.target >= 0 else [])
        if kind == "color_of_shape":
            assert v.answer == COLORS[color[v.scenes[v.target]]]
        elif kind == "shape_of_color":
            assert v.answer == SHAPES[shape[v.scenes[v.target]]]
        else:
            assert v.answer == ("yes" if having else "no")
        assert v.answer in options_for(v.answer)


def test_a_mosaic_question_is_answered_by_its_parts():
    rng = np.random.default_rng(1)
    shapes, colors = np.array([0, 1, 1, 2]), np.array([0, 0, 3, 5])  # one circle; red twice
    seen = set()
    for _ in range(200):
        q, a = mosaic_question(rng, shapes, colors)
        seen.add(q)
        if q.startswith("what is the color of the "):  # circle and triangle are unique, rectangle is not
            assert (q, a) in {("what is the color of the circle?", "red"),
                              ("what is the color of the triangle?", "black")}
        elif q == "what is the red shape?":
            raise AssertionError("red is not unique: no question may name it")
        elif q.startswith("what is the "):
            assert (q, a) in {("what is the gray shape?", "rectangle"), ("what is the black shape?", "triangle")}
        elif q.startswith("does the image contain a "):
            assert a == "yes"  # every shape is present
        else:
            assert a == ("yes" if any(f" {COLORS[c]} " in q for c in colors) else "no")
    assert "what is the color of the circle?" in seen and "what is the gray shape?" in seen


def _random_data(seed: int = 0, n: int = 24):
    """Random 'features' for n images with one question each: enough to exercise training."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 49, 1280)).astype(np.float16)
    shape, color = rng.integers(0, 3, n), rng.integers(0, 8, n)
    questions = tuple(f"what is the color of the {SHAPES[s]}?" for s in shape)
    split = Split("rand", questions, tuple(COLORS[c] for c in color), np.arange(n), tuple([None] * n))  # type: ignore
    pca = fit_pca(feats, sample=500)
    merged = merged_features(feats)
    sets = np.arange(n).reshape(-1, 4)
    return (build_data(split, merged, *pca, shape, color), pca,
            build_mosaics(sets, {a: m[: len(sets)] for a, m in merged.items()}, *pca, shape, color))


def test_training_twice_with_the_same_seed_gives_the_same_weights():
    data, pca, mosaics = _random_data()
    q, pool = np.arange(24), np.arange(24)
    tc = TrainConfig(seed=3, steps=4, image_batch=8, video_batch=2, mosaic_batch=4)
    for side, cfg in (("small", SMALL), ("large", TINY)):
        a = train_head(side, cfg, data, q, pool, tc, pca, mosaics).state_dict()
        b = train_head(side, cfg, data, q, pool, tc, pca, mosaics).state_dict()
        c = train_head(side, cfg, data, q, pool, TrainConfig(seed=4, steps=4, image_batch=8, video_batch=2,
                                                             mosaic_batch=4), pca, mosaics).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)


def test_saved_heads_round_trip(tmp_path):
    head = _head(TINY)
    save_head(head, tmp_path / "h.safetensors", {"seed": 1})
    back = load_head(tmp_path / "h.safetensors")
    assert back.cfg == TINY
    for k, v in head.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])


def test_missing_or_corrupt_weights_say_how_to_rebuild(tmp_path, capsys):
    with pytest.raises(PocketWeightsError, match="missing; rebuild them with `make pocket`"):
        load_pocket_models(tmp_path)
    save_head(_head(SMALL), tmp_path / "small.safetensors", {})
    (tmp_path / "large.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(PocketWeightsError, match="unreadable") as err:
        load_pocket_models(tmp_path)
    assert "\n" not in str(err.value) and REBUILD in str(err.value)
    assert main(["pocket-eval", "--limit", "1", "--weights", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("testbed: error: pocket weights") and "make pocket" in line and "\n" not in line


def test_the_committed_weights_meet_the_cards_figures():
    card = json.loads((DEFAULT_DIR / "card.json").read_text())
    for key in ("small_accuracy", "large_accuracy", "small_ece_before", "small_ece_after"):
        assert 0.0 <= card[key] <= 1.0
    assert {"data", "seed", "date"} <= set(card)
    assert card["small_accuracy"] >= 0.70
    assert card["large_accuracy"] >= card["small_accuracy"] + 0.05
    assert card["small_ece_after"] < card["small_ece_before"]
    total = 0
    import hashlib

    for name, info in card["weights"].items():
        data = (DEFAULT_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], f"{name} does not match card.json"
        total += len(data)
    assert total <= 20 * 2**20
    models = load_pocket_models()
    assert models["small"].head.cfg == SMALL and models["large"].head.cfg == LARGE


def test_the_video_workload_has_one_gop_per_scene_and_reads_as_a_manifest(tmp_path):
    from testbed.live.pocket_videos import VIDEO_SCENARIO, video_workload
    from testbed.scenario import load_scenario
    from testbed.tokenizer.sampling import gop_keyframes
    from testbed.workload.manifest import read_manifest

    manifest = video_workload(tmp_path, clips=4, scenes=5, scene_frames=3, fps=6, seed=1)
    wl = read_manifest(manifest)
    assert [r.split for r in wl.records] == ["profile", "test", "test", "test"]
    for rec in wl.records:
        meta = rec.query.media
        assert meta.n_frames == 15
        np.testing.assert_array_equal(meta.keyframe_array, gop_keyframes(15, 3))
        assert rec.query.options[rec.answer] in ANSWERS and "video" in rec.query.question
    sc = load_scenario(str(tmp_path / VIDEO_SCENARIO))
    assert sc.models.preset == "pocket" and sc.workload.kind == "manifest"
    # the same seed makes the same queries
    again = [json.loads(x) for x in video_workload(tmp_path / "again", clips=4, scenes=5, scene_frames=3, fps=6,
                                                   seed=1).read_text().splitlines()]
    assert again == [json.loads(x) for x in manifest.read_text().splitlines()]


def test_the_image_workload_is_the_test_split(tmp_path):
    from testbed.live.pocket_videos import image_workload
    from testbed.models.pocket_data import load_split
    from testbed.workload.manifest import read_manifest

    manifest = image_workload(tmp_path)
    lines = manifest.read_text().splitlines()
    split = load_split("test")
    assert len(lines) == len(split)
    first = json.loads(lines[0])
    assert first["question"] == split.questions[0] and first["options"][first["answer"]] == split.answers[0]
    (tmp_path / "head.jsonl").write_text("\n".join(lines[:30]) + "\n")
    wl = read_manifest(tmp_path / "head.jsonl")
    assert wl.records[0].query.media.width == 64


def test_pocket_pair_answers_through_a_real_run(tmp_path):
    """Every effect for real with the committed heads: a few clips, the baseline and QuickGrasp."""
    import pandas as pd

    from testbed.live.pocket_videos import video_workload

    video_workload(tmp_path, clips=3, scenes=4, scene_frames=2, fps=4, seed=2, profile_share=0.0)
    (tmp_path / "run.toml").write_text('[workload]\nkind = "manifest"\npath = "pocket-video.jsonl"\n'
                                       '[models]\npreset = "pocket"\n[policies]\n'
                                       'run = ["device-native", "quickgrasp-fixed4"]\n'
                                       '[policies.quickgrasp-fixed4]\ntau_route = 1.0\n')
    assert main(["live", str(tmp_path / "run.toml"), "--inproc", "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "run").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    assert len(q) == 6 and set(q.served_by[q.policy == "quickgrasp-fixed4"]) == {"edge"}
    assert "models pocket" in (run / "summary.md").read_text()


def test_train_pocket_twice_on_a_subset_writes_the_same_weights(tmp_path, monkeypatch, capsys):
    """The whole command on 12 images per split (features cached in a temporary cache); another
    seed's weights differ (test_training_twice_with_the_same_seed_gives_the_same_weights)."""
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    args = ["--limit-images", "12", "--steps-small", "3", "--steps-large", "3", "--video-eval", "0",
            "--mosaics", "6", "4"]
    assert main(["train-pocket", "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["train-pocket", "--out", str(tmp_path / "b"), *args]) == 0
    for name in ("small.safetensors", "large.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["seed"] == 0 and card["data"]["train_images"] == 12
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["small_accuracy"] == card["small_accuracy"]


def test_pocket_eval_prints_one_json_line(capsys):
    assert main(["pocket-eval", "--limit", "40"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    out = json.loads(line)
    assert out["questions"] == 40 and out["density"] == 16
    assert out["large_accuracy"] >= 0.8 and out["small_accuracy"] >= 0.5  # ~0.98 and ~0.83 on the full split


def test_a_real_run_without_the_weights_is_one_line(tmp_path, monkeypatch, capsys):
    import testbed.models.pocket as pocket
    from testbed.live.pocket_videos import video_workload

    video_workload(tmp_path, clips=1, scenes=2, scene_frames=2, fps=4)
    monkeypatch.setattr(pocket, "DEFAULT_DIR", tmp_path / "gone")
    assert main(["live", str(tmp_path / "pocket-video.toml"), "--inproc", "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "small.safetensors are missing; rebuild them with `make pocket`" in err
