"""The real interpreter: performs every effect for real (tokenizer, the model pair, the codec) and
books measured times in the query's ledger, under the stage keys the sim replays.

Nodes are the local devices (one per client) and the edge, each with its models and a semaphore
per GPU server, so that work queues as in the sim. An Offload goes to an `EdgeLink`: in one
process (`InProcEdge`) the edge steps run here with no network; live mode puts a ZeroMQ link there.
The clock is read here (live/), never in the core.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future as CFuture, ThreadPoolExecutor
from concurrent.futures import TimeoutError as CTimeout
from concurrent.futures import wait as cwait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable

import numpy as np
import torch

from testbed.bandit.features import relevance_and_complexity
from testbed.codec.merge import merge_to_density
from testbed.codec.size import REPLY_BYTES
from testbed.codec.wire import DEFAULT_MAX_BYTES, decode_message, encode_message
from testbed.crop import GENERIC_PROMPT, Box, CropError, as_grid, crop_side, min_entropy, peak_box
from testbed.errors import TestbedError
from testbed.models.vlm import OptionModel, VLMPair
from testbed.policies.driver import Interpreter, run_sync
from testbed.policies.effects import (END_OF_STREAM, TIMED_OUT, Compress, Context, ContextInputs, Crop, Decompress,
                                      Describe, Emit, FrameAnswer, Future, Inference, Infer, InputSignals, Inspect,
                                      Locate, NextFrame, Offload, Payload, Submit, Tokenize, Tokens, Wait, WaitAny)
from testbed.policies.placement import check_offload, run_steps, upload_bytes
from testbed.query import Frame, ImageMeta
from testbed.ledger import (QueryRun, Run, compress_key, crop_key, decompress_key, describe_key, frame_infer_key,
                            infer_key, inspect_key, locate_key, sampler_kind, tokenize_key)
from testbed.router.signals import media_signals
from testbed.streams.labels import labels_of
from testbed.streams.run import FrameRun, StreamRun
from testbed.streams.trace import StreamRecord
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

    def offload(self, interp: "RealInterpreter", off: Offload, run: Run) -> Inference: ...


class InProcEdge:
    """No network: the edge's steps run in this process on the edge node."""

    def offload(self, interp: "RealInterpreter", off: Offload, run: Run) -> Inference:
        up = upload_bytes(off)
        result = run_sync(run_steps(off, lambda step: interp.perform(step, run, "edge")))
        with interp.lock:
            run.ledger.bytes_up += up
            run.ledger.bytes_down += REPLY_BYTES
        return result


