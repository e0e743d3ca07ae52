"""Real VLM families from their own checkpoint folders: tiny random-init Qwen2.5-VL, Qwen2-VL,
LLaVA-OneVision and SmolVLM folders written with `testbed models tiny`, loaded as a user's would be,
run through the stages the testbed times, live in process and recorded for the sim."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from testbed.cli.main import main
from testbed.live.real import to_density
from testbed.errors import ConfigError
from testbed.models.checkpoint import PairSpec, family_of, parse_pair, read_config
from testbed.models.checkpoint_vlm import load_checkpoint, token_grid
from testbed.models.pair import make_pair
from testbed.models.tiny_checkpoint import write_tiny
from tests.videos import encode

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "llava_onevision", "smolvlm")
QUESTION, OPTIONS = "What moves in the clip?", ("a ball", "a car", "nothing")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Both roles of every family, written once."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {(f, role): write_tiny(f, root / f / role, role) for f in FAMILIES for role in ("small", "large")}


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (3, 90, 160, 3), dtype=np.uint8)


def _manifest(d, seconds, profiling=1):
    clips = [encode(d / f"c{i}.mp4", s, fps=25, size="160x90", gop=25) for i, s in enumerate(seconds)]
    path = d / "ck.jsonl"
    path.write_text("".join(json.dumps({"query_id": f"c{i}", "video": c.name, "question": f"Which clip is {i}?",
                                        "options": ["a", "b", "c"], "answer": i % 3,
                                        "split": "profile" if i < profiling else "test"}) + "\n"
                            for i, c in enumerate(clips)))
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """One profiling query and three test queries."""
    return _manifest(tmp_path_factory.mktemp("ckmedia"), [3, 4, 3, 5])


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory):
    """A tiny LLaVA-1.5-style checkpoint (model_type llava): no adapter of its own, so the generic path."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from testbed.models.tiny_checkpoint import _ids, _text, build_tokenizer

    out = tmp_path_factory.mktemp("llava")
    tok = build_tokenizer("llava_onevision")  # <image> and a chat template
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=32, patch_size=4, projection_dim=32)
    cfg = LlavaConfig(text_config=dict(model_type="llama", **_text(tok, "small")), vision_config=vision,
                      image_token_index=_ids(tok, "<image>")[0], vision_feature_layer=-2,
                      vision_feature_select_strategy="default")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlavaForConditionalGeneration(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def test_another_image_text_family_runs_through_the_generic_path(llava_folder, frames):
    ck = load_checkpoint(llava_folder)
    assert ck.family == "generic" and not ck.random_init
    tokens = ck.encoder.encode(ck.encoder.preprocess(frames))
    assert tokens.shape == (3, 64, 64)  # CLIP's 8 x 8 patches without CLS, projected to the LM's width 64
    seen = []
    hook = ck.vlm.model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["inputs_embeds"].shape[1]),
                                                  with_kwargs=True)
    try:
        logits = [ck.vlm.option_logits(to_density(tokens, a), QUESTION, OPTIONS) for a in (8, 16, 16)]
    finally:
        hook.remove()
    assert logits[0].shape == (3,) and logits[1].tolist() == logits[2].tolist()
    assert seen[1] - seen[0] == 3 * 8


def test_the_family_comes_from_model_type(tmp_path):
    assert family_of({"model_type": "idefics3"}, tmp_path) == family_of({"model_type": "smolvlm"}, tmp_path) == \
        "smolvlm"
    assert family_of({"model_type": "qwen2_5_vl"}, tmp_path) == "qwen2_5_vl"
    assert family_of({"model_type": "llava"}, tmp_path) == "generic"  # another image-text-to-text type
    with pytest.raises(ConfigError, match="unknown model_type 'resnet'"):
        family_of({"model_type": "resnet"}, tmp_path)
    with pytest.raises(ConfigError, match="no config.json"):
        read_config(tmp_path)


@given(st.lists(st.text(st.characters(blacklist_characters=",=", blacklist_categories=("Cs", "Zs", "Cc")),
                        min_size=1, max_size=12), min_size=2, max_size=2),
       st.sampled_from(["small", "own"]), st.booleans())
