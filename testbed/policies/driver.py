"""The one driver every interpreter and the tests use to run a policy, and the interpreter base.

`drive` sends each effect's result into the policy generator, or throws a `PolicyInterrupt`
(the edge is unreachable, a deadline passed) in at the effect that caused it, as SimPy drives its
processes. An interpreter performs an effect with one method per effect type (`HANDLERS`); a
method may return its result, or a generator to delegate to (the sim yields SimPy events from
it). The driver is itself a generator: the sim runs it as a SimPy process, real interpreters run
it with `run_sync` (their methods never yield), tests with scripted methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import GeneratorType
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Generator

from testbed.errors import TestbedError
from testbed.policies.effects import (HANDLERS, Answer, Compress, Crop, Decompress, Describe, Emit, Infer, Inspect,
                                      NextFrame, Offload, Policy, PolicyInterrupt, StreamDone, StreamPolicy, Submit,
                                      Tokenize, Wait, WaitAny)
from testbed.policies.placement import ALLOWED, check_placement

if TYPE_CHECKING:
    from testbed.ledger import QueryRun, Run
    from testbed.streams.run import FrameRun, StreamRun

Perform = Callable[[Any], Any]


def drive(policy: Policy | StreamPolicy, perform: Perform) -> Generator[Any, Any, Any]:
    """Run `policy` to its Answer (a stream policy: to StreamDone), performing each effect it
    yields with `perform`."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = policy.send(value) if error is None else policy.throw(error)
        except StopIteration as stop:
            if not isinstance(stop.value, (Answer, StreamDone)):
                raise TestbedError(f"a policy must return an Answer (a stream policy StreamDone), not "
                                   f"{type(stop.value).__name__}") from None
            return stop.value
        error = None
        try:
            out = perform(effect)
            value = (yield from out) if type(out) is GeneratorType else out
        except PolicyInterrupt as exc:
            value, error = None, exc


def run_sync(gen: Generator[Any, Any, Any]) -> Any:
    """Run a driver whose effects never yield (a real interpreter's) and return its result."""
    try:
        step = next(gen)
    except StopIteration as stop:
        return stop.value
    gen.close()
    raise TestbedError(f"an interpreter yielded {step!r}; real interpreters return results directly")


class Interpreter(ABC):
    """Performs effects: one method per effect type, named in `HANDLERS`. A subclass that lacks a
    method cannot be instantiated, so a missing effect fails at start-up, not in mid-run.

    Each method takes (effect, run, site) and returns the result or a generator. `run` is what the
    effect belongs to (testbed.ledger.Run: a query's run or a stream frame's; the query's run for the
    effects only queries make, Describe, Inspect and Crop; the stream's run before its first frame
    for NextFrame and Emit) and `site` is "local" or "edge" (a step of an Offload)."""

    def __init__(self) -> None:
        self._handlers: dict[type, Callable[[Any, Any, str], Any]] = {
            cls: getattr(self, name) for cls, name in HANDLERS.items()}
        self._placed: dict[str, dict[type, Callable[[Any, Any, str], Any]]] = {
            site: {cls: h for cls, h in self._handlers.items() if site in ALLOWED.get(cls, ())}
            for site in ("local", "edge")}  # the methods of the effects each site may run

    def perform(self, effect: Any, run: Run | StreamRun, site: str = "local") -> Any:
        """Check where `effect` may run, then hand it to its method."""
        placed = self._placed.get(site)
        handler = placed.get(type(effect)) if placed is not None else None
        if handler is None:
            check_placement(effect, site)  # says why it may not run here
            handler = self._handlers[type(effect)]
        return handler(effect, run, site)

    @abstractmethod
    def tokenize(self, eff: Tokenize, run: Run, site: str) -> Any: ...

    @abstractmethod
    def infer(self, eff: Infer, run: Run, site: str) -> Any: ...

    @abstractmethod
    def compress(self, eff: Compress, run: Run, site: str) -> Any: ...

    @abstractmethod
    def decompress(self, eff: Decompress, run: Run, site: str) -> Any: ...

    @abstractmethod
    def describe(self, eff: Describe, run: QueryRun, site: str) -> Any: ...

    @abstractmethod
    def inspect(self, eff: Inspect, run: QueryRun, site: str) -> Any: ...

    @abstractmethod
    def crop(self, eff: Crop, run: QueryRun, site: str) -> Any: ...

    @abstractmethod
    def offload(self, eff: Offload, run: Run, site: str) -> Any: ...

    @abstractmethod
    def submit(self, eff: Submit, run: Run, site: str) -> Any: ...

    @abstractmethod
    def wait(self, eff: Wait, run: Run, site: str) -> Any: ...

    @abstractmethod
    def wait_any(self, eff: WaitAny, run: Run, site: str) -> Any: ...

    @abstractmethod
    def next_frame(self, eff: NextFrame, run: FrameRun | StreamRun, site: str) -> Any: ...

    @abstractmethod
    def emit(self, eff: Emit, run: FrameRun | StreamRun, site: str) -> Any: ...
