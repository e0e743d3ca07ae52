"""Seed 000's baselines, using the model's default tokenizer (1 FPS, decode then encode).

DeviceNative: the small VLM answers on the device. EdgeHosted: upload the video file and question;
the edge tokenizes and answers with the large VLM. Collaborative: the device tokenizes with the
large model's encoder, all tokens at the default density go up compressed, the edge runs the LM.
"""

from __future__ import annotations


from testbed.policies.base import PolicyContext
from testbed.policies.effects import (Answer, Compress, Decompress, EdgeUnavailable, Inference, Infer, Offload, Payload,
                                      Policy, Step, Tokenize)
from testbed.query import Media, Query
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, Sampler


def edge_answer(off: Offload) -> Step:
    """Yield the Offload; its Inference, or None if the edge did not answer (down, busy or late), so
    the policy can fall back to the device. The sim's edge always answers."""
    try:
        return (yield off)
    except EdgeUnavailable:
        return None


def media_offload(media: Media, question: str, options: tuple[str, ...], density: int,
                  sampler: Sampler = DEFAULT_SAMPLER, pipelined: bool = False) -> Offload:
    """The media file to the edge, whose large model tokenizes it with its own encoder and answers."""
    return Offload((Payload.of_media(media),), (Tokenize(media, sampler, pipelined=pipelined, encoder="large"),
                                                Infer("large", None, density, question, options)))


def token_offload(payload: Payload, density: int, question: str, options: tuple[str, ...]) -> Offload:
    """Compressed tokens to the edge: decompressed there, then the large model answers."""
    return Offload((payload,), (Decompress(payload), Infer("large", None, density, question, options)))


def device_native(q: Query, ctx: PolicyContext, fallback: bool = False) -> Policy:
    tokens = yield Tokenize(q.media, DEFAULT_SAMPLER, pipelined=False)
    out = yield Infer("small", tokens, ctx.default_density, q.question, q.options)
    return Answer(out.choice, "local", ctx.default_density, ctx.calibration.small_confidence(out.option_logits),
                  fallback)


def edge_hosted(q: Query, ctx: PolicyContext) -> Policy:
    out = yield from edge_answer(media_offload(q.media, q.question, q.options, ctx.default_density))
    if out is None:
        return (yield from device_native(q, ctx, fallback=True))
    return large_answer(ctx, out, ctx.default_density)


def collaborative(q: Query, ctx: PolicyContext) -> Policy:
    tokens = yield Tokenize(q.media, DEFAULT_SAMPLER, pipelined=False, encoder="large")
    payload = yield Compress(tokens, ctx.default_density)
    out = yield from edge_answer(token_offload(payload, ctx.default_density, q.question, q.options))
    if out is None:  # the device holds the large model's encoder's tokens, not the small model's
        return (yield from device_native(q, ctx, fallback=True))
    return large_answer(ctx, out, ctx.default_density)


def large_answer(ctx: PolicyContext, out: Inference, density: int) -> Answer:
    return Answer(out.choice, "edge", density, ctx.calibration.large_confidence(out.option_logits))
