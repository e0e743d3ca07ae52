"""Policies are sans-I/O generators: drive them by hand with a scripted interpreter."""

import ast

import numpy as np
import pytest

from testbed.codec.size import TokenFormat, wire_token_bytes
from testbed.policies.base import PolicyContext, RouteKnobs
from testbed.policies.driver import drive, run_sync
from testbed.policies.effects import (Compress, Decompress, EdgeUnavailable, Inference, Infer, Offload, Payload,
                                      Tokenize, Tokens)
from testbed.policies.placement import PlacementError, check_offload, check_placement, run_steps, upload_bytes
from testbed.policies.registry import resolve
from testbed.query import DENSITIES, Hindsight, Query, VideoMeta
from testbed.router.calibration import Calibration
from testbed.scenario import REPO_ROOT
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER

VIDEO = VideoMeta(60.0, 30.0, 1800, 640, 360, 5_000_000, tuple(range(0, 1800, 120)))
QUERY = Query("q1", "bench", VIDEO, "what?", ("a", "b", "c", "d"))
TOKENS = Tokens(64, 1800, 0, "local")


def drive_scripted(policy_name, answers, hindsight=None, knobs=None):
    """Run a policy through the shared driver, answering each effect with the next scripted value;
    return the effects it yielded and its answer."""
    spec = resolve(policy_name)
    ctx = PolicyContext(knobs or spec.knobs(), spec.new_state(Calibration(1.4, 1.2)), hindsight=hindsight)
    effects = []
    script = iter(answers)

    def perform(eff):
        effects.append(eff)
        return next(script)(eff)

    return effects, run_sync(drive(spec.fn(QUERY, ctx), perform))


def logits(conf_top, t=1.0):
    """Logits over 4 options whose softmax at temperature t gives option 0 probability conf_top."""
    p = np.array([conf_top] + [(1 - conf_top) / 3] * 3)
    return t * np.log(p)


def payload_for(eff):
    return Payload("tokens", wire_token_bytes(eff.tokens.frames, eff.density, TokenFormat()), 0, 64, eff.density,
                   eff.tokens.encoder)


def test_device_native_tokenizes_by_default_and_answers_locally():
    effects, ans = drive_scripted("device-native", [lambda e: TOKENS, lambda e: Inference("small", logits(0.3))])
    assert effects[0] == Tokenize(VIDEO, DEFAULT_SAMPLER, pipelined=False)
    assert isinstance(effects[1], Infer) and effects[1].model == "small" and effects[1].density == 16
    assert (effects[1].question, effects[1].options) == (QUERY.question, QUERY.options)
    assert ans.served_by == "local" and ans.choice == 0


def test_edge_hosted_uploads_the_file():
    effects, ans = drive_scripted("edge-hosted", [lambda e: Inference("large", logits(0.9))])
    (off,) = effects
    assert isinstance(off, Offload) and off.payloads == (Payload("video", VIDEO.file_bytes, media=VIDEO),)
    assert off.steps[0] == Tokenize(VIDEO, DEFAULT_SAMPLER, pipelined=False, encoder="large")
    assert off.steps[1].model == "large" and off.steps[1].tokens is None
    check_offload(off)
    # the question travels with the request: file bytes plus its UTF-8 text and options
    assert upload_bytes(off) == VIDEO.file_bytes + len("what?") + 4 * 2
    assert ans.served_by == "edge"


def test_quickgrasp_keeps_confident_answers_local():
    # raw confidence 0.9 at T=1 becomes about 0.75 after T = 1.4: still above 0.6
    effects, ans = drive_scripted("quickgrasp-fixed16", [lambda e: TOKENS, lambda e: Inference("small", logits(0.9))])
    assert effects[0] == Tokenize(VIDEO, KEYFRAME_SAMPLER, pipelined=True)
    assert len(effects) == 2 and ans.served_by == "local"
    assert ans.confidence == pytest.approx(0.9 ** (1 / 1.4) / (0.9 ** (1 / 1.4) + 3 * (0.1 / 3) ** (1 / 1.4)))


