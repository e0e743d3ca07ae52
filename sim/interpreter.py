"""The sim interpreter: turns each effect a policy yields into SimPy time.

Durations come from the query's recorded stage times when the trace has them, else from the
hardware profile; transfers go through the link channels; edge work waits for edge resources.
Results (option logits) come from the trace row, so correctness is the trace's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator

import simpy

from sim import costs
from sim.link import Channel
from testbed.codec.size import TokenFormat, raw_token_bytes, wire_token_bytes
from testbed.errors import TestbedError
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.effects import (TIMED_OUT, Answer, Compress, Decompress, Future, Inference, Infer, Offload,
                                      Payload, Submit, Tokenize, Tokens, Wait)
from testbed.profiles import DeviceProfile, HardwareProfile
from testbed.query import QueryRecord


def _duration(rec: QueryRecord, key: str, model: Callable[[], float]) -> float:
    """The query's recorded stage time under `key` if the trace has one, else the profile's."""
    return rec.recorded_s[key] if key in rec.recorded_s else model()


class Node:
    """A device or the edge: GPU servers and CPU decode workers as SimPy resources."""

    def __init__(self, env: simpy.Environment, profile: DeviceProfile, gpus: int, decode_workers: int) -> None:
        self.profile = profile
        self.gpu = simpy.Resource(env, capacity=gpus)
        self.cpu = simpy.Resource(env, capacity=decode_workers)
        self.gpu_busy_s = 0.0


@dataclass
class Ledger:
    """Where one query's time and bytes went (sim-internal, mutable while the query runs)."""

    local_s: float = 0.0
    local_queue_s: float = 0.0
    uplink_s: float = 0.0
    edge_queue_s: float = 0.0
    edge_s: float = 0.0
    downlink_s: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    frames: int = 0
    decoded: int = 0

    def add(self, where: str, waited: float, worked: float) -> None:
        if where == "local":
            self.local_queue_s += waited
            self.local_s += worked
        else:
            self.edge_queue_s += waited
            self.edge_s += worked


@dataclass
class QueryRun:
    """One query in flight: its trace row, its client, its ledger and the futures it started."""

    rec: QueryRecord
    client: int
    ledger: Ledger = field(default_factory=Ledger)
    futures: dict[int, simpy.Process] = field(default_factory=dict)


@dataclass
class World:
    """Everything one policy's run shares: the clock, the edge, and per client a device and a link
    (`uplinks[i]`, `downlinks[i]`; clients on one shared link hold the same Channel)."""

    env: simpy.Environment
    profile: HardwareProfile
    uplinks: list[Channel]
    downlinks: list[Channel]
    edge: Node
    devices: list[Node]
    token_format: TokenFormat
    chunk_frames: int
    results: list[dict[str, Any]] = field(default_factory=list)