def check_tokens(shape: tuple[int, ...], p: Payload, dim: int) -> None:
    """Decoded tokens must be what their payload map says (frames, density) at the width of the encoder
    that made them, before any model reads them (a RemoteError: the edge answers with one error)."""
    from testbed.policies.remote import RemoteError

    names = ("frames", "density", "dim (the encoder's token width)")
    for name, got, want in zip(names, shape, (p.frames, p.density, dim)):
        if got != want:
            raise RemoteError(f"token payload: {name} is {got}, expected {want} "
                              f"(tokens {tuple(shape)}, payload says frames {p.frames}, density {p.density})")


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
        self._done_at: dict[int, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=async_workers, thread_name_prefix="future")
        self._views_dir: Path | None = None  # the image views the device made (made on the first)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._views_dir is not None:
            shutil.rmtree(self._views_dir, ignore_errors=True)

    @property
    def _views(self) -> Path:
        with self.lock:
            if self._views_dir is None:
                self._views_dir = Path(tempfile.mkdtemp(prefix="testbed-views-"))
            return self._views_dir

    def node(self, run: Run, site: str) -> RealNode:
        return self.devices[run.client] if site == "local" else self.edge

    def _book(self, run: Run, site: str, key: str, waited: float, worked: float) -> None:
        with self.lock:
            run.ledger.add(site, waited, worked)
            run.ledger.stage(key, worked)

    # -- effects --------------------------------------------------------------------------------
    def tokenize(self, eff: Tokenize, run: Run, site: str) -> Tokens:
        media = eff.media
        if not media.path:
            raise TestbedError(f"{run.request_id}: its media has no file (a trace row); real runs need files: give a "
                               "manifest (workload.kind = 'manifest')")
        node = self.node(run, site)
        tok = node.tokenizers[eff.encoder]
        if isinstance(media, ImageMeta) and media.view == "full":  # seed 003: LLaVA-1.5-HD's tiles
            r, waited, worked = node.hold(lambda: tile_tokens(tok.encoder, media.path))
        elif isinstance(media, ImageMeta):
            r, waited, worked = node.hold(lambda: tok.image(media.path))
        else:
            r, waited, worked = node.hold(lambda: tok(media.path, eff.sampler, pipelined=eff.pipelined, meta=media))
        self._book(run, site, tokenize_key(site, eff), waited, worked)
        with self.lock:
            run.ledger.frames, run.ledger.decoded = r.frames, r.decoded
        return Tokens(r.frames, r.decoded, 0, site, eff.encoder, sampler_kind(eff), r.tokens,  # type: ignore[arg-type]
                      views=eff.views)

    def infer(self, eff: Infer, run: Run, site: str) -> Inference:
        tokens = eff.tokens
        if tokens is None or tokens.data is None:
            raise TestbedError("Infer needs real tokens (tokens=None means the step before it, inside an Offload)")
        node = self.node(run, site)
        model = node.pair.models[eff.model]
        question = eff.question
        frame = run.frame_run
        data, density = tokens.data, eff.density
        if tokens.views:  # seed 003's views: a view's tokens are merged down to the density, never up
            density = min(density, int(data.shape[1]))
        extra = None
        if eff.context is not None:
            if frame is None:
                raise TestbedError("an Infer with a context belongs to a stream frame")
            question = history_prompt(frame.stream.rec, eff.context) + question
            if eff.focus:
                data, extra = self._focus(frame, eff, data)

        logits, waited, worked = node.hold(lambda: model.option_logits(small_input(data, density, extra), question,
                                                                       eff.options))
        key = frame_infer_key(site, eff.model, eff.context is not None, bool(eff.focus)) if frame is not None else \
            infer_key(site, eff.model, tokens, eff.density)
        self._book(run, site, key, waited, worked)
        if site == "edge":
            with self.lock:
                run.ledger.edge_prefill_tokens += tokens.frames * density + model.text_tokens(question, eff.options)
        if eff.locate is not None and eff.locate.labels:
            return Inference(eff.model, logits, rois=self._regions(run, node, model, data, eff, logits))
        if eff.locate is not None and min_entropy(logits) > eff.locate.above:
            return Inference(eff.model, logits, roi=self._locate(run, node, model, data, eff))
        return Inference(eff.model, logits)

    def _locate(self, run: Run, node: RealNode, model: OptionModel, vision: torch.Tensor, eff: Infer) -> Box:
        """Seed 003's region of interest: the model's region map over the first view's tokens at the
        encoder's own resolution, a grid over the image (`OptionModel.roi_map`: ViCrop's relative
        attention, or a model's documented substitute), the box around its peak. Booked as one more
        prefill of the view with the generic prompt."""
        loc = eff.locate
        assert loc is not None
        grid, waited, worked = node.hold(lambda: model.roi_map(vision, eff.question, eff.options))
        self._book(run, "edge", locate_key(), waited, worked)
        with self.lock:
            run.ledger.edge_prefill_tokens += int(vision.shape[1]) + model.text_tokens(GENERIC_PROMPT, ())
        if grid is None:
            raise TestbedError(f"the {eff.model} model reports no attention over image tokens: it cannot locate a "
                               "region (seed 003)")
        return locate_box(grid, loc)

    def _regions(self, run: Run, node: RealNode, model: OptionModel, vision: torch.Tensor, eff: Infer,
                 logits: np.ndarray) -> tuple[tuple[int, Box], ...]:
        """Seed 001's grounding (`ground`), booked as the maps' prefills (the locate stage)."""
        loc = eff.locate
        assert loc is not None
        rois, waited, worked = node.hold(lambda: ground(model, vision, eff.options, logits, loc))
        self._book(run, "edge", locate_key(), waited, worked)
        return rois

    def _focus(self, run: FrameRun, eff: Infer, data: Any) -> tuple[Any, Any]:
        """Visual focus (`focused`) from the context answer's regions and its frame's kept tokens. A
        model that grounds nothing runs without focus (noted once)."""
        ctx = eff.context
        assert ctx is not None
        then = ctx.tokens.data if ctx.tokens is not None else None
        if not ctx.answer.rois or then is None or then.shape != data.shape:
            run.stream.notes.add("visual focus skipped: the large model grounded no region (it reports no attention "
                                 "over image tokens, or named no category)")
            return data, None
        data, extra = focused(data, then, ctx.answer.rois, eff.focus, run.stream.rec.width, run.stream.rec.height)
        if extra is not None:
            run.ggvr_tokens = int(extra.shape[0])
        return data, extra

    def compress(self, eff: Compress, run: Run, site: str) -> Payload:
        tokens = eff.tokens
        if tokens.data is None:
            raise TestbedError("Compress needs real tokens")
        t0 = self.clock()
        merged = to_density(tokens.data, eff.density).to("cpu", self.wire_dtype)
        msg = encode_message(merged, level=self.zstd_level)
        dur = self.clock() - t0
        key = compress_key(tokens.sampler, eff.density)
        self._book(run, "local", key, 0.0, dur)
        with self.lock:
            run.ledger.size(key, len(msg))
        return Payload("tokens", len(msg), merged.numel() * merged.element_size(), tokens.frames, eff.density,
                       tokens.encoder, tokens.sampler, data=msg)

    def decompress(self, eff: Decompress, run: Run, site: str) -> Tokens:
        p = eff.payload
        if p.data is None:
            raise TestbedError("Decompress needs the payload's bytes")
        t0 = self.clock()
        msg = decode_message(p.data, max_bytes=self.max_message_bytes)
        check_tokens(msg.tokens.shape, p, self.node(run, site).pair.encoders[p.encoder].dim)
        tokens = msg.tokens.float()
        dur = self.clock() - t0
        self._book(run, "edge", decompress_key(p.sampler, p.density), 0.0, dur)
        return Tokens(p.frames, 0, msg.density, "edge", p.encoder, p.sampler, tokens)

    def describe(self, eff: Describe, run: QueryRun, site: str) -> ContextInputs:
        """The context inputs from the real tokens, on the device's GPU (see `describe_tokens`)."""
        tokens = eff.tokens
        if tokens.data is None:
            raise TestbedError("Describe needs real tokens")
        node = self.node(run, "local")
        model = node.pair.models["small"]
        out, waited, worked = node.hold(lambda: describe_tokens(model, tokens.data, eff.density, eff.question))
        self._book(run, "local", describe_key(tokens.sampler), waited, worked)
        return out

    def inspect(self, eff: Inspect, run: QueryRun, site: str) -> InputSignals:
        """Seed 002's signals from the real file: decode the image (or a video's first keyframe-aligned
        frames, up to eight) and measure them; CPU work, so no GPU server is held."""
        media = eff.media
        if not media.path:
            raise TestbedError(f"query {run.rec.query.query_id}: its media has no file (a trace row); real runs need "
                               "files: give a manifest (workload.kind = 'manifest')")
        t0 = self.clock()
        out = media_signals(media, eff.sampler)
        self._book(run, "local", inspect_key(media.kind, eff.sampler.kind), 0.0, self.clock() - t0)
        return out

    def crop(self, eff: Crop, run: QueryRun, site: str) -> Payload:
        """Make the view from the query's image file on the device (a CPU: decode, resize or cut,
        JPEG) into this run's view folder; "full" is the file itself."""
        from testbed.crop_image import make_view

        media = eff.media
        if not media.path:
            raise TestbedError(f"query {run.rec.query.query_id}: its image has no file (a trace row); real runs need "
                               "files: give a manifest (workload.kind = 'manifest')")
        t0 = self.clock()
        data, width, height = make_view(media.path, eff.view, eff.box, eff.side)
        if eff.view == "full":
            path = media.path
        else:
            path = str(self._views / f"{next(self._ids)}-{eff.view}.jpg")
            Path(path).write_bytes(data)
        key = crop_key(eff.view)
        self._book(run, "local", key, 0.0, self.clock() - t0)
        with self.lock:
            run.ledger.size(key, len(data))
        box = eff.box if eff.view == "crop" else None
        view = ImageMeta(width, height, len(data), path, eff.view, box, (media.width, media.height))
        return Payload("image", len(data), media=view, data=data)

    def offload(self, eff: Offload, run: Run, site: str) -> Inference:
        check_offload(eff)
        with self.lock:
            run.ledger.round_trips += 1
        return self.link.offload(self, eff, run)

    def submit(self, eff: Submit, run: Run, site: str) -> Future:
        fid = next(self._ids)

        def work() -> Any:
            out = run_sync_value(self.perform(eff.effect, run))
            self._done_at[fid] = self.clock()  # before the future completes: Emit's deadline check reads it
            return out

        with self.lock:
            run.futures[fid] = self._pool.submit(work)
        return Future(fid)

    def _future(self, run: Run, f: Future) -> CFuture:
        return f.started(run.futures, "a policy")

    def wait(self, eff: Wait, run: Run, site: str) -> Any:
        fut = self._future(run, eff.future)
        try:
            return fut.result(timeout=eff.timeout_s)
        except CTimeout:
            return TIMED_OUT

    def wait_any(self, eff: WaitAny, run: Run, site: str) -> Any:
        futs = [self._future(run, f) for f in eff.futures]
        done, _ = cwait(futs, timeout=eff.timeout_s, return_when=FIRST_COMPLETED)
        for i, fut in enumerate(futs):
            if fut in done:
                return i, fut.result()
        return TIMED_OUT


    def next_frame(self, eff: NextFrame, run: FrameRun | StreamRun, site: str) -> Any:
        """Block until the stream's source delivers its next frame (live/streams.py plays a video in
        real time); END_OF_STREAM after the last."""
        stream = run.stream
        source = getattr(stream, "source", None)
        if source is None:
            raise TestbedError("a stream policy needs a stream source: run stream scenarios with "
                               "`testbed live SCENARIO --inproc` (live/streams.py)")
        if eff.stream_id != stream.rec.stream_id:
            raise TestbedError(f"a frame of stream {eff.stream_id!r} asked for while running {stream.rec.stream_id!r}")
        fr = stream.advance()
        if fr is None:
            return END_OF_STREAM
        media = source.frame(fr.rec.index)  # waits for the frame's capture
        return Frame(stream.rec.stream_id, fr.rec.index, fr.rec.time_s, fr.deadline_s, media)

    def emit(self, eff: Emit, run: FrameRun | StreamRun, site: str) -> None:
        """Record the answer now (stream clock); a large answer that finishes by `until_s` replaces it,
        at the time it finished."""
        stream = run.stream
        with self.lock:
            fr = stream.emit(eff.frame_index, eff.answer, self.clock() - stream.start_s)
        if fr is None or eff.better is None:
            return
        fut = self._future(fr, eff.better)
        until = eff.until_s if eff.until_s is not None else fr.deadline_s

        def adopt(f: CFuture) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            inf = f.result()
            done = self._done_at.get(eff.better.id, self.clock()) - stream.start_s  # type: ignore[union-attr]
            answer = FrameAnswer(labels_of(stream.rec.task, inf.option_logits), "large", eff.answer.context_frame)
            with self.lock:
                stream.upgrade(eff.frame_index, answer, done, until)

        fut.add_done_callback(adopt)


