"""The sim interpreter: turns each effect a policy yields into SimPy time, one method per effect.

Durations come from the query's recorded stage times when the trace has them, else from the
hardware profile; transfers go through the link channels; work waits for node resources.
Results (option logits) come from the trace row, so correctness is the trace's. The driver, the
placement rules and the Offload's dataflow are the core's (testbed.policies), shared with every
other interpreter.
"""

from __future__ import annotations

import copy
import functools
import itertools
from functools import partial
from types import GeneratorType
from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Callable, Generator

import simpy

from testbed.sim import costs
from testbed.sim.link import Channel
from testbed.codec.size import REPLY_BYTES, TokenFormat, raw_token_bytes, text_tokens, wire_token_bytes
from testbed.crop import GENERIC_PROMPT, CropError, check_box, crop_side, min_entropy, view_size
from testbed.errors import TestbedError
from testbed.policies.base import PolicyContext, PolicySpec
from testbed.policies.driver import Interpreter, drive
from testbed.policies.effects import (END_OF_STREAM, TIMED_OUT, Compress, ContextInputs, Crop, Decompress, Describe,
                                      EdgeUnavailable, Emit, FrameAnswer, Future, Inference, Infer, InputSignals,
                                      Inspect, ModelName, NextFrame, Offload, Payload, Submit, Tokenize, Tokens, Wait,
                                      WaitAny)
from testbed.policies.placement import check_offload, run_steps, upload_bytes
from testbed.profiles import DeviceProfile, HardwareProfile
from testbed.query import ImageMeta, QueryRecord, ViewOutcomes
from testbed.ledger import (REQUEST_KEY, Ledger, QueryRun, Run, compress_key, crop_key, decompress_key, describe_key,
                            fallback_key, frame_infer_key, infer_key, inspect_key, locate_key, query_of, sampler_kind,
                            view_key)
from testbed.tokenizer.sampling import DEFAULT_SAMPLER
from testbed.streams.focus import ggvr_patches, patch_grid
from testbed.streams.labels import labels_of
from testbed.streams.run import FrameRun, StreamRun
from testbed.streams.trace import FrameRecord

SimGen = Generator[simpy.Event, Any, Any]



def _ggvr_count(eff: Infer, run: FrameRun) -> int:
    """Tokens GGVR adds to a stream frame's small-model input (Eq. 6): the context frame's patches
    inside the large answer's regions, on the stream's patch grid (0 without GGVR or regions)."""
    ctx = eff.context
    if ctx is None or "ggvr" not in eff.focus or not ctx.answer.rois:
        return 0
    s = run.stream
    grid = patch_grid(s.vision_tokens, s.rec.width, s.rec.height)
    return len(ggvr_patches(ctx.answer.rois, s.rec.width, s.rec.height, grid))

@functools.lru_cache(maxsize=1 << 16)
def _text_tokens(question: str, options: tuple[str, ...]) -> int:
    """`text_tokens` memoized: every policy prompts with the same questions."""
    return text_tokens(question, options)


@functools.lru_cache(maxsize=4096)
def _infer_key(site: str, model: ModelName, encoder: ModelName, sampler: str, views: tuple[str, ...],
               density: int) -> str:
    """`infer_key` memoized on what it depends on."""
    tokens = Tokens(0, 0, 0, site, encoder, sampler, views=views)  # type: ignore[arg-type]
    return infer_key(site, model, tokens, density)


_compress_key = functools.lru_cache(maxsize=4096)(compress_key)
_decompress_key = functools.lru_cache(maxsize=4096)(decompress_key)


def _duration(run: Run, key: str, model: Callable[[], float]) -> float:
    """The run's recorded stage time under `key` if the trace has one, else the profile's."""
    recorded = run.recorded_s
    return recorded[key] if key in recorded else model()


