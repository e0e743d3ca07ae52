"""The per-query accounting, the same for every interpreter: stage-time keys, the ledger of where a
query's time and bytes went, a query in flight (QueryRun) and its result row, and the contract an
interpreter holds a run to (`Run`: a query's or a stream frame's).

Recorded stage times are keyed by `stage_key` (e.g. ``local.tokenize.keyframe.pipelined``): a live
run records them under the keys the sim replays.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from testbed.bandit.agents import MAX_FRAMES, CostModel, instant_regret
from testbed.policies.effects import Answer, ModelName, Tokenize, Tokens
from testbed.errors import TestbedError
from testbed.query import DENSITIES, QueryRecord

if TYPE_CHECKING:
    from testbed.streams.run import FrameRun


@functools.lru_cache(maxsize=4096)
def stage_key(where: str, what: str, *detail: object) -> str:
    """Key of a recorded stage time, e.g. ``local.tokenize.keyframe.pipelined`` (memoized: the sim
    asks for the same few keys for every query)."""
    return ".".join([where, what, *(str(d) for d in detail)])


REQUEST_KEY = "edge.request"
"""Seconds the edge server took to take a request in before its steps (writing an upload, probing it)."""


def fallback_key(offload: int) -> str:
    """Key of the seconds a query waited for its `offload`-th Offload (from 1) that the edge did not
    answer before it fell back: a replay of the run falls back after the same wait."""
    return stage_key("fallback", "wait", offload)


def tokenize_key(site: str, eff: Tokenize) -> str:
    """An image is one frame: nothing to pipeline, one key whatever the effect asks."""
    if eff.media.kind == "image":
        view = getattr(eff.media, "view", "")
        return stage_key(site, "tokenize", "image", view_key(view)) if view else image_tokenize_key(site)
    return stage_key(site, "tokenize", sampler_kind(eff), "pipelined" if eff.pipelined else "sequential")


def infer_key(site: str, model: ModelName, tokens: Tokens, density: int) -> str:
    """The large model's key says whether it ran on the small model's encoder's tokens (shared); every
    key names the sampler the frames came from (their number differs), e.g. ``local.infer.small.fps.a16``."""
    encoder = ("shared" if tokens.encoder == "small" else "native",) if model == "large" else ()
    views = ("+".join(view_key(v) for v in tokens.views),) if tokens.views else ()  # seed 003's image views
    return stage_key(site, "infer", model, *encoder, *_sampler(tokens.sampler), *views, f"a{density}")


def view_key(view: str) -> str:
    """A seed-003 view as stage keys name it: a random crop costs what any crop of its size does."""
    return "crop" if view.startswith("crop") else view


def describe_key(sampler: str) -> str:
    """The device's computing of the density bandit's context inputs (the Describe effect)."""
    return stage_key("local", "describe", *_sampler(sampler))


def inspect_key(media_kind: str, sampler: str) -> str:
    """The device's look at the input before any model (seed 002's signals, the Inspect effect),
    e.g. ``local.inspect.image`` or ``local.inspect.keyframe``."""
    return stage_key("local", "inspect", "image" if media_kind == "image" else sampler)


def image_tokenize_key(site: str) -> str:
    """Key of tokenizing one image (a stream frame): what `tokenize_key` gives any Tokenize of an image."""
    return stage_key(site, "tokenize", "image")


def frame_infer_key(site: str, model: ModelName, context: bool, focus: bool) -> str:
    """Key of a stream frame's inference (seed 001): the model on one frame, with a large-model
    answer as its history (context) and visual focus on it, e.g. ``local.infer.small.frame.context``."""
    return stage_key(site, "infer", model, "frame", *(["context"] if context else []), *(["focus"] if focus else []))


def crop_key(view: str) -> str:
    """Key of making one image view on the device (seed 003), e.g. ``local.crop.global``."""
    return stage_key("local", "crop", view)


def locate_key() -> str:
    """Key of the edge's relative-attention pass (seed 003: the generic prompt's attention)."""
    return stage_key("edge", "locate")


def compress_key(sampler: str, density: int) -> str:
    return stage_key("local", "compress", *_sampler(sampler), f"a{density}")


def decompress_key(sampler: str, density: int) -> str:
    return stage_key("edge", "decompress", *_sampler(sampler), f"a{density}")


def _sampler(kind: str) -> tuple[str, ...]:
    return (kind,) if kind else ()


def sampler_kind(eff: Tokenize) -> str:
    """What a Tokenize effect's tokens record as their sampler."""
    return eff.sampler.kind if eff.media.kind == "video" else "image"


