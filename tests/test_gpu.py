"""Opt-in GPU checks (`pytest -m gpu` on a CUDA machine); skipped elsewhere."""

import time

import pytest
import torch

from testbed.models.encoder import real_size_encoder
from testbed.tokenizer.pipeline import tokenize
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_real_size_encoder_on_gpu(videos):
    enc = real_size_encoder(device="cuda")
    r = tokenize(videos["long"], KEYFRAME_SAMPLER, enc, time.perf_counter, pipelined=True)
    assert r.tokens.shape == (120, 196, 1024) and r.tokens.device.type == "cuda"
    print(f"\nreal-size encoder on {torch.cuda.get_device_name()}: stages {r.stage_s}, wall {r.wall_s:.3f} s")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_onevision"])
def test_real_size_families_on_gpu(family, tmp_path):
    """The published configurations, random weights drawn on the GPU in bf16: sharing, merging and timing."""
    from testbed.live.profile import stage_table
    from testbed.live.real import to_density
    from testbed.models.pair import make_pair
    from testbed.models.real_size import write_real_size

    folders = {r: write_real_size(family, tmp_path / r, r) for r in ("small", "large")}
    pair = make_pair(f"small={folders['small']},large={folders['large']}", "cuda")
    assert pair.sharing_gap() is None and pair.random_weights
    enc = pair.encoders["small"]
    frames = torch.randint(0, 256, (8, 360, 640, 3), dtype=torch.uint8).numpy()
    tokens = enc.encode(enc.preprocess(frames))
    assert tokens.shape == (8, enc.tokens_per_frame, enc.dim) and tokens.device.type == "cuda"
    logits = pair.models["large"].option_logits(to_density(tokens, 16), "What happens?", ("a", "b", "c", "d"))
    assert logits.shape == (4,)
    for row in stage_table(pair, repeats=2, prefill_tokens=(1024, 4096)):
        print(f"\n{family} {row}")
