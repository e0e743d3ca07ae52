"""Seed 000's baselines, using the model's default tokenizer (1 FPS, decode then encode).

DeviceNative: the small VLM answers on the device. EdgeHosted: upload the video file and question;
the edge tokenizes and answers with the large VLM. Collaborative: the device tokenizes with the
large model's encoder, all tokens at the default density go up compressed, the edge runs the LM.
"""

from __future__ import annotations

from testbed.policies.base import PolicyContext
from testbed.policies.effects import Answer, Compress, Decompress, Infer, Offload, Payload, Policy, Tokenize
from testbed.query import Query
from testbed.tokenizer.sampling import DEFAULT_SAMPLER


def device_native(q: Query, ctx: PolicyContext) -> Policy:
    tokens = yield Tokenize(q.media, DEFAULT_SAMPLER, pipelined=False)
    out = yield Infer("small", tokens, ctx.default_density, q.question, q.options)
    return Answer(out.choice, "local", ctx.default_density, ctx.calibration.small_confidence(out.option_logits))


def edge_hosted(q: Query, ctx: PolicyContext) -> Policy:
    steps = (Tokenize(q.media, DEFAULT_SAMPLER, pipelined=False, encoder="large"),
             Infer("large", None, ctx.default_density, q.question, q.options))
    out = yield Offload((Payload.of_media(q.media),), steps)
    return Answer(out.choice, "edge", ctx.default_density, ctx.calibration.large_confidence(out.option_logits))


def collaborative(q: Query, ctx: PolicyContext) -> Policy:
    tokens = yield Tokenize(q.media, DEFAULT_SAMPLER, pipelined=False, encoder="large")
    payload = yield Compress(tokens, ctx.default_density)
    steps = (Decompress(payload), Infer("large", None, ctx.default_density, q.question, q.options))
    out = yield Offload((payload,), steps)
    return Answer(out.choice, "edge", ctx.default_density, ctx.calibration.large_confidence(out.option_logits))
