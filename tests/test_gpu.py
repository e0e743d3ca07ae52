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
