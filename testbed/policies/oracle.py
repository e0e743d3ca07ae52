"""Oracle: per query, the cheapest correct action in hindsight (an upper bound, trace-driven only).

Actions, cheapest first: answer locally with the small VLM; send shared tokens at density 2, 4,
8, 16, 32 without running the small LM. If no action is correct, answer locally.
"""

from __future__ import annotations

from testbed.errors import TestbedError
from testbed.policies.base import PolicyContext
from testbed.policies.effects import Answer, Infer, Policy, Tokenize
from testbed.policies.quickgrasp import offload_tokens
from testbed.query import DENSITIES, Query
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER


def oracle(q: Query, ctx: PolicyContext) -> Policy:
    h = ctx.hindsight
    if h is None:
        raise TestbedError("the oracle policy needs hindsight, which only trace-driven runs have")
    tokens = yield Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True)
    best = next((a for a in DENSITIES if h.large_correct.get(a)), None)
    if h.small_correct or best is None:
        local = yield Infer("small", tokens, ctx.default_density, q.question, q.options)
        return Answer(local.choice, "local", ctx.default_density)
    return (yield from offload_tokens(q, ctx, tokens, best))
