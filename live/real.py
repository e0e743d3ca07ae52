"""The real interpreter: performs every effect for real (tokenizer, the model pair, the codec) and
books measured times in the query's ledger, under the stage keys the sim replays.

Nodes are the local devices (one per client) and the edge, each with its models and a semaphore
per GPU server, so that work queues as in the sim. An Offload goes to an `EdgeLink`: in one
process (`InProcEdge`) the edge steps run here with no network; live mode puts a ZeroMQ link there.
The clock is read here (live/), never in the core.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future as CFuture, ThreadPoolExecutor
from concurrent.futures import TimeoutError as CTimeout
from concurrent.futures import wait as cwait
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from testbed.codec.merge import merge_to_density
from testbed.codec.size import REPLY_BYTES
from testbed.codec.wire import DEFAULT_MAX_BYTES, decode_message, encode_message
from testbed.errors import TestbedError
from testbed.models.pair import VLMPair
from testbed.policies.driver import Interpreter, run_sync
from testbed.policies.effects import (TIMED_OUT, Compress, Decompress, Emit, Future, Inference, Infer, NextFrame, Offload,
                                      Payload, Submit, Tokenize, Tokens, Wait, WaitAny)
from testbed.policies.placement import check_offload, run_steps, upload_bytes
from testbed.query import ImageMeta
from testbed.results import QueryRun, compress_key, decompress_key, infer_key, tokenize_key
from testbed.tokenizer.pipeline import Tokenizer

Clock = Callable[[], float]
WIRE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class RealNode:
    """A device or the edge: the model pair, a tokenizer per encoder, and its GPU servers."""

    pair: VLMPair
    gpus: int = 1
    chunk_frames: int = 16
    clock: Clock = time.perf_counter
    tokenizers: dict[str, Tokenizer] = field(init=False)
    gpu: threading.Semaphore = field(init=False)
    busy_s: float = 0.0

    def __post_init__(self) -> None:
        self.gpu = threading.BoundedSemaphore(self.gpus)
        self.tokenizers = {name: Tokenizer(enc, self.clock, chunk_frames=self.chunk_frames)
                           for name, enc in self.pair.encoders.items()}
        self._lock = threading.Lock()

    def hold(self, work: Callable[[], Any]) -> tuple[Any, float, float]:
        """Run `work` on one of the node's GPU servers: (result, seconds waited, seconds worked)."""
        t0 = self.clock()
        with self.gpu:
            t1 = self.clock()
            out = work()
            t2 = self.clock()
        with self._lock:
            self.busy_s += t2 - t1
        return out, t1 - t0, t2 - t1

    def close(self) -> None:
        for tok in self.tokenizers.values():
            tok.close()


class EdgeLink(Protocol):
    """Carries an Offload to the edge and back; books link and edge time in the query's ledger."""

    def offload(self, interp: "RealInterpreter", off: Offload, run: QueryRun) -> Inference: ...


class InProcEdge:
    """No network: the edge's steps run in this process on the edge node."""

    def offload(self, interp: "RealInterpreter", off: Offload, run: QueryRun) -> Inference:
        up = upload_bytes(off)
        result = run_sync(run_steps(off, lambda step: interp.perform(step, run, "edge")))
        with interp.lock:
            run.ledger.bytes_up += up
            run.ledger.bytes_down += REPLY_BYTES
        return result