def test_a_pair_spec_round_trips_through_its_text(paths, encoder, trust):
    spec = PairSpec(paths[0], paths[1], encoder, trust)
    assert parse_pair(spec.text()) == spec


@pytest.mark.parametrize("text, message", [("small=a", "missing large="), ("small=a,large=b,colour=red", "unknown key"),
                                           ("small=a,large=b,large_encoder=mine", "large_encoder"),
                                           ("small=a,,large=b", "not KEY=VALUE")])
def test_a_bad_pair_spec_names_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_pair(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_folder_loads_and_gives_deterministic_option_logits(family, folders, frames):
    ck = load_checkpoint(folders[family, "small"])
    assert ck.family == family and ck.random_init
    tokens = ck.encoder.encode(ck.encoder.preprocess(frames))
    a = ck.encoder.tokens_per_frame
    assert tokens.shape == (3, a, ck.encoder.dim) and a >= 32  # every density up to 32
    logits = ck.vlm.option_logits(to_density(tokens, 16), QUESTION, OPTIONS)
    assert logits.shape == (3,) and logits.dtype == np.float64 and np.isfinite(logits).all()
    again = load_checkpoint(folders[family, "small"])  # a fresh load of the same folder
    np.testing.assert_allclose(again.vlm.option_logits(to_density(tokens, 16), QUESTION, OPTIONS), logits,
                               rtol=1e-5, atol=1e-6)
    assert ck.vlm.option_logits(to_density(tokens, 16), QUESTION, OPTIONS).tolist() == logits.tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_sharing_gives_the_large_side_the_tokens_of_its_own_encoder(family, folders, frames):
    pair = make_pair(f"small={folders[family, 'small']},large={folders[family, 'large']}")
    assert pair.sharing_gap() is None and pair.random_weights
    small_enc, large_enc, large = pair.encoders["small"], pair.encoders["large"], pair.models["large"]
    shared = small_enc.encode(small_enc.preprocess(frames))
    own = large_enc.encode(large_enc.preprocess(frames))
    assert torch.equal(shared, own)
    np.testing.assert_array_equal(large.option_logits(to_density(shared, 8), QUESTION, OPTIONS),
                                  large.option_logits(to_density(own, 8), QUESTION, OPTIONS))


@pytest.mark.parametrize("family", FAMILIES)
def test_merging_to_a_density_changes_the_vision_tokens_the_lm_receives(family, folders, frames):
    ck = load_checkpoint(folders[family, "small"])
    tokens = ck.encoder.encode(ck.encoder.preprocess(frames))
    seen = []
    hook = ck.vlm.model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["inputs_embeds"].shape[1]),
                                                  with_kwargs=True)
    try:
        for a in (4, 16, 32):
            ck.vlm.option_logits(to_density(tokens, a), QUESTION, OPTIONS)
    finally:
        hook.remove()
    assert seen[1] - seen[0] == 3 * (16 - 4) and seen[2] - seen[1] == 3 * (32 - 16)  # 3 frames


@pytest.mark.parametrize("family", FAMILIES)
def test_the_attention_map_covers_the_first_frames_tokens(family, folders, frames):
    ck = load_checkpoint(folders[family, "small"])
    tokens = to_density(ck.encoder.encode(ck.encoder.preprocess(frames[:1])), 16)
    att = ck.vlm.image_attention(tokens, QUESTION, OPTIONS)
    assert att.shape == (16,) and (att >= 0).all() and 0 < att.sum() <= 1.0 + 1e-6
    assert ck.vlm.roi_map(tokens, QUESTION, OPTIONS).shape == (16,)
    assert ck.vlm.model.config._attn_implementation == "sdpa"  # eager only while the map is read