def _split(run: Run, key: str, *parts: float) -> tuple[float, ...]:
    """A stage made of parts: the profile's part times, or the recorded total split in their proportion."""
    recorded = run.recorded_s
    if key not in recorded:
        return parts
    total = sum(parts)
    share = [p / total for p in parts] if total > 0 else [1.0 / len(parts)] * len(parts)
    return tuple(recorded[key] * w for w in share)


_VIEW_LOGITS = {("global",): "global_logits", ("global", "crop"): "crop_logits",
                ("global", "crop-random"): "random_logits", ("full",): "full_logits"}
"""Which of a crop trace's logits the large model gives for the views it sees (seed 003)."""


def _views(rec: QueryRecord) -> ViewOutcomes:
    if rec.views is None:
        raise TestbedError(f"query {rec.query.query_id}: the trace has no crop outcomes (view_* columns, schema v3); "
                           "seed 003's policies need them: use workload.kind = 'synthetic-crop' or record them")
    return rec.views


class Node:
    """A device or the edge: GPU servers and CPU decode workers as SimPy resources."""

    def __init__(self, env: simpy.Environment, profile: DeviceProfile, gpus: int, decode_workers: int) -> None:
        self.profile = profile
        self.large_encoder = profile.with_encoder("large")  # a device tokenizing for the large model (Collaborative)
        self.gpu = simpy.Resource(env, capacity=gpus)
        self.cpu = simpy.Resource(env, capacity=decode_workers)
        self.gpu_busy_s = 0.0


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
    runs: list[QueryRun] = field(default_factory=list)
    streams: list[StreamRun] = field(default_factory=list)
    edge_timeout_s: float | None = None  # a replayed live run's: an Offload unanswered by then falls back