def locate_box(values: np.ndarray, loc: Locate) -> Box:
    """The box of `loc.scale` of the shorter side around the peak of a map over the image tokens (a
    square grid over the whole image), in pixels of the original image."""
    try:
        grid = as_grid(values)
    except CropError as exc:
        raise TestbedError(f"cannot locate a region: {exc}") from None
    side = crop_side(loc.width, loc.height, loc.scale)
    return peak_box(grid, loc.width, loc.height, side)


def tile_tokens(encoder: Any, path: str) -> Any:
    """Seed 003's full-resolution view, tokenized as LLaVA-1.5-HD does: the global view and the
    image's tiles of the encoder's input, one frame each (a TokenizeResult, as Tokenizer.image)."""
    from testbed.crop_image import hd_tiles
    from testbed.tokenizer.image import load_image
    from testbed.tokenizer.pipeline import TokenizeResult

    tiles = hd_tiles(load_image(path)[0], encoder.image_size)
    tokens = encoder.encode(encoder.preprocess(tiles))
    return TokenizeResult(tokens, np.zeros(len(tiles), np.int64), 1, 0, False, {}, 0.0, False)


def ground(model: OptionModel, vision: torch.Tensor, options: tuple[str, ...], logits: np.ndarray,
           loc: Locate) -> tuple[tuple[int, Box], ...]:
    """Seed 001's grounding: for each option the answer names (as `loc.labels` reads scores), the
    box of `loc.scale` around the peak of the model's region map for it (the largest ROI per
    category, Eq. 6); none from a model without attention over image tokens."""
    named = labels_of(loc.labels, logits)  # type: ignore[arg-type]
    maps = [(c, model.roi_map(vision, f"where is the {options[c]}", ())) for c in named]
    return tuple((int(c), locate_box(g, loc)) for c, g in maps if g is not None)