class RealInterpreter(Interpreter):
    """Executes effects for real; one instance per policy run, shared by its clients' threads."""

    def __init__(self, devices: list[RealNode], edge: RealNode, link: EdgeLink, *, wire_dtype: str = "fp16",
                 zstd_level: int = 3, max_message_bytes: int = DEFAULT_MAX_BYTES, clock: Clock = time.perf_counter,
                 async_workers: int = 4) -> None:
        super().__init__()
        self.devices, self.edge, self.link = devices, edge, link
        self.wire_dtype = WIRE_DTYPES[wire_dtype]
        self.zstd_level, self.max_message_bytes = zstd_level, max_message_bytes
        self.clock = clock
        self.lock = threading.Lock()  # ledgers are booked from several threads (futures)
        self._ids = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=async_workers, thread_name_prefix="future")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def node(self, run: QueryRun, site: str) -> RealNode:
        return self.devices[run.client] if site == "local" else self.edge

    def _book(self, run: QueryRun, site: str, key: str, waited: float, worked: float) -> None:
        with self.lock:
            run.ledger.add(site, waited, worked)
            run.ledger.stage(key, worked)

    # -- effects --------------------------------------------------------------------------------
    def tokenize(self, eff: Tokenize, run: QueryRun, site: str) -> Tokens:
        media = eff.media
        if not media.path:
            raise TestbedError(f"query {run.rec.query.query_id}: its media has no file (a trace row); real runs "
                               "need files: give a manifest (workload.kind = 'manifest')")
        node = self.node(run, site)
        tok = node.tokenizers[eff.encoder]
        if isinstance(media, ImageMeta):
            r, waited, worked = node.hold(lambda: tok.image(media.path))
        else:
            r, waited, worked = node.hold(lambda: tok(media.path, eff.sampler, pipelined=eff.pipelined, meta=media))
        self._book(run, site, tokenize_key(site, eff), waited, worked)
        with self.lock:
            run.ledger.frames, run.ledger.decoded = r.frames, r.decoded
        return Tokens(r.frames, r.decoded, 0, site, eff.encoder, r.tokens)  # type: ignore[arg-type]

    def infer(self, eff: Infer, run: QueryRun, site: str) -> Inference:
        tokens = eff.tokens
        if tokens is None or tokens.data is None:
            raise TestbedError("Infer needs real tokens (tokens=None means the step before it, inside an Offload)")
        node = self.node(run, site)
        model = node.pair.models[eff.model]
        vision = to_density(tokens.data, eff.density)
        logits, waited, worked = node.hold(lambda: model.option_logits(vision, eff.question, eff.options))
        self._book(run, site, infer_key(site, eff.model, tokens, eff.density), waited, worked)
        return Inference(eff.model, logits)

    def compress(self, eff: Compress, run: QueryRun, site: str) -> Payload:
        tokens = eff.tokens
        if tokens.data is None:
            raise TestbedError("Compress needs real tokens")
        t0 = self.clock()
        merged = to_density(tokens.data, eff.density).to("cpu", self.wire_dtype)
        msg = encode_message(merged, level=self.zstd_level)
        dur = self.clock() - t0
        self._book(run, "local", compress_key(eff.density), 0.0, dur)
        return Payload("tokens", len(msg), merged.numel() * merged.element_size(), tokens.frames, eff.density,
                       tokens.encoder, data=msg)

    def decompress(self, eff: Decompress, run: QueryRun, site: str) -> Tokens:
        p = eff.payload
        if p.data is None:
            raise TestbedError("Decompress needs the payload's bytes")
        t0 = self.clock()
        msg = decode_message(p.data, max_bytes=self.max_message_bytes)
        tokens = msg.tokens.float()
        dur = self.clock() - t0
        self._book(run, "edge", decompress_key(p.density), 0.0, dur)
        return Tokens(p.frames, 0, msg.density, "edge", p.encoder, tokens)

    def offload(self, eff: Offload, run: QueryRun, site: str) -> Inference:
        check_offload(eff)
        return self.link.offload(self, eff, run)

    def submit(self, eff: Submit, run: QueryRun, site: str) -> Future:
        fid = next(self._ids)
        with self.lock:
            run.futures[fid] = self._pool.submit(lambda: run_sync_value(self.perform(eff.effect, run)))
        return Future(fid)

    def _future(self, run: QueryRun, f: Future) -> CFuture:
        fut = run.futures.get(f.id)
        if fut is None:
            raise TestbedError("a policy waits on a future it did not submit")
        return fut

    def wait(self, eff: Wait, run: QueryRun, site: str) -> Any:
        fut = self._future(run, eff.future)
        try:
            return fut.result(timeout=eff.timeout_s)
        except CTimeout:
            return TIMED_OUT

    def wait_any(self, eff: WaitAny, run: QueryRun, site: str) -> Any:
        futs = [self._future(run, f) for f in eff.futures]
        done, _ = cwait(futs, timeout=eff.timeout_s, return_when=FIRST_COMPLETED)
        for i, fut in enumerate(futs):
            if fut in done:
                return i, fut.result()
        return TIMED_OUT


    def next_frame(self, eff: NextFrame, run: Any, site: str) -> Any:
        raise TestbedError("camera streams run for real with `testbed live SCENARIO --inproc` on a stream scenario")

    def emit(self, eff: Emit, run: Any, site: str) -> Any:
        raise TestbedError("camera streams run for real with `testbed live SCENARIO --inproc` on a stream scenario")


def run_sync_value(out: Any) -> Any:
    """An effect's result: real methods return values; a generator here would be a bug."""
    if hasattr(out, "send"):
        return run_sync(out)
    return out


def to_density(tokens: torch.Tensor, density: int) -> torch.Tensor:
    """(F, N, D) tokens merged to (F, density, D) by ToMe matching; unchanged if N == density."""
    n = tokens.shape[1]
    if n == density:
        return tokens
    if n < density:
        raise TestbedError(f"density {density} exceeds the {n} tokens per frame the tokens hold")
    return merge_to_density(tokens, density)[0]
