"""Policies are sans-I/O generators: drive them by hand with a scripted interpreter."""

import ast

import numpy as np
import pytest

from testbed.codec.size import TokenFormat, wire_token_bytes
from testbed.policies.base import PolicyContext, resolve
from testbed.policies.effects import Compress, Decompress, Inference, Infer, Offload, Payload, Tokenize, Tokens
from testbed.query import DENSITIES, Hindsight, Query, VideoMeta
from testbed.router.calibration import Calibration
from testbed.scenario import REPO_ROOT
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER

VIDEO = VideoMeta(60.0, 30.0, 1800, 640, 360, 5_000_000, tuple(range(0, 1800, 120)))
QUERY = Query("q1", "bench", VIDEO, "what?", ("a", "b", "c", "d"))
TOKENS = Tokens(64, 1800, 0, "local")


def drive(policy_name, answers, ctx=None):
    """Run a policy, answering each effect with the next scripted value; return effects and answer."""
    spec = resolve(policy_name)
    ctx = spec.context(ctx or PolicyContext(Calibration(1.4, 1.2)))
    gen = spec.fn(QUERY, ctx)
    effects, value = [], None
    script = iter(answers)
    while True:
        try:
            eff = gen.send(value)
        except StopIteration as stop:
            return effects, stop.value
        effects.append(eff)
        value = next(script)(eff)


def logits(conf_top, t=1.0):
    """Logits over 4 options whose softmax at temperature t gives option 0 probability conf_top."""
    p = np.array([conf_top] + [(1 - conf_top) / 3] * 3)
    return t * np.log(p)


def payload_for(eff):
    return Payload("tokens", wire_token_bytes(eff.tokens.frames, eff.density, TokenFormat()), 0, 64, eff.density)


def test_device_native_tokenizes_by_default_and_answers_locally():
    effects, ans = drive("device-native", [lambda e: TOKENS, lambda e: Inference("small", logits(0.3))])
    assert effects[0] == Tokenize(VIDEO, DEFAULT_SAMPLER, pipelined=False)
    assert isinstance(effects[1], Infer) and effects[1].model == "small" and effects[1].density == 16
    assert ans.served_by == "local" and ans.choice == 0


def test_edge_hosted_uploads_the_file():
    effects, ans = drive("edge-hosted", [lambda e: Inference("large", logits(0.9))])
    (off,) = effects
    assert isinstance(off, Offload) and off.payloads[0] == Payload("video", VIDEO.file_bytes)
    assert isinstance(off.steps[0], Tokenize) and off.steps[0].where == "edge"
    assert off.steps[1].model == "large" and not off.steps[1].shared_encoder
    assert ans.served_by == "edge"


def test_quickgrasp_keeps_confident_answers_local():
    # raw confidence 0.9 at T=1 becomes about 0.75 after T = 1.4: still above 0.6
    effects, ans = drive("quickgrasp-fixed16", [lambda e: TOKENS, lambda e: Inference("small", logits(0.9))])
    assert effects[0] == Tokenize(VIDEO, KEYFRAME_SAMPLER, pipelined=True)
    assert len(effects) == 2 and ans.served_by == "local"
    assert ans.confidence == pytest.approx(0.9 ** (1 / 1.4) / (0.9 ** (1 / 1.4) + 3 * (0.1 / 3) ** (1 / 1.4)))


@pytest.mark.parametrize("density", DENSITIES)
def test_quickgrasp_escalates_unsure_answers_with_its_density(density):
    effects, ans = drive(f"quickgrasp-fixed{density}", [
        lambda e: TOKENS, lambda e: Inference("small", logits(0.5)), payload_for,
        lambda e: Inference("large", logits(0.8))])
    tok, inf, comp, off = effects
    assert comp == Compress(TOKENS, density)
    assert isinstance(off.steps[0], Decompress)
    assert off.steps[1].shared_encoder and off.steps[1].density == density and off.steps[1].tokens is None
    assert ans.served_by == "edge" and ans.density == density


def test_calibration_changes_the_route():
    # raw 0.65 looks confident uncalibrated; calibrated at T=1.4 it falls to ~0.5 and escalates
    script = [lambda e: TOKENS, lambda e: Inference("small", logits(0.65)), payload_for,
              lambda e: Inference("large", logits(0.8))]
    effects, ans = drive("uncalibrated-fixed16", script[:2])
    assert ans.served_by == "local"
    effects, ans = drive("quickgrasp-fixed16", script)
    assert ans.served_by == "edge"


def test_nosharing_uploads_video_and_retokenizes_at_edge():
    effects, ans = drive("nosharing", [lambda e: TOKENS, lambda e: Inference("small", logits(0.3)),
                                       lambda e: Inference("large", logits(0.8))])
    off = effects[2]
    assert off.payloads[0].kind == "video"
    assert off.steps[0] == Tokenize(VIDEO, KEYFRAME_SAMPLER, pipelined=True, where="edge")


def test_oracle_takes_the_cheapest_correct_action():
    ctx = PolicyContext(Calibration(), hindsight=Hindsight(False, True, {2: False, 4: True, 8: True, 16: True, 32: True}))
    effects, ans = drive("oracle", [lambda e: TOKENS, payload_for, lambda e: Inference("large", logits(0.8))], ctx)
    assert effects[1] == Compress(TOKENS, 4) and ans.density == 4
    ctx = PolicyContext(Calibration(), hindsight=Hindsight(True, True, {a: True for a in DENSITIES}))
    effects, ans = drive("oracle", [lambda e: TOKENS, lambda e: Inference("small", logits(0.8))], ctx)
    assert ans.served_by == "local" and len(effects) == 2


FORBIDDEN = {"simpy", "zmq", "socket", "subprocess", "time", "asyncio"}  # STYLE.md; threads are allowed (the
# pipelined tokenizer), clocks are passed in


def test_core_never_imports_io_or_clocks():
    """testbed/ is pure: only sim/ and live/ touch time, sockets and processes (cli.py dispatches to them)."""
    offenders = []
    for path in (REPO_ROOT / "testbed").rglob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN or n.split(".")[0] in ("sim", "live")]
    assert offenders == []


def test_nothing_is_pickled():
    import re

    uses = re.compile(r"^\s*(import (cloud)?pickle|from (cloud)?pickle)|pickle\.(loads?|dumps?)\(", re.M)
    for folder in ("testbed", "sim", "live"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            assert not uses.search(path.read_text()), path