class SimInterpreter:
    """Runs policy generators for queries inside a World."""

    def __init__(self, world: World, spec: PolicySpec, ctx: PolicyContext) -> None:
        self.w = world
        self.spec = spec
        self.ctx = spec.context(ctx)
        self._ids = itertools.count()

    # -- one query ------------------------------------------------------------------------------
    def run_query(self, rec: QueryRecord, client: int) -> Generator[simpy.Event, Any, Answer]:
        env = self.w.env
        ctx = replace(self.ctx, hindsight=rec.hindsight()) if self.spec.needs_hindsight else self.ctx
        run = QueryRun(rec, client)
        ledger = run.ledger
        submit = env.now
        gen = self.spec.fn(rec.query, ctx)
        value: Any = None
        while True:
            try:
                effect = gen.send(value)
            except StopIteration as stop:
                answer: Answer = stop.value
                break
            value = yield from self.perform(effect, run)
        done = env.now
        self.w.results.append({
            "policy": self.spec.name, "query_id": rec.query.query_id, "benchmark": rec.query.benchmark,
            "client": client, "submit_s": submit, "done_s": done, "delay_s": done - submit,
            "choice": answer.choice, "answer": rec.answer, "correct": answer.choice == rec.answer,
            "served_by": answer.served_by, "density": answer.density, "confidence": answer.confidence,
            "bytes_up": ledger.bytes_up, "bytes_down": ledger.bytes_down, "frames": ledger.frames,
            "decoded_frames": ledger.decoded, "t_local_s": ledger.local_s, "t_local_queue_s": ledger.local_queue_s,
            "t_uplink_s": ledger.uplink_s, "t_edge_queue_s": ledger.edge_queue_s, "t_edge_s": ledger.edge_s,
            "t_downlink_s": ledger.downlink_s,
        })
        return answer

    # -- effects --------------------------------------------------------------------------------
    def perform(self, effect: Any, run: QueryRun) -> Generator[simpy.Event, Any, Any]:
        """Carry out one effect in simulated time and return its result."""
        rec, client, ledger = run.rec, run.client, run.ledger
        if isinstance(effect, Tokenize):
            if effect.where != "local":
                raise TestbedError("Tokenize at the edge only runs inside an Offload")
            return (yield from self._tokenize(self.w.devices[client], "local", effect, rec, ledger))
        if isinstance(effect, Infer):
            if effect.where != "local" or effect.tokens is None:
                raise TestbedError("Infer at the edge only runs inside an Offload")
            node = self.w.devices[client]
            key = costs.stage_key("local", "infer", effect.model, f"a{effect.density}")
            tokens = effect.tokens
            dur = _duration(rec, key, lambda: costs.infer_cost(node.profile, tokens.frames, effect.density,
                                                               effect.text_tokens))
            yield from self._hold(node, node.gpu, dur, ledger, "local")
            return self._inference(effect, rec)
        if isinstance(effect, Compress):
            node = self.w.devices[client]
            fmt = self.w.token_format
            frames = effect.tokens.frames
            key = costs.stage_key("local", "compress", f"a{effect.density}")
            dur = _duration(rec, key, lambda: costs.compress_cost(node.profile, frames, effect.density, fmt))
            ledger.local_s += dur
            yield self.w.env.timeout(dur)
            return Payload("tokens", wire_token_bytes(frames, effect.density, fmt),
                           raw_token_bytes(frames, effect.density, fmt), frames, effect.density)
        if isinstance(effect, Offload):
            return (yield from self._offload(effect, run))
        if isinstance(effect, Submit):
            fid = next(self._ids)
            run.futures[fid] = self.w.env.process(self.perform(effect.effect, run))
            return Future(fid)
        if isinstance(effect, Wait):
            proc = run.futures.get(effect.future.id)
            if proc is None:
                raise TestbedError(f"{self.spec.name} waits on a future it did not submit")
            if effect.timeout_s is None:
                return (yield proc)
            timer = self.w.env.timeout(effect.timeout_s)
            fired = yield proc | timer
            return fired[proc] if proc in fired else TIMED_OUT
        raise TestbedError(f"the sim interpreter cannot perform {type(effect).__name__} here")

    def _hold(self, node: Node, res: simpy.Resource, dur: float, ledger: Ledger, where: str):
        """Wait for `res`, hold it `dur` seconds, and book the wait and the work."""
        env = self.w.env
        t0 = env.now
        with res.request() as req:
            yield req
            waited = env.now - t0
            yield env.timeout(dur)
        ledger.add(where, waited, dur)
        if res is node.gpu:
            node.gpu_busy_s += dur

    def _inference(self, eff: Infer, rec: QueryRecord) -> Inference:
        if eff.model == "small":
            return Inference("small", rec.small_logits)
        if eff.shared_encoder:
            if eff.density not in rec.large_logits:
                raise TestbedError(f"the trace has no large-model logits at density {eff.density}")
            return Inference("large", rec.large_logits[eff.density])
        return Inference("large", rec.large_native_logits)

    def _offload(self, eff: Offload, run: QueryRun):
        env, w = self.w.env, self.w
        rec, ledger = run.rec, run.ledger
        up = sum(p.nbytes for p in eff.payloads)
        t0 = env.now
        yield from w.uplinks[run.client].transfer(up)
        ledger.uplink_s += env.now - t0
        ledger.bytes_up += up
        tokens = next((Tokens(p.frames, 0, p.density, "edge") for p in eff.payloads if p.kind == "tokens"), None)
        result: Any = None
        dev = w.edge.profile
        for step in eff.steps:
            if isinstance(step, Decompress):
                raw = step.payload.raw_bytes
                dur = _duration(rec, costs.stage_key("edge", "decompress", f"a{step.payload.density}"),
                                lambda: costs.decompress_cost(dev, raw))
                ledger.edge_s += dur
                yield env.timeout(dur)
                result = tokens
            elif isinstance(step, Tokenize):
                tokens = yield from self._tokenize(w.edge, "edge", step, rec, ledger)
                result = tokens
            elif isinstance(step, Infer):
                src = step.tokens or tokens
                if src is None:
                    raise TestbedError("an edge Infer needs tokens: upload them or Tokenize at the edge first")
                key = costs.stage_key("edge", "infer", step.model, "shared" if step.shared_encoder else "native",
                                      f"a{step.density}")
                frames, density, text = src.frames, step.density, step.text_tokens
                dur = _duration(rec, key, lambda: costs.infer_cost(dev, frames, density, text))
                yield from self._hold(w.edge, w.edge.gpu, dur, ledger, "edge")
                result = self._inference(step, rec)
            else:
                raise TestbedError(f"{type(step).__name__} cannot run at the edge")
        t0 = env.now
        yield from w.downlinks[run.client].transfer(eff.reply_bytes)
        ledger.downlink_s += env.now - t0
        ledger.bytes_down += eff.reply_bytes
        return result

    def _tokenize(self, node: Node, where: str, eff: Tokenize, rec: QueryRecord, ledger: Ledger):
        """Tokenize on a node: a sequential tokenizer decodes on a CPU worker, then preprocesses and
        encodes on a GPU; a pipelined one holds both for the overlapped makespan."""
        env = self.w.env
        cost = costs.tokenize_cost(node.profile, eff.video, eff.sampler, eff.pipelined, self.w.chunk_frames)
        key = costs.stage_key(where, "tokenize", eff.sampler.kind, "pipelined" if eff.pipelined else "sequential")
        if eff.pipelined or key in rec.recorded_s:
            dur = _duration(rec, key, lambda: cost.total_s)
            t0 = env.now
            with node.cpu.request() as cpu, node.gpu.request() as gpu:
                yield cpu & gpu
                waited = env.now - t0
                yield env.timeout(dur)
            ledger.add(where, waited, dur)
            node.gpu_busy_s += dur
        else:
            yield from self._hold(node, node.cpu, cost.decode_s, ledger, where)
            yield from self._hold(node, node.gpu, cost.preprocess_s + cost.encode_s, ledger, where)
        ledger.frames, ledger.decoded = cost.frames, cost.decoded
        return Tokens(cost.frames, cost.decoded, 0, where,  # type: ignore[arg-type]
                      (("decode", cost.decode_s), ("preprocess", cost.preprocess_s), ("encode", cost.encode_s)))