def focused(data: torch.Tensor, then: torch.Tensor, rois: Any, parts: tuple[str, ...], width: int,
            height: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Visual focus (seed 001 Eq. 6-11) on a frame's (F, N, D) tokens from the context frame's
    tokens `then` and its answer's regions, patches on the encoder's square grid stretched over
    the width x height frame: GRVR reweights the tokens; GGVR returns the context frame's region
    patches (|P_ROI|, D) for the input, else None."""
    from testbed.streams.focus import category_patches, focus_tokens, ggvr_patches, ggvr_tokens

    grid = int(round(data.shape[1] ** 0.5))
    if "grvr" in parts:
        patches = list(category_patches(rois, width, height, grid).values())
        data = torch.stack([focus_tokens(data[i], then[i], patches) for i in range(data.shape[0])])
    extra = ggvr_tokens(then[0], ggvr_patches(rois, width, height, grid)) if "ggvr" in parts else None
    return data, extra


def small_input(data: torch.Tensor, density: int, extra: torch.Tensor | None) -> torch.Tensor:
    """The frame's tokens merged to `density`, GGVR's region patches after them (one frame)."""
    merged = to_density(data, density)
    if extra is None:
        return merged
    return torch.cat([merged, extra[None].to(merged.dtype)], dim=1)


def history_prompt(s: StreamRecord, ctx: Context) -> str:
    """Context replacement's history snippet (seed 001 Sec. 3.2): the large model's answer for the
    frame `ctx.lag` frames back, summarised, before the question."""
    seconds = ctx.lag / s.fps
    said = labels_of(s.task, ctx.answer.option_logits)
    names = ", ".join(s.categories[i] for i in said) or "nothing"
    return f"This is the image from {seconds:g} seconds ago; detected {names}. "


def run_sync_value(out: Any) -> Any:
    """An effect's result: real methods return values; a generator here would be a bug."""
    if hasattr(out, "send"):
        return run_sync(out)
    return out


@torch.inference_mode()
def describe_tokens(model: OptionModel, tokens: torch.Tensor, density: int, question: str) -> ContextInputs:
    """Seed 000 Eq. 6-10 from what the small model sees: the vision tokens merged to `density` and
    embedded (N, H) (an LM-backed VLM: its connector), their mean (h_vis), the question's embedding
    (h_txt), and per clip (one frame: the encoders here embed frames one by one) the relevance R_t,
    its max and mean, and the spectral complexity of the top-3 clips."""
    frames = tokens.shape[0]
    h, txt = model.describe_inputs(to_density(tokens, density), question)
    clip = np.repeat(np.arange(frames), h.shape[0] // frames)
    s_max, s_mean, s_cplx = relevance_and_complexity(txt, h, clip)
    return ContextInputs(txt, h.mean(axis=0), s_max, s_mean, s_cplx)


def to_density(tokens: torch.Tensor, density: int) -> torch.Tensor:
    """(F, N, D) tokens merged to (F, density, D) by ToMe matching; unchanged if N == density."""
    n = tokens.shape[1]
    if n == density:
        return tokens
    if n < density:
        raise TestbedError(f"density {density} exceeds the {n} tokens per frame the tokens hold")
    return merge_to_density(tokens, density)[0]