def test_qwen_positions_are_qwens_own_for_an_unmerged_image(folders, frames):
    """The M-RoPE ids the adapter builds equal transformers' get_rope_index on the same sequence."""
    ck = load_checkpoint(folders["qwen2_5_vl", "small"])
    tokens = ck.encoder.encode(ck.encoder.preprocess(frames[:1]))
    _, positions, _ = ck.vlm.assemble(tokens, QUESTION, OPTIONS)
    before, after = ck.vlm.prompt_ids(QUESTION, OPTIONS)
    cfg = ck.vlm.model.config
    ids = torch.tensor([before + [cfg.image_token_id] * tokens.shape[1] + after])
    rows, cols = ck.vlm.adapter.grid
    theirs, _ = ck.vlm.model.model.get_rope_index(ids, (ids == cfg.image_token_id).int(),
                                                  image_grid_thw=torch.tensor([[1, 2 * rows, 2 * cols]]))
    assert torch.equal(positions, theirs)


def test_merged_tokens_get_the_most_square_grid():
    assert token_grid(64, (8, 8)) == (8, 8) and token_grid(16, (8, 8)) == (4, 4)
    assert token_grid(8, (8, 8)) == (2, 4) and token_grid(2, (8, 8)) == (1, 2)


def test_bad_folders_are_one_line_and_exit_2(folders, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["models", "check", str(empty)]) == 2
    assert "config.json" in capsys.readouterr().err
    (empty / "config.json").write_text('{"model_type": "frobnicator"}')
    assert main(["models", "check", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "unknown model_type 'frobnicator'" in err and len(err.strip().splitlines()) == 1
    broken = shutil.copytree(folders["smolvlm", "small"], tmp_path / "broken")
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:1000])
    assert main(["models", "check", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and len(err.strip().splitlines()) == 1
    (broken / "preprocessor_config.json").unlink()
    assert main(["models", "check", str(broken)]) == 2
    assert "preprocessor_config.json" in capsys.readouterr().err
    assert main(["live", "default", "--inproc", "--models", f"small={empty},large={empty}"]) == 2
    assert "frobnicator" in capsys.readouterr().err


def test_models_check_prints_the_family_and_width(folders, capsys):
    assert main(["models", "check", str(folders["llava_onevision", "large"])]) == 0
    out = capsys.readouterr().out
    assert "family llava_onevision" in out and "width 48" in out and "random init" in out


def _scenario(tmp_path, manifest, policies, knobs=""):
    path = tmp_path / "ck.toml"
    path.write_text(f'[workload]\nkind = "manifest"\npath = "{manifest}"\n[policies]\nrun = {json.dumps(policies)}\n'
                    + knobs)
    return path


@pytest.mark.parametrize("family", FAMILIES)
def test_live_in_process_on_each_family(family, folders, manifest, tmp_path, capsys):
    spec = f"small={folders[family, 'small']},large={folders[family, 'large']}"
    policies = ["quickgrasp-fixed16", "edge-hosted"]  # one sharing, one not
    knobs = "[policies.quickgrasp-fixed16]\ntau_route = 1.0\n"  # every query escalates: the sharing path runs
    assert main(["live", str(_scenario(tmp_path, manifest, policies, knobs)), "--inproc", "--models", spec,
                 "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "ck").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    assert set(q.policy) == set(policies) and len(q) == 3 * 2 and (q["mode"] == "inproc").all()
    assert (q[q.policy == "quickgrasp-fixed16"].served_by == "edge").all()
    assert all(any(k.startswith("edge.infer.large.shared") for k in dict(s))
               for s in q[q.policy == "quickgrasp-fixed16"].stage_s)
    md = (run / "summary.md").read_text()
    assert "answers are noise: random weights" in md
    cal = pd.read_csv(run / "calibration.csv")
    assert cal.warning.fillna("").str.contains("rests on 1 profiling queries").any()  # one profiling query
    out = capsys.readouterr().out
    assert "calibration: the small model's temperature" in out


def test_a_pair_whose_encoders_differ_skips_the_sharing_policies(folders, manifest, tmp_path, capsys):
    spec = f"small={folders['qwen2_5_vl', 'small']},large={folders['llava_onevision', 'large']}"
    policies = ["device-native", "collaborative", "quickgrasp-fixed16", "uncalibrated-fixed8", "nosharing"]
    assert main(["live", str(_scenario(tmp_path, manifest, policies)), "--inproc", "--models", spec,
                 "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "ck").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    assert set(q.policy) == {"device-native", "collaborative", "nosharing"} and len(q) == 3 * 3
    out = " ".join(capsys.readouterr().out.split())
    for name in ("quickgrasp-fixed16", "uncalibrated-fixed8"):
        assert f"{name} skipped: it sends the small model's vision tokens to the large model, and the small " \
               "encoder's tokens are 128 wide and the large model's projector takes 48" in out


def test_a_recorded_family_trace_replays_with_the_same_routing(folders, manifest, tmp_path):
    spec = f"small={folders['smolvlm', 'small']},large={folders['smolvlm', 'large']}"

    def live(tau, out):
        scenario = _scenario(tmp_path, manifest, ["quickgrasp-fixed16"],
                             f"[policies.quickgrasp-fixed16]\ntau_route = {tau}\n")
        assert main(["live", str(scenario), "--inproc", "--models", spec, "--out", str(tmp_path / out)]) == 0
        (run,) = (tmp_path / out / "ck").iterdir()
        return scenario, pd.read_parquet(run / "queries.parquet").set_index("query_id").sort_index()

    _, probe = live(1.0, "probe")  # every query's score; then a threshold between the two lowest
    low = np.sort(probe.route_score.to_numpy())
    tau = float(low[0] + low[1]) / 2
    scenario, first = live(tau, "live")
    assert set(first.served_by) == {"local", "edge"}  # the threshold splits the queries
    assert main(["record", str(scenario), "--models", spec, "--out", str(tmp_path / "t.parquet")]) == 0
    (tmp_path / "replay.toml").write_text(f'[workload]\nkind = "trace"\npath = "{tmp_path / "t.parquet"}"\n'
                                          f'[policies]\nrun = ["quickgrasp-fixed16"]\n'
                                          f'[policies.quickgrasp-fixed16]\ntau_route = {tau}\n')
    assert main(["sim", str(tmp_path / "replay.toml"), "--out", str(tmp_path / "sim")]) == 0
    (sim,) = (tmp_path / "sim" / "replay").iterdir()
    replayed = pd.read_parquet(sim / "queries.parquet").set_index("query_id").sort_index()
    assert replayed.served_by.tolist() == first.served_by.tolist()
    np.testing.assert_allclose(replayed.route_score, first.route_score, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_video_policy_runs_on_each_family(family, folders, tmp_path):
    from testbed.policies.registry import FIXED, PER_DENSITY

    manifest = _manifest(tmp_path, [3, 2, 4, 3, 5], profiling=2)  # input-aware trains on two or more

    policies = [n for n, s in FIXED.items() if not (s.stream or s.images_only or s.needs_hindsight)]
    policies += [PER_DENSITY[k](a).name for k in PER_DENSITY for a in (2, 32)]
    spec = f"small={folders[family, 'small']},large={folders[family, 'large']}"
    assert main(["live", str(_scenario(tmp_path, manifest, policies)), "--inproc", "--models", spec,
                 "--out", str(tmp_path / "res")]) == 0
    (run,) = (tmp_path / "res" / "ck").iterdir()
    q = pd.read_parquet(run / "queries.parquet")
    assert set(q.policy) == set(policies) and q.groupby("policy").size().eq(3).all()
    assert np.isfinite(q.delay_s).all() and (q.delay_s > 0).all()


def test_the_gpu_profile_script_dry_runs_on_tiny_folders(tmp_path, capsys):
    assert main(["models", "profile-families", "--tiny", "--device", "cpu", "--skip-profile", "--families",
                 "qwen2_5_vl", "--repeats", "1", "--prefill-tokens", "256", "1024", "--out", str(tmp_path)]) == 0
    (csv,) = tmp_path.glob("*-stages.csv")
    table = pd.read_csv(csv)
    assert list(table.role) == ["small", "large"] and set(table.family) == {"qwen2_5_vl"}
    figures = table[["encoder_frames_per_s", "prefill_ms_0k", "prefill_ms_1k", "merge_ms_per_frame"]]
    assert (figures > 0).all().all()
    assert csv.with_suffix(".md").read_text().startswith("# Per-stage times on cpu")