@pytest.mark.parametrize("density", DENSITIES)
def test_quickgrasp_escalates_unsure_answers_with_its_density(density):
    effects, ans = drive_scripted(f"quickgrasp-fixed{density}", [
        lambda e: TOKENS, lambda e: Inference("small", logits(0.5)), payload_for,
        lambda e: Inference("large", logits(0.8))])
    tok, inf, comp, off = effects
    assert comp == Compress(TOKENS, density)
    assert isinstance(off.steps[0], Decompress) and off.steps[0].payload is off.payloads[0]
    assert off.steps[1].density == density and off.steps[1].tokens is None
    assert off.payloads[0].encoder == "small"  # the large LM gets the small model's encoder's tokens
    assert ans.served_by == "edge" and ans.density == density


def test_calibration_changes_the_route():
    # raw 0.65 looks confident uncalibrated; calibrated at T=1.4 it falls to ~0.5 and escalates
    script = [lambda e: TOKENS, lambda e: Inference("small", logits(0.65)), payload_for,
              lambda e: Inference("large", logits(0.8))]
    effects, ans = drive_scripted("uncalibrated-fixed16", script[:2])
    assert ans.served_by == "local"
    effects, ans = drive_scripted("quickgrasp-fixed16", script)
    assert ans.served_by == "edge"


def test_nosharing_uploads_video_and_retokenizes_at_edge():
    effects, ans = drive_scripted("nosharing", [lambda e: TOKENS, lambda e: Inference("small", logits(0.3)),
                                       lambda e: Inference("large", logits(0.8))])
    off = effects[2]
    assert off.payloads[0].kind == "video"
    assert off.steps[0] == Tokenize(VIDEO, KEYFRAME_SAMPLER, pipelined=True, encoder="large")


def test_oracle_takes_the_cheapest_correct_action():
    h = Hindsight(False, True, {2: False, 4: True, 8: True, 16: True, 32: True})
    effects, ans = drive_scripted("oracle", [lambda e: TOKENS, payload_for,
                                             lambda e: Inference("large", logits(0.8))], h)
    assert effects[1] == Compress(TOKENS, 4) and ans.density == 4
    h = Hindsight(True, True, dict.fromkeys(DENSITIES, True))
    effects, ans = drive_scripted("oracle", [lambda e: TOKENS, lambda e: Inference("small", logits(0.8))], h)
    assert ans.served_by == "local" and len(effects) == 2


def test_knobs_come_from_the_policy_table():
    script = [lambda e: TOKENS, lambda e: Inference("small", logits(0.9)), payload_for,
              lambda e: Inference("large", logits(0.8))]
    _, ans = drive_scripted("quickgrasp-fixed16", script, knobs=RouteKnobs(tau_route=0.99))
    assert ans.served_by == "edge"  # 0.75 calibrated confidence is below a threshold of 0.99


def test_a_thrown_interrupt_reaches_the_policy():
    """The driver throws EdgeUnavailable in at the Offload; a policy that catches it falls back."""
    from testbed.policies.effects import Answer

    def hedging(q, ctx):
        tokens = yield Tokenize(q.media, KEYFRAME_SAMPLER, pipelined=True)
        local = yield Infer("small", tokens, 16, q.question, q.options)
        payload = yield Compress(tokens, 16)
        try:
            out = yield Offload((payload,), (Decompress(payload), Infer("large", None, 16, q.question, q.options)))
        except EdgeUnavailable:
            return Answer(local.choice, "local", fallback=True)
        return Answer(out.choice, "edge")

    def perform(eff):
        if isinstance(eff, Offload):
            raise EdgeUnavailable("edge down")
        return {Tokenize: TOKENS, Infer: Inference("small", logits(0.4))}.get(type(eff)) or payload_for(eff)

    ans = run_sync(drive(hedging(QUERY, None), perform))
    assert ans.fallback and ans.served_by == "local"


@pytest.mark.parametrize("effect,site", [
    (Compress(TOKENS, 16), "edge"), (Decompress(Payload("tokens", 1)), "local"),
    (Offload((), (Infer("large", TOKENS, 16, "q", ("a",)),)), "edge"),
])
def test_placement_table_refuses_effects_out_of_place(effect, site):
    with pytest.raises(PlacementError):
        check_placement(effect, site)


