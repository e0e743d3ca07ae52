"""Where each effect may run, and how an Offload's steps feed each other: written once, here,
for every interpreter (sim, in-process, live edge) and the tests.

A policy's own effects run on the device ("local"); an Offload's steps run at the edge. An edge
step's tokens come from the step before it (a Decompress of an uploaded payload, or a Tokenize of
the uploaded media), which is what `Infer(tokens=None)` means. Tokenize steps that follow each other
(seed 003's global and local views) hand the next Infer their tokens together, frames in order.
"""

from __future__ import annotations

from dataclasses import replace
from types import GeneratorType
from typing import Any
from collections.abc import Callable, Generator

from testbed.codec.size import text_bytes
from testbed.errors import TestbedError
from testbed.policies.effects import (Compress, Crop, Decompress, Describe, EdgeStep, Emit, Infer, Inspect, NextFrame,
                                      Offload, Submit, Tokenize, Tokens, Wait, WaitAny)

ALLOWED: dict[type, frozenset[str]] = {
    Tokenize: frozenset({"local", "edge"}),
    Infer: frozenset({"local", "edge"}),
    Compress: frozenset({"local"}),
    Decompress: frozenset({"edge"}),
    Describe: frozenset({"local"}),
    Inspect: frozenset({"local"}),
    Crop: frozenset({"local"}),
    Offload: frozenset({"local"}),
    Submit: frozenset({"local"}),
    Wait: frozenset({"local"}),
    WaitAny: frozenset({"local"}),
    NextFrame: frozenset({"local"}),
    Emit: frozenset({"local"}),
}
"""The sites each effect may run on: "local" (yielded by a policy) or "edge" (a step of an Offload)."""
EDGE_TYPES = frozenset(t for t, sites in ALLOWED.items() if "edge" in sites)
LOCAL_TYPES = frozenset(t for t, sites in ALLOWED.items() if "local" in sites)


class PlacementError(TestbedError):
    """A policy asked for an effect where it cannot run, or wired an Offload's steps wrongly."""


def check_placement(effect: Any, site: str) -> None:
    """Raise PlacementError unless `effect` may run on `site`."""
    allowed = ALLOWED.get(type(effect))
    if allowed is None:
        raise PlacementError(f"{type(effect).__name__} is not an effect")
    if site not in allowed:
        where = "a policy's own effect" if site == "local" else "an Offload step"
        raise PlacementError(f"{type(effect).__name__} cannot be {where}; it runs on: {', '.join(sorted(allowed))}")


def check_offload(off: Offload) -> None:
    """An Offload is well formed: edge steps only, each fed by what came before, ending in Infer."""
    if not off.steps:
        raise PlacementError("an Offload needs at least one step")
    media = set()
    for p in off.payloads:
        if p.media is not None:
            media.add(id(p.media))
    has_tokens = False
    for step in off.steps:
        if type(step) not in EDGE_TYPES:
            check_placement(step, "edge")
        if isinstance(step, Decompress):
            if not any(step.payload is p for p in off.payloads):
                raise PlacementError("Decompress at the edge needs its payload among the Offload's payloads")
            has_tokens = True
        elif isinstance(step, Tokenize):
            if id(step.media) not in media:
                raise PlacementError("Tokenize at the edge needs its media file among the Offload's payloads")
            has_tokens = True
        elif isinstance(step, Infer) and step.tokens is None and not has_tokens:
            raise PlacementError("an edge Infer needs tokens: upload them (Decompress) or Tokenize at the edge first")
    if not isinstance(off.steps[-1], Infer):
        raise PlacementError("an Offload's last step must be an Infer (its answer is what comes back)")


def run_steps(off: Offload, perform: Callable[[EdgeStep], Any]) -> Generator[Any, Any, Any]:
    """Run an Offload's steps in order with `perform` (a plain value or a generator to delegate to),
    feeding each Infer without tokens the tokens of the step before (of the Tokenize steps right
    before it, joined); returns the last result."""
    current: Tokens | None = None
    result: Any = None
    previous: Any = None
    for step in off.steps:
        if type(step) is Infer and step.tokens is None:
            step = step.with_tokens(current)
        out = perform(step)
        result = (yield from out) if type(out) is GeneratorType else out
        if type(result) is Tokens:
            joined = type(step) is Tokenize and type(previous) is Tokenize and current is not None
            current = join_tokens(current, result) if joined else result  # type: ignore[arg-type]
        previous = step
    return result


def join_tokens(a: Tokens, b: Tokens) -> Tokens:
    """Two views' tokens as one sequence (seed 003: the global view, then the local one): frames
    add up, real tensors are concatenated along frames (same encoder, so the same tokens per frame)."""
    if a.encoder != b.encoder:
        raise PlacementError("views joined for one Infer must come from the same encoder")
    data = None
    if a.data is not None and b.data is not None:
        import torch

        data = torch.cat([a.data, b.data], dim=0)
    return replace(a, frames=a.frames + b.frames, decoded=a.decoded + b.decoded, data=data,
                   views=a.views + b.views)


def prompts(off: Offload) -> list[tuple[str, tuple[str, ...]]]:
    """The distinct (question, options) the Offload's Infer steps need at the edge."""
    seen: dict[tuple[str, tuple[str, ...]], None] = {}
    for step in off.steps:
        if type(step) is Infer:
            seen[(step.question, step.options)] = None
    return list(seen)


def upload_bytes(off: Offload) -> int:
    """Bytes an Offload sends up: its payloads (those not already held at the edge) plus the text of
    the prompts it needs at the edge."""
    return sum(p.nbytes for p in off.payloads if not p.held) + sum(text_bytes(q, o) for q, o in prompts(off))

