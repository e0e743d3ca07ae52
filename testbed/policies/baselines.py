"""Seed 000's baselines, using the model's default tokenizer (1 FPS, decode then encode).

DeviceNative: the small VLM answers on the device. EdgeHosted: upload the video file and question;
the edge tokenizes and answers with the large VLM. Collaborative: the device tokenizes with the
large model's encoder, all tokens at the default density go up compressed, the edge runs the LM.
"""

from __future__ import annotations

from testbed.codec.size import REPLY_BYTES, text_bytes, text_tokens
from testbed.policies.base import PolicyContext
from testbed.policies.effects import Answer, Compress, Decompress, Infer, Offload, Payload, Policy, Tokenize
from testbed.query import Query
from testbed.tokenizer.sampling import DEFAULT_SAMPLER


def text_payload(q: Query) -> Payload:
    """The question and options as UTF-8."""
    return Payload("text", text_bytes(q.question, q.options))


def device_native(q: Query, ctx: PolicyContext) -> Policy:
    tokens = yield Tokenize(q.video, DEFAULT_SAMPLER, pipelined=False)
    out = yield Infer("small", tokens, ctx.default_density, text_tokens(q.question, q.options))
    return Answer(out.choice, "local", ctx.default_density, ctx.calibration.small_confidence(out.option_logits))


def edge_hosted(q: Query, ctx: PolicyContext) -> Policy:
    video = Payload("video", q.video.file_bytes)
    steps = (Tokenize(q.video, DEFAULT_SAMPLER, pipelined=False, where="edge"),
             Infer("large", None, ctx.default_density, text_tokens(q.question, q.options), where="edge"))
    out = yield Offload((video, text_payload(q)), steps, REPLY_BYTES)
    return Answer(out.choice, "edge", ctx.default_density, ctx.calibration.large_confidence(out.option_logits))


def collaborative(q: Query, ctx: PolicyContext) -> Policy:
    tokens = yield Tokenize(q.video, DEFAULT_SAMPLER, pipelined=False)
    payload = yield Compress(tokens, ctx.default_density)
    steps = (Decompress(payload),
             Infer("large", None, ctx.default_density, text_tokens(q.question, q.options), where="edge"))
    out = yield Offload((payload, text_payload(q)), steps, REPLY_BYTES)
    return Answer(out.choice, "edge", ctx.default_density, ctx.calibration.large_confidence(out.option_logits))
