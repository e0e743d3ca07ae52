"""Test policies shared by the sim's and the real interpreter's tests."""

from testbed.policies.effects import Answer, Compress, Decompress, Infer, Offload, Submit, Tokenize
from testbed.tokenizer.sampling import KEYFRAME_SAMPLER


def fire_and_forget(q, ctx):
    """Answer locally, but also send the tokens to the edge and never wait for the answer."""
    tokens = yield Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True)
    payload = yield Compress(tokens, 8)
    yield Submit(Offload((payload,), (Decompress(payload), Infer("large", None, 8, q.question, q.options))))
    local = yield Infer("small", tokens, 16, q.question, q.options)
    return Answer(local.choice, "local")