@dataclass
class Ledger:
    """Where one query's time and bytes went, its own work and that of every future it started."""

    local_s: float = 0.0
    local_queue_s: float = 0.0
    uplink_s: float = 0.0
    edge_queue_s: float = 0.0
    edge_s: float = 0.0
    downlink_s: float = 0.0
    link_queue_s: float = 0.0  # of uplink_s and downlink_s, the time spent behind other transfers
    bytes_up: int = 0
    bytes_down: int = 0
    frames: int = 0
    decoded: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes a stage produced (a compressed payload)
    round_trips: int = 0  # Offloads: seed 003's retransmission is a second one
    edge_prefill_tokens: int = 0  # vision and text tokens the edge's LM prefilled (seed 003's compute cost)

    def add(self, where: str, waited: float, worked: float) -> None:
        if where == "local":
            self.local_queue_s += waited
            self.local_s += worked
        else:
            self.edge_queue_s += waited
            self.edge_s += worked

    def stage(self, key: str, seconds: float) -> None:
        """Book a stage's time under its key (a query that runs a stage twice books the sum)."""
        self.stages[key] = self.stages.get(key, 0.0) + seconds

    def size(self, key: str, nbytes: int) -> None:
        """Book the bytes a stage produced under its key (a replay sends what the live run sent)."""
        self.sizes[key] = int(nbytes)

    def absorb(self, part: "Ledger") -> None:
        """Add a ledger that booked one piece of this query's work on the side (an Offload raced
        against a timeout): times, bytes, tokens and stages add up; frames are the part's if it saw any."""
        for name in ("local_s", "local_queue_s", "uplink_s", "edge_queue_s", "edge_s", "downlink_s", "link_queue_s",
                     "bytes_up", "bytes_down", "round_trips", "edge_prefill_tokens"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        for key, seconds in part.stages.items():
            self.stage(key, seconds)
        self.sizes.update(part.sizes)
        if part.frames:
            self.frames, self.decoded = part.frames, part.decoded


class Replayed:
    """What a run replays from its record (a trace row's or a frame's): the stage times and sizes a
    live run recorded, which the sim prefers to the profile's (the Run protocol reads them here)."""

    rec: Any

    @property
    def recorded_s(self) -> Mapping[str, float]:
        return self.rec.recorded_s  # type: ignore[no-any-return]

    @property
    def recorded_bytes(self) -> Mapping[str, int]:
        return self.rec.recorded_bytes  # type: ignore[no-any-return]


@dataclass
class QueryRun(Replayed):
    """One query in flight: its record, its client, its ledger, the futures it started, and when
    it was submitted and answered (in the interpreter's clock)."""

    rec: QueryRecord
    client: int
    submit_s: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)
    futures: dict[int, Any] = field(default_factory=dict)
    done_s: float = float("nan")
    answer: Answer | None = None

    @property
    def request_id(self) -> str:
        return str(self.rec.query.query_id)

    @property
    def query_run(self) -> QueryRun:
        return self

    @property
    def frame_run(self) -> None:
        return None

    def row(self, policy: str, mode: str, regret: float = float("nan")) -> dict[str, Any]:
        """The query's result row; call once every future it started has finished. `regret` is the
        density's regret against the oracle density (`density_regret`), NaN where there is none."""
        a, rec, ledger = self.answer, self.rec, self.ledger
        assert a is not None, "row() of a query that has not been answered"
        return {
            "policy": policy, "mode": mode, "query_id": rec.query.query_id, "benchmark": rec.query.benchmark,
            "client": self.client, "submit_s": self.submit_s, "done_s": self.done_s,
            "delay_s": self.done_s - self.submit_s, "choice": a.choice, "answer": rec.answer,
            "correct": a.choice == rec.answer, "served_by": a.served_by, "density": a.density, "regret": regret,
            "confidence": a.confidence, "route_score": a.score, "fallback": a.fallback, "bytes_up": ledger.bytes_up,
            "bytes_down": ledger.bytes_down, "frames": ledger.frames, "decoded_frames": ledger.decoded,
            "t_local_s": ledger.local_s, "t_local_queue_s": ledger.local_queue_s, "t_uplink_s": ledger.uplink_s,
            "t_edge_queue_s": ledger.edge_queue_s, "t_edge_s": ledger.edge_s, "t_downlink_s": ledger.downlink_s,
            "t_wait_s": ledger.local_queue_s + ledger.edge_queue_s + ledger.link_queue_s,
            "round_trips": ledger.round_trips, "edge_prefill_tokens": ledger.edge_prefill_tokens,
            "stage_s": ledger.stages, "stage_bytes": ledger.sizes,
        }


def density_regret(rec: QueryRecord, answer: Answer, frames: int, cost: CostModel) -> float:
    """Exact regret of the density an escalated query was sent at, against the oracle density
    (seed 000 Eq. 3/11: the best 1{correct} - lambda n a in hindsight minus the one chosen), from the
    trace's large-model logits at every density. NaN for a local answer, a density outside the
    cost model's, or a record without every density's outcome (a real run)."""
    if answer.served_by != "edge" or answer.density not in cost.densities or \
            any(a not in rec.large_logits for a in cost.densities):
        return float("nan")
    hindsight = {a: float(int(np.asarray(rec.large_logits[a]).argmax()) == rec.answer) for a in cost.densities}
    return instant_regret(hindsight, frames, answer.density, cost)


def regret_cost(knobs: object) -> CostModel:
    """The cost model regret is measured with: the policy's own lambda where its knobs have one
    (adaptive policies), else seed 000's (the largest token volume costs 1)."""
    return CostModel(DENSITIES, MAX_FRAMES, float(getattr(knobs, "cost_weight", 1.0)))


class Run(Protocol):
    """What an interpreter needs of the run an effect belongs to, a query's (QueryRun) or a stream
    frame's (testbed.streams.run.FrameRun): where it books time and bytes, its futures, the stage
    times and sizes its record replays, and, for what one kind alone has, itself as that kind
    (`query_run` or `frame_run`; None for the other)."""

    client: int
    ledger: Ledger

    @property
    def futures(self) -> dict[int, Any]: ...

    @property
    def recorded_s(self) -> Mapping[str, float]: ...

    @property
    def recorded_bytes(self) -> Mapping[str, int]: ...

    @property
    def request_id(self) -> str:
        """What logs call it: the query's id, or a stream frame's `stream:frame`."""

    @property
    def query_run(self) -> QueryRun | None: ...

    @property
    def frame_run(self) -> FrameRun | None: ...


def query_of(run: Run, effect: str) -> QueryRun:
    """`run` as the query's run it is; for a stream frame, a TestbedError naming `effect` (an effect
    whose work depends on the query's record)."""
    query = run.query_run
    if query is None:
        raise TestbedError(f"{effect} here needs a query's record; a stream frame has none")
    return query