class SimInterpreter(Interpreter):
    """Runs policy generators for queries inside a World."""

    def __init__(self, world: World, spec: PolicySpec, ctx: PolicyContext) -> None:
        super().__init__()
        self.w = world
        self.spec = spec
        self.ctx = ctx
        self._ids = itertools.count()

    # -- one query ------------------------------------------------------------------------------
    def run_query(self, rec: QueryRecord, client: int) -> SimGen:
        """SimPy process body: run the policy on one query; its row is built when the run ends,
        so that work of futures it never waited for is in it."""
        env = self.w.env
        ctx = replace(self.ctx, hindsight=rec.hindsight()) if self.spec.needs_hindsight else self.ctx
        run = QueryRun(rec, client, env.now)
        run.answer = yield from drive(self.spec.fn(rec.query, ctx), partial(self.perform, run=run))
        run.done_s = env.now
        self.w.runs.append(run)

    def run_stream(self, run: StreamRun) -> SimGen:
        """SimPy process body: run the policy over one stream, which starts now. Each effect goes
        to the run of the frame current when it was yielded."""
        run.start_s = self.w.env.now
        self.w.streams.append(run)

        def perform(e: Any) -> Any:
            return self.perform(e, run.current if run.current is not None else run)

        yield from drive(self.spec.fn(run.view(), self.ctx), perform)

    # -- effects --------------------------------------------------------------------------------
    def tokenize(self, eff: Tokenize, run: Run, site: str) -> SimGen:
        """A sequential tokenizer decodes on a CPU worker, then preprocesses and encodes on a GPU;
        a pipelined one holds both for the overlapped makespan."""
        env, ledger, recorded = self.w.env, run.ledger, run.recorded_s
        node = self.w.devices[run.client] if site == "local" else self.w.edge
        prof = node.large_encoder if site == "local" and eff.encoder == "large" else node.profile
        cost, key = costs.tokenize_cost_key(prof, eff, site, self.w.chunk_frames)
        t0 = env.now
        if eff.pipelined or key in recorded:
            dur = recorded[key] if key in recorded else cost.total_s
            with node.cpu.request() as cpu, node.gpu.request() as gpu:
                yield cpu & gpu
                waited = env.now - t0
                yield env.timeout(dur)
            ledger.add(site, waited, dur)
            node.gpu_busy_s += dur
        else:  # a CPU worker decodes, then a GPU preprocesses and encodes (as _hold, twice)
            dur = cost.decode_s + cost.preprocess_s + cost.encode_s
            with node.cpu.request() as req:
                yield req
                waited = env.now - t0
                yield env.timeout(cost.decode_s)
            ledger.add(site, waited, cost.decode_s)
            gpu_s = cost.preprocess_s + cost.encode_s
            t0 = env.now
            with node.gpu.request() as req:
                yield req
                waited = env.now - t0
                yield env.timeout(gpu_s)
            ledger.add(site, waited, gpu_s)
            node.gpu_busy_s += gpu_s
        ledger.stage(key, dur)
        ledger.frames, ledger.decoded = cost.frames, cost.decoded
        return Tokens(cost.frames, cost.decoded, 0, site, eff.encoder, sampler_kind(eff),  # type: ignore[arg-type]
                      views=eff.views)

    def infer(self, eff: Infer, run: Run, site: str) -> SimGen:
        tokens = eff.tokens
        if tokens is None:
            raise TestbedError("Infer needs tokens (tokens=None means the step before it, inside an Offload only)")
        env, ledger, recorded = self.w.env, run.ledger, run.recorded_s
        node = self.w.devices[run.client] if site == "local" else self.w.edge
        frames, density, frame = tokens.frames, eff.density, run.frame_run
        if frame is not None:
            key, dur = self._frame_infer_time(eff, frame, node, site)
        else:
            key = _infer_key(site, eff.model, tokens.encoder, tokens.sampler, tokens.views, density)
            dur = recorded[key] if key in recorded else \
                costs.infer_cost(node.profile, frames, density, _text_tokens(eff.question, eff.options))
        t0 = env.now
        with node.gpu.request() as req:  # as _hold
            yield req
            waited = env.now - t0
            yield env.timeout(dur)
        ledger.add(site, waited, dur)
        node.gpu_busy_s += dur
        ledger.stage(key, dur)
        if site == "edge":
            ledger.edge_prefill_tokens += frames * density + _text_tokens(eff.question, eff.options)
        if frame is not None:
            grounding = recorded.get(locate_key()) if eff.locate is not None else None
            if grounding:  # a recorded run grounded each category in passes of its own (seed 001's LVLM: in its answer)
                yield from self._hold(node, node.gpu, grounding, ledger, site)
                ledger.stage(locate_key(), grounding)
            return self._frame_inference(eff, frame.rec)
        query = query_of(run, "Infer")
        if tokens.views:
            return (yield from self._view_inference(eff, tokens, query, node))
        return self._inference(eff, tokens, query.rec)

    def _frame_infer_time(self, eff: Infer, run: FrameRun, node: Node, site: str) -> tuple[str, float]:
        """A stream frame's inference: its stage key and time (the recorded one; else the cloud's service
        time for the large model on the edge, Fig. 4, plus what a farther cloud adds; else the profile's,
        counting the tokens GGVR adds to the small model's input)."""
        recorded = run.recorded_s
        if eff.context is not None:
            run.ggvr_tokens = _ggvr_count(eff, run)
        key = frame_infer_key(site, eff.model, eff.context is not None, bool(eff.focus))
        if key in recorded:
            return key, recorded[key]
        if site == "edge" and eff.model == "large":
            return key, float(run.rec.stream.cloud_s[run.rec.index]) + run.stream.cloud_extra_s
        tokens = eff.tokens
        assert tokens is not None
        extra = run.ggvr_tokens if eff.context is not None else 0
        return key, costs.infer_cost(node.profile, tokens.frames, eff.density + extra,
                                     _text_tokens(eff.question, eff.options))

    def _view_inference(self, eff: Infer, tokens: Tokens, run: QueryRun, node: Node) -> SimGen:
        """Seed 003: the trace's logits for these views; with `locate` and a min-entropy above its
        threshold, the trace's attention box, after the relative-attention pass (the generic prompt
        over the same tokens: one more prefill on the edge's GPU)."""
        views = _views(run.rec)
        logits = _VIEW_LOGITS.get(tokens.views)
        if logits is None:
            raise TestbedError(f"the trace has no logits for the views {tokens.views}; it records "
                               f"{', '.join('+'.join(v) for v in _VIEW_LOGITS)}")
        out = getattr(views, logits)
        loc = eff.locate
        if loc is None or min_entropy(out) <= loc.above:
            return Inference(eff.model, out)
        side = crop_side(loc.width, loc.height, loc.scale)
        if (views.box[2] - views.box[0], views.box[3] - views.box[1]) != (min(side, loc.width), min(side, loc.height)):
            raise TestbedError(f"query {run.rec.query.query_id}: the trace's attention box {views.box} is not of the "
                               f"crop size {side} (crop_scale {loc.scale}) the policy asks for: set crop_scale to the "
                               "trace's (its parameters say which)")
        extra = text_tokens(GENERIC_PROMPT, ())
        dur = _duration(run, locate_key(),
                        lambda: costs.infer_cost(node.profile, tokens.frames, eff.density, extra))
        yield from self._hold(node, node.gpu, dur, run.ledger, "edge")
        run.ledger.stage(locate_key(), dur)
        run.ledger.edge_prefill_tokens += tokens.frames * eff.density + extra
        return Inference(eff.model, out, roi=views.box)

    def compress(self, eff: Compress, run: Run, site: str) -> SimGen:
        """Merge where the tokens are (the device GPU that encoded them: ToMe is tensor work), then
        zstd on a device CPU worker (zstd is a CPU library); each waits for its resource, so
        compression contends with tokenization and inference. A recorded total is split between
        the two in the profile's proportion."""
        node, fmt = self.w.devices[run.client], self.w.token_format
        frames, density = eff.tokens.frames, eff.density
        key = _compress_key(eff.tokens.sampler, density)
        merge, zstd = costs.merge_cost(node.profile, frames), costs.zstd_cost(node.profile, frames, density, fmt)
        merge, zstd = _split(run, key, merge, zstd)
        env, ledger = self.w.env, run.ledger
        t0 = env.now
        with node.gpu.request() as req:  # as _hold, twice
            yield req
            waited = env.now - t0
            yield env.timeout(merge)
        ledger.add("local", waited, merge)
        node.gpu_busy_s += merge
        t0 = env.now
        with node.cpu.request() as req:
            yield req
            waited = env.now - t0
            yield env.timeout(zstd)
        ledger.add("local", waited, zstd)
        ledger.stage(key, merge + zstd)
        nbytes = run.recorded_bytes.get(key) or wire_token_bytes(frames, density, fmt)
        run.ledger.size(key, nbytes)
        return Payload("tokens", nbytes, raw_token_bytes(frames, density, fmt), frames, density, eff.tokens.encoder,
                       eff.tokens.sampler)

    def decompress(self, eff: Decompress, run: Run, site: str) -> SimGen:
        """zstd decompression on an edge CPU worker (the pool that decodes EdgeHosted's videos)."""
        p = eff.payload
        key = _decompress_key(p.sampler, p.density)
        env, edge, ledger, recorded = self.w.env, self.w.edge, run.ledger, run.recorded_s
        dur = recorded[key] if key in recorded else costs.decompress_cost(edge.profile, p.raw_bytes)
        t0 = env.now
        with edge.cpu.request() as req:  # as _hold
            yield req
            waited = env.now - t0
            yield env.timeout(dur)
        ledger.add("edge", waited, dur)
        ledger.stage(key, dur)
        return Tokens(p.frames, 0, p.density, "edge", p.encoder, p.sampler)

    def describe(self, eff: Describe, run: QueryRun, site: str) -> ContextInputs | SimGen:
        """The trace's context columns. Free unless the trace recorded the stage: seed 000 reuses
        the small model's own embeddings (SIII-C, "without incurring additional computational
        overhead"); what is left, cosine similarities and three small SVDs, is milliseconds
        against the model's seconds. A recorded time holds the device's GPU for that long."""
        key = describe_key(eff.tokens.sampler)
        if key not in run.rec.recorded_s:
            run.ledger.stage(key, 0.0)
            return run.rec.context
        return self._describe_recorded(run, key)

    def _describe_recorded(self, run: QueryRun, key: str) -> SimGen:
        node, dur = self.w.devices[run.client], run.rec.recorded_s[key]
        yield from self._hold(node, node.gpu, dur, run.ledger, "local")
        run.ledger.stage(key, dur)
        return run.rec.context

    def inspect(self, eff: Inspect, run: QueryRun, site: str) -> SimGen:
        """The trace's signal_* columns; the device decodes the frames they are measured on (a CPU
        worker, for the profile's decode time of those frames, or the recorded time)."""
        signals: InputSignals = run.rec.signals
        if not signals.known:
            raise TestbedError(f"query {run.rec.query.query_id}: the trace has no input signals (signal_* columns, "
                               "schema v2); input-aware routing needs them: regenerate or re-record the trace")
        node = self.w.devices[run.client]
        key = inspect_key(eff.media.kind, eff.sampler.kind)
        dur = _duration(run, key, lambda: costs.inspect_cost(node.profile, eff.media, eff.sampler))
        yield from self._hold(node, node.cpu, dur, run.ledger, "local")
        run.ledger.stage(key, dur)
        return signals

    def crop(self, eff: Crop, run: QueryRun, site: str) -> SimGen:
        """A view of the image from the trace's crop outcomes: its size, and its bytes as recorded
        (a crop box other than the trace's attention box is a random crop, whose bytes and logits the
        trace records for a box of the same size). The device decodes the original on a CPU worker
        (JPEG-encoding a view of at most a megapixel is assumed within that time); "full" sends the
        file itself, nothing to make."""
        views, media = _views(run.rec), eff.media
        if eff.view == "global":
            (w, h), box, view, nbytes = view_size(media.width, media.height, eff.side), None, "global", \
                views.global_bytes
        elif eff.view == "crop":
            try:
                box = check_box(eff.box, media.width, media.height)
            except CropError as exc:
                raise TestbedError(f"query {run.rec.query.query_id}: {exc}") from None
            view = "crop" if box == views.box else "crop-random"
            w, h, nbytes = box[2] - box[0], box[3] - box[1], views.crop_bytes if view == "crop" else views.random_bytes
        else:
            (w, h), box, view, nbytes = (media.width, media.height), None, "full", media.file_bytes
        node = self.w.devices[run.client]
        key = crop_key(view_key(view))
        dur = 0.0 if view == "full" else \
            _duration(run, key, lambda: costs.inspect_cost(node.profile, media, DEFAULT_SAMPLER))
        yield from self._hold(node, node.cpu, dur, run.ledger, "local")
        run.ledger.stage(key, dur)
        run.ledger.size(key, nbytes)
        return Payload("image", nbytes, media=ImageMeta(w, h, nbytes, "", view, box))

    def offload(self, eff: Offload, run: Run, site: str) -> SimGen:
        check_offload(eff)
        run.ledger.round_trips += 1
        recorded = run.recorded_s
        waited = recorded.get(fallback_key(run.ledger.round_trips)) if recorded else None
        if waited is not None:  # the replayed live run's edge did not answer this Offload: neither does this one
            return (yield from self._unanswered(eff, run, waited))
        timeout = self.w.edge_timeout_s
        if timeout is None:
            return (yield from self._offload(eff, run))
        # as live's ZmqEdge: wait at most `timeout`; then the time waited is edge queue, the request's
        # bytes went up, and the policy falls back (the edge still does the work, unbooked)
        shadow = copy.copy(run)
        shadow.ledger = Ledger()
        body = self.w.env.process(self._offload(eff, shadow))
        timer = self.w.env.timeout(timeout)
        fired = yield body | timer
        if body in fired:
            run.ledger.absorb(shadow.ledger)
            return fired[body]
        run.ledger.edge_queue_s += timeout
        run.ledger.bytes_up += upload_bytes(eff)
        raise EdgeUnavailable(f"the edge did not answer within edge_timeout_s = {timeout:g} s")

    def _unanswered(self, eff: Offload, run: Run, waited: float) -> SimGen:
        """An Offload the live run's edge left unanswered: its bytes go up the link, the device waits what
        the live run waited (booked as edge queue, as live's ZmqEdge does), and the policy falls back."""
        up = upload_bytes(eff)
        self.w.env.process(self.w.uplinks[run.client].transfer(up))  # the bytes load the link, answered or not
        yield self.w.env.timeout(waited)
        run.ledger.edge_queue_s += waited
        run.ledger.bytes_up += up
        run.ledger.stage(fallback_key(run.ledger.round_trips), waited)
        raise EdgeUnavailable(f"the replayed live run's edge did not answer this request (waited {waited:g} s)")

    def _offload(self, eff: Offload, run: Run) -> SimGen:
        """Upload, the edge's steps, download: booked in `run`'s ledger."""
        env, w, ledger = self.w.env, self.w, run.ledger
        up = upload_bytes(eff)
        t0 = env.now
        ledger.link_queue_s += yield from w.uplinks[run.client].transfer(up)
        ledger.uplink_s += env.now - t0
        ledger.bytes_up += up
        edge = w.edge.profile
        if REQUEST_KEY in run.recorded_s or "request" in edge.stages:  # taking the request in, on the edge's CPU
            media = sum(p.nbytes for p in eff.payloads if p.kind != "tokens")  # an upload to write and probe
            dur = _duration(run, REQUEST_KEY, lambda: edge.optional("request", media) if media else 0.0)
            t0 = env.now
            with w.edge.cpu.request() as req:  # as _hold
                yield req
                waited = env.now - t0
                yield env.timeout(dur)
            ledger.add("edge", waited, dur)
            ledger.stage(REQUEST_KEY, dur)
        result = yield from run_steps(eff, partial(self.perform, run=run, site="edge"))
        t0 = env.now
        ledger.link_queue_s += yield from w.downlinks[run.client].transfer(REPLY_BYTES)
        reply = edge.optional("reply", REPLY_BYTES)  # the request/reply machinery on the way down
        if reply > 0:
            yield env.timeout(reply)
        ledger.downlink_s += env.now - t0
        ledger.bytes_down += REPLY_BYTES
        return result

    def submit(self, eff: Submit, run: Run, site: str) -> Future:
        fid = next(self._ids)
        out = self.perform(eff.effect, run)
        run.futures[fid] = self.w.env.process(out) if type(out) is GeneratorType else self.w.env.timeout(0, out)
        return Future(fid)

    def _future(self, run: Run, future: Future) -> simpy.Event:
        return future.started(run.futures, self.spec.name)

    def wait(self, eff: Wait, run: Run, site: str) -> SimGen:
        proc = self._future(run, eff.future)
        if eff.timeout_s is None:
            return (yield proc)
        timer = self.w.env.timeout(eff.timeout_s)
        fired = yield proc | timer
        return fired[proc] if proc in fired else TIMED_OUT

    def wait_any(self, eff: WaitAny, run: Run, site: str) -> SimGen:
        procs = [self._future(run, f) for f in eff.futures]
        events = procs + ([self.w.env.timeout(eff.timeout_s)] if eff.timeout_s is not None else [])
        fired = yield simpy.AnyOf(self.w.env, events)
        for i, proc in enumerate(procs):
            if proc in fired:
                return i, fired[proc]
        return TIMED_OUT

    def next_frame(self, eff: NextFrame, run: FrameRun | StreamRun, site: str) -> SimGen:
        stream = run.stream
        if eff.stream_id != stream.rec.stream_id:
            raise TestbedError(f"{self.spec.name} asks for a frame of stream {eff.stream_id!r} while running "
                               f"{stream.rec.stream_id!r}")
        env = self.w.env
        fr = stream.advance()
        if fr is None:
            return END_OF_STREAM
        wait = stream.start_s + fr.rec.time_s - env.now
        if wait > 0:
            yield env.timeout(wait)
        return fr.frame()

    def emit(self, eff: Emit, run: FrameRun | StreamRun, site: str) -> None:
        stream, env = run.stream, self.w.env
        fr = stream.emit(eff.frame_index, eff.answer, env.now - stream.start_s)
        if fr is not None and eff.better is not None:
            until = eff.until_s if eff.until_s is not None else fr.deadline_s
            env.process(self._upgrade(stream, eff, self._future(fr, eff.better), until))

    def _upgrade(self, stream: StreamRun, eff: Emit, proc: simpy.Event, until_s: float) -> SimGen:
        """Adopt the large answer if it arrives by `until_s` (the frame's deadline)."""
        env = self.w.env
        left = stream.start_s + min(until_s, stream.end_s) - env.now
        timer = env.timeout(max(left, 0.0))
        fired = yield proc | timer
        if proc in fired:
            inf = fired[proc]
            answer = FrameAnswer(labels_of(stream.rec.task, inf.option_logits), "large", eff.answer.context_frame)
            stream.upgrade(eff.frame_index, answer, env.now - stream.start_s, until_s)

    # -- helpers --------------------------------------------------------------------------------
    def _hold(self, node: Node, res: simpy.Resource, dur: float, ledger: Ledger, where: str) -> SimGen:
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

    @staticmethod
    def _frame_inference(eff: Infer, rec: FrameRecord) -> Inference:
        """The trace's scores for a stream frame: the large model's, or the small model's with its
        own history, with a large answer `lag` frames old as history, and with focus on it."""
        s, i = rec.stream, rec.index
        if eff.model == "large":
            return Inference("large", s.large[i], rois=s.rois[i] if s.rois and eff.locate is not None else ())
        if eff.context is None:
            return Inference("small", s.small[i])
        lag = eff.context.lag
        if "grvr" in eff.focus:
            table = s.context_focus
        elif "ggvr" in eff.focus:
            table = s.context_ggvr
            if table is None:
                raise TestbedError(f"stream {s.stream_id}: the trace records no small-model scores with GGVR alone "
                                   "(context_ggvr_logits); turn grvr on or record them")
        else:
            table = s.context
        if table is None or not 1 <= lag <= s.max_lag:
            raise TestbedError(f"stream {s.stream_id}: the trace records the small model with a large answer as "
                               f"history up to {s.max_lag} frames old, not {lag} (lower the policy's delta_s)")
        return Inference("small", table[i, lag - 1])

    @staticmethod
    def _inference(eff: Infer, tokens: Tokens, rec: QueryRecord) -> Inference:
        """The trace's logits for this model variant: the small model, the large model on the small
        model's encoder's tokens at this density (shared), or the native large VLM; a recorded trace
        also tells the frames' sampler apart (1 FPS or keyframes) where it has both."""
        if eff.model == "small":
            logits = rec.small_logits_fps if tokens.sampler == "fps" and rec.small_logits_fps is not None \
                else rec.small_logits
        elif tokens.encoder == "small":
            if eff.density not in rec.large_logits:
                raise TestbedError(f"the trace has no large-model logits at density {eff.density}")
            logits = rec.large_logits[eff.density]
        else:
            if tokens.sampler == "keyframe" and rec.large_native_logits_keyframe is not None:
                logits = rec.large_native_logits_keyframe
            elif tokens.per_frame and rec.large_native_logits_codec is not None:  # merged and compressed
                logits = rec.large_native_logits_codec
            else:
                logits = rec.large_native_logits
        if logits is None:
            raise TestbedError(f"query {rec.query.query_id} has no recorded {eff.model}-model logits; "
                               "the sim needs a trace (testbed record), a manifest runs with testbed live")
        return Inference(eff.model, logits)
