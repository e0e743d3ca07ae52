"""The VLM pair: option logits read off the LM's next-token logits, real-size presets' sizes, and a
local model-pair folder that round-trips."""

import numpy as np
import pytest
import torch

from testbed.errors import ConfigError
from testbed.models.pair import LETTERS, load_pair, make_pair, real_size_pair, save_pair, tiny_pair

QUESTION, OPTIONS = "Which pattern is shown?", ("bars", "noise", "a fractal")


@pytest.fixture(scope="module")
def pair():
    return tiny_pair()


def test_option_logits_are_the_letters_next_token_logits(pair):
    """A manual forward pass: embed the prompt by hand, project the vision tokens, run the LM, and
    read the last position's logits at the ids of 'A', 'B', 'C' (seed 000 Eq. 1)."""
    vision = torch.randn(3, 16, pair.encoders["small"].dim, generator=torch.Generator().manual_seed(0))
    for name, model in pair.models.items():
        text_before = "Video:"
        text_after = (f"\nQuestion: {QUESTION}\nOptions:\n(A) bars\n(B) noise\n(C) a fractal\n"
                      "Answer with the option's letter.\nAnswer: (")
        ids_before = [257] + list(text_before.encode())  # byte tokenizer: BOS then UTF-8 bytes
        ids_after = list(text_after.encode())
        with torch.no_grad():
            emb = model.lm.get_input_embeddings()
            x = torch.cat([emb(torch.tensor(ids_before)), model.proj(vision.reshape(-1, vision.shape[-1])),
                           emb(torch.tensor(ids_after))])[None]
            last = model.lm(inputs_embeds=x).logits[0, -1]
        expected = last[[ord("A"), ord("B"), ord("C")]].double().numpy()
        got = model.option_logits(vision, QUESTION, OPTIONS)
        assert got.shape == (3,)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6), name


def test_the_two_models_differ_and_are_deterministic(pair):
    vision = torch.randn(2, 8, 64)
    a = pair.models["small"].option_logits(vision, QUESTION, OPTIONS)
    b = pair.models["large"].option_logits(vision, QUESTION, OPTIONS)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, tiny_pair().models["small"].option_logits(vision, QUESTION, OPTIONS))


def test_real_size_presets_are_2b_and_7b():
    """Built on the meta device: no memory is used."""
    counts = real_size_pair("meta").parameter_counts()
    assert counts["small"] == pytest.approx(2e9, rel=0.10)
    assert counts["large"] == pytest.approx(7e9, rel=0.10)


def test_a_saved_pair_loads_from_its_folder(pair, tmp_path):
    save_pair(pair, tmp_path / "pair")
    loaded = make_pair(str(tmp_path / "pair"))
    vision = torch.randn(2, 4, 64)
    for name in ("small", "large"):
        np.testing.assert_allclose(loaded.models[name].option_logits(vision, QUESTION, OPTIONS),
                                   pair.models[name].option_logits(vision, QUESTION, OPTIONS), rtol=1e-5)
    frames = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.encoders["large"].encode(frames), pair.encoders["large"].encode(frames))


def test_bad_presets_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="neither 'tiny', 'real-size', 'pocket' nor a model-pair folder"):
        make_pair(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="no pair.json"):
        load_pair(tmp_path)
    (tmp_path / "pair.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not a testbed-vlm-pair"):
        load_pair(tmp_path)


def test_too_many_options_is_an_error(pair):
    with pytest.raises(ConfigError, match="at most 26"):
        pair.models["small"].option_logits(torch.zeros(1, 2, 64), "q", tuple(str(i) for i in range(len(LETTERS) + 1)))