def test_offload_steps_are_wired_by_the_core():
    p = Payload("tokens", 100, 400, 8, 4)
    with pytest.raises(PlacementError, match="needs tokens"):
        check_offload(Offload((p,), (Infer("large", None, 4, "q", ("a", "b")),)))
    with pytest.raises(PlacementError, match="among the Offload's payloads"):
        check_offload(Offload((), (Decompress(p), Infer("large", None, 4, "q", ("a", "b")))))
    with pytest.raises(PlacementError, match="media file"):
        check_offload(Offload((), (Tokenize(VIDEO, DEFAULT_SAMPLER, False), Infer("large", None, 4, "q", ("a",)))))
    # run_steps feeds the Decompress's tokens to the Infer that follows it
    seen = []
    made = Tokens(8, 0, 4, "edge")

    def perform(step):
        seen.append(step)
        return made if isinstance(step, Decompress) else Inference("large", np.zeros(2))

    off = Offload((p,), (Decompress(p), Infer("large", None, 4, "q", ("a", "b"))))
    result = run_sync(run_steps(off, perform))
    assert isinstance(result, Inference) and seen[1].tokens is made


FORBIDDEN = {"simpy", "zmq", "socket", "subprocess", "time", "asyncio", "datetime"}  # STYLE.md; threads are
# allowed (the pipelined tokenizer), clocks are passed in


def test_core_never_imports_io_or_clocks():
    """testbed/ is pure: only sim/ and live/ touch time, sockets and processes, and the core never
    imports an engine, not even lazily (the CLI, outside testbed/, wires them). No exemption."""
    offenders = []
    for path in (REPO_ROOT / "testbed").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN or n.split(".")[0] in ("sim", "live", "cli")
                          or ".".join(n.split(".")[:2]) in ("testbed.sim", "testbed.live", "testbed.cli")]
    assert offenders == []


def test_importing_policies_and_scenario_loads_neither_torch_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, testbed.policies.registry, testbed.policies.driver, testbed.scenario; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_effect_has_a_handler_and_a_placement():
    import typing

    from testbed.policies.driver import Interpreter
    from testbed.policies.effects import HANDLERS, Effect
    from testbed.policies.placement import ALLOWED

    effects = set(typing.get_args(Effect))
    assert set(HANDLERS) == effects == set(ALLOWED)
    assert set(HANDLERS.values()) <= set(Interpreter.__abstractmethods__)


def test_an_interpreter_missing_a_method_fails_at_start_up():
    from testbed.policies.driver import Interpreter

    class Partial(Interpreter):
        def tokenize(self, eff, run, site):
            return TOKENS

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


def test_nothing_is_pickled():
    import re

    uses = re.compile(r"^\s*(import (cloud)?pickle|from (cloud)?pickle)|pickle\.(loads?|dumps?)\(", re.M)
    for folder in ("testbed", "sim", "live"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            assert not uses.search(path.read_text()), path


@pytest.mark.parametrize("name", ["edge-hosted", "collaborative", "quickgrasp-fixed16", "nosharing",
                                  "uncalibrated-fixed4"])
def test_every_offloading_policy_falls_back_to_the_device(name):
    """The edge does not answer: the policy answers on the device, marked as a fallback, never lost."""
    def perform(eff):
        if isinstance(eff, Offload):
            raise EdgeUnavailable("edge down")
        if isinstance(eff, Tokenize):
            return TOKENS
        if isinstance(eff, Compress):
            return payload_for(eff)
        return Inference("small", logits(0.3))  # unsure: QuickGrasp escalates

    spec = resolve(name)
    ctx = PolicyContext(spec.knobs(), spec.new_state(Calibration(1.4, 1.2)))
    ans = run_sync(drive(spec.fn(QUERY, ctx), perform))
    assert ans.fallback and ans.served_by == "local" and ans.choice == 0


def test_infer_with_tokens_is_replace_with_every_field_kept():
    """An Offload's Infer gets the step before's tokens by `Infer.with_tokens`, which must be what
    dataclasses.replace gives, whatever fields Infer has (a field added later and not passed on fails here)."""
    import dataclasses

    from testbed.policies.effects import Context, Locate

    tokens = Tokens(4, 4, 16, "edge", "large", "keyframe", views=("global",))
    ctx = Context(3, 1, Inference("large", np.array([0.1, 0.9])))
    values = {"model": "large", "tokens": None, "density": 8, "question": "q?", "options": ("a", "b"),
              "context": ctx, "focus": ("ggvr",), "locate": Locate(1.0, 0.5, 640, 480)}
    assert set(values) == {f.name for f in dataclasses.fields(Infer)}, "a new Infer field: give it a value here"
    eff = Infer(**values)
    got = eff.with_tokens(tokens)
    assert got == dataclasses.replace(eff, tokens=tokens)
    assert all(getattr(got, k) is (tokens if k == "tokens" else v) for k, v in values.items())
