"""Record a complete workload trace on this machine: every query once through every arm a policy
could take, so the sim can replay any policy on it counterfactually.

Arms: tokenization on the device (keyframe-aligned pipelined; 1 FPS sequential) and at the edge
(1 FPS sequential; keyframe-aligned pipelined) with the matching encoders; the small model on
keyframe and on 1-FPS frames; the large model on the small model's tokens merged to every density
(each compressed and decompressed for real) and on its own encoder's tokens (1 FPS, and keyframes
for NoSharing); and Collaborative's compression of the 1-FPS tokens. Each arm's logits go into the
trace's columns and each stage's measured time into `recorded_s`, under the keys the sim replays.

An image query (image QA) has one frame: it is tokenized once per side (`*.tokenize.image`), and
the same arms run on that frame. With seed 003's crop knobs (a scenario that runs its policies),
an image query also gets its crop outcomes (view_* columns, `testbed.live.run.view_outcomes`) and the times
of their stages (`local.crop.*`, `edge.tokenize.image.<view>`, `edge.infer.*.<views>.*`,
`edge.locate`). Every query also gets seed 002's input signals (signal_* columns,
measured from the file by the same function a real run's Inspect calls) and their time
(`local.inspect.*`).

Finished queries are appended to `<out>.partial.jsonl` as they complete; an interrupted recording
resumes from it without redoing them, and the trace is written when every query is done.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import pandas as pd
import torch

from testbed.live.real import WIRE_DTYPES, InProcEdge, RealInterpreter, RealNode, describe_tokens, to_density
from testbed.codec.wire import decode_message, encode_message
from testbed.errors import TestbedError
from testbed.models.vlm import VLMPair
from testbed.query import DENSITIES, ImageMeta, QueryRecord
from testbed.ledger import compress_key, decompress_key, describe_key, inspect_key, stage_key
from testbed.router.signals import media_signals
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER
from testbed.traces import Workload, write_trace

Clock = Callable[[], float]


def provenance(pair: VLMPair, device: str) -> str:
    return f"live:{platform.node()}:{pair.preset}@{device}"


class Recorder:
    """Runs every arm of a query and returns its trace row (a dict of trace columns)."""

    def __init__(self, pair: VLMPair, default_density: int = 16, wire_dtype: str = "fp16", chunk_frames: int = 16,
                 clock: Clock = time.perf_counter, crop_knobs: Any = None, seed: int = 0) -> None:
        self.device = RealNode(pair, 1, chunk_frames, clock)
        self.edge = RealNode(pair, 1, chunk_frames, clock)
        self.pair, self.density, self.clock = pair, default_density, clock
        self.wire = WIRE_DTYPES[wire_dtype]
        self.crop_knobs, self.seed = crop_knobs, seed
        self.interp = RealInterpreter([self.device], self.edge, InProcEdge(), wire_dtype=wire_dtype, clock=clock) \
            if crop_knobs is not None else None

    def close(self) -> None:
        if self.interp is not None:
            self.interp.close()
        self.device.close()
        self.edge.close()

    def _views(self, stages: dict[str, float], sizes: dict[str, int], rec: QueryRecord) -> dict[str, Any]:
        """Seed 003's crop outcomes of an image query (view_* columns) and their stage times."""
        from testbed.live.run import view_outcomes

        assert self.interp is not None
        knobs = self.crop_knobs
        v, ledger = view_outcomes(self.interp, rec, knobs, knobs.view_tokens or self.density, self.seed)
        stages.update(ledger.stages)
        sizes.update({k: n for k, n in ledger.sizes.items() if k not in sizes})
        return {"view_global_logits": [float(x) for x in v.global_logits],
                "view_crop_logits": [float(x) for x in v.crop_logits],
                "view_random_logits": [float(x) for x in v.random_logits],
                "view_full_logits": [float(x) for x in v.full_logits], "view_box": list(v.box),
                "view_global_bytes": v.global_bytes, "view_crop_bytes": v.crop_bytes,
                "view_random_bytes": v.random_bytes}

    def _timed(self, stages: dict[str, float], key: str, work: Callable[[], Any]) -> Any:
        t0 = self.clock()
        out = work()
        stages[key] = self.clock() - t0
        return out

    def _infer(self, stages: dict[str, float], key: str, model: str, tokens: torch.Tensor, density: int,
               rec: QueryRecord) -> list[float]:
        m = self.pair.models[model]
        q = rec.query
        logits = self._timed(stages, key, lambda: m.option_logits(to_density(tokens, density), q.question, q.options))
        return [float(x) for x in logits]

    def _codec(self, stages: dict[str, float], sizes: dict[str, int], sampler: str, density: int,
               tokens: torch.Tensor) -> torch.Tensor:
        """Merge, compress and decompress for real (timed under the sim's keys; the payload's bytes
        recorded too); the tokens the edge gets."""
        def compress() -> bytes:
            return encode_message(to_density(tokens, density).to(self.wire))

        key = compress_key(sampler, density)
        msg = self._timed(stages, key, compress)
        sizes[key] = len(msg)
        return self._timed(stages, decompress_key(sampler, density), lambda: decode_message(msg).tokens.float())

    def _signals(self, stages: dict[str, float], rec: QueryRecord) -> dict[str, Any]:
        m = rec.query.media
        key = inspect_key(m.kind, KEYFRAME_SAMPLER.kind)
        sig = self._timed(stages, key, lambda: media_signals(m, KEYFRAME_SAMPLER))
        return {"signal_spatial_info": sig.spatial_info, "signal_edge_density": sig.edge_density,
                "signal_colourfulness": sig.colourfulness}

    def _arms(self, s: dict[str, float], sizes: dict[str, int], rec: QueryRecord, sampler: str,
              small: torch.Tensor, native_sampler: str, native: torch.Tensor) -> dict[str, Any]:
        """What every query records beside its own tokenizations: the density bandit's context inputs
        (Describe), QuickGrasp's arms (the small model's tokens merged to each density, over the
        codec), Collaborative's (the large encoder's tokens over the codec) and seed 002's signals."""
        q, a = rec.query, self.density
        context = self._timed(s, describe_key(sampler),
                              lambda: describe_tokens(self.pair.models["small"], small, a, q.question))
        row: dict[str, Any] = {
            "context_txt": [float(x) for x in context.txt], "context_vis": [float(x) for x in context.vis],
            "context_s_max": context.s_max, "context_s_mean": context.s_mean, "context_s_cplx": context.s_cplx}
        for d in DENSITIES:
            if d > small.shape[1]:
                raise TestbedError(f"query {q.query_id}: the encoder makes {small.shape[1]} tokens per frame, fewer "
                                   f"than density {d}")
            received = self._codec(s, sizes, sampler, d, small)
            row[f"large_logits_a{d}"] = self._infer(s, stage_key("edge", "infer", "large", "shared", sampler, f"a{d}"),
                                                    "large", received, d, rec)
        received = self._codec(s, sizes, native_sampler, a, native)
        row["large_native_logits_codec"] = self._infer({}, "", "large", received, a, rec)
        row.update(self._signals(s, rec))
        return row

    def image_row(self, rec: QueryRecord) -> dict[str, Any]:
        """An image query's row: one frame, tokenized once per side, every arm on it."""
        q, m = rec.query, rec.query.media
        assert isinstance(m, ImageMeta)
        s: dict[str, float] = {}
        sizes: dict[str, int] = {}
        a = self.density
        small = self._timed(s, "local.tokenize.image", lambda: self.device.tokenizers["small"].image(m.path)).tokens
        large = self._timed(s, "edge.tokenize.image", lambda: self.edge.tokenizers["large"].image(m.path)).tokens
        row: dict[str, Any] = {
            "small_logits": self._infer(s, stage_key("local", "infer", "small", "image", f"a{a}"), "small", small, a,
                                        rec),
            "large_native_logits": self._infer(s, stage_key("edge", "infer", "large", "native", "image", f"a{a}"),
                                               "large", large, a, rec),
        }
        row.update(self._arms(s, sizes, rec, "image", small, "image", large))
        if self.crop_knobs is not None:
            row.update(self._views(s, sizes, rec))
        return {"query_id": q.query_id, "benchmark": q.benchmark, "split": rec.split, "duration_s": 0.0, "fps": 1.0,
                "n_frames": 1, "width": m.width, "height": m.height, "file_bytes": m.file_bytes, "keyframes": [0],
                "question": q.question, "options": list(q.options), "answer": rec.answer, **row,
                "image_width": m.width, "image_height": m.height, "image_bytes": m.file_bytes,
                "recorded_s": sorted((k, max(v, 1e-9)) for k, v in s.items()), "recorded_bytes": sorted(sizes.items())}

    def row(self, rec: QueryRecord) -> dict[str, Any]:
        q, m = rec.query, rec.query.media
        if not m.path:
            raise TestbedError(f"query {q.query_id}: recording needs the media file")
        if isinstance(m, ImageMeta):
            return self.image_row(rec)
        s: dict[str, float] = {}
        sizes: dict[str, int] = {}
        a = self.density
        dev, edge = self.device.tokenizers, self.edge.tokenizers
        key_small = self._timed(s, "local.tokenize.keyframe.pipelined",
                                lambda: dev["small"](m.path, KEYFRAME_SAMPLER, pipelined=True, meta=m)).tokens
        fps_small = self._timed(s, "local.tokenize.fps.sequential",
                                lambda: dev["small"](m.path, DEFAULT_SAMPLER, pipelined=False, meta=m)).tokens
        fps_large = self._timed(s, "edge.tokenize.fps.sequential",
                                lambda: edge["large"](m.path, DEFAULT_SAMPLER, pipelined=False, meta=m)).tokens
        key_large = self._timed(s, "edge.tokenize.keyframe.pipelined",
                                lambda: edge["large"](m.path, KEYFRAME_SAMPLER, pipelined=True, meta=m)).tokens
        row: dict[str, Any] = {
            "small_logits": self._infer(s, stage_key("local", "infer", "small", "keyframe", f"a{a}"), "small",
                                        key_small, a, rec),
            "small_logits_fps": self._infer(s, stage_key("local", "infer", "small", "fps", f"a{a}"), "small",
                                            fps_small, a, rec),
            "large_native_logits": self._infer(s, stage_key("edge", "infer", "large", "native", "fps", f"a{a}"),
                                               "large", fps_large, a, rec),
            "large_native_logits_keyframe": self._infer(
                s, stage_key("edge", "infer", "large", "native", "keyframe", f"a{a}"), "large", key_large, a, rec),
        }
        row.update(self._arms(s, sizes, rec, "keyframe", key_small, "fps", fps_large))
        return {"query_id": q.query_id, "benchmark": q.benchmark, "split": rec.split, "duration_s": m.duration_s,
                "fps": m.fps, "n_frames": m.n_frames, "width": m.width, "height": m.height,
                "file_bytes": m.file_bytes, "keyframes": list(m.keyframes), "question": q.question,
                "options": list(q.options), "answer": rec.answer, **row,
                "recorded_s": sorted((k, max(v, 1e-9)) for k, v in s.items()), "recorded_bytes": sorted(sizes.items())}


def _done(partial: Path) -> dict[str, dict[str, Any]]:
    """Rows a previous run finished (a torn last line, from a kill mid-write, is ignored)."""
    rows: dict[str, dict[str, Any]] = {}
    if partial.is_file():
        for line in partial.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["query_id"]] = row
    return rows


def record(workload: Workload, pair: VLMPair, out: Path, *, device: str = "cpu", default_density: int = 16,
           wire_dtype: str = "fp16", progress: Callable[[int], None] | None = None,
           stop_after: int | None = None, crop_knobs: Any = None, seed: int = 0) -> Path | None:
    """Record `workload` into the trace `out`; returns its path, or None when `stop_after` queries
    were done and the recording is left to resume (used by tests). With `crop_knobs` (seed 003's
    CropKnobs), image queries get their crop outcomes too (random-crop's box drawn with `seed`)."""
    partial = out.with_name(out.name + ".partial.jsonl")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TestbedError(f"{out.parent}: cannot make the folder ({exc.strerror})") from None
    done = _done(partial)
    ids = {r.query.query_id for r in workload.records}
    stale = set(done) - ids
    if stale:
        raise TestbedError(f"{partial}: holds queries that are not in this workload ({sorted(stale)[0]!r}); "
                           "remove it to start afresh")
    if progress and done:
        progress(len(done))
    recorder = Recorder(pair, default_density, wire_dtype, crop_knobs=crop_knobs, seed=seed)
    try:
        with open(partial, "a") as fh:
            for n, rec in enumerate(r for r in workload.records if r.query.query_id not in done):
                if stop_after is not None and n >= stop_after:
                    return None
                row = recorder.row(rec)
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                done[rec.query.query_id] = row
                if progress:
                    progress(1)
    finally:
        recorder.close()
    frame = pd.DataFrame([done[r.query.query_id] for r in workload.records])
    for col in ("recorded_s", "recorded_bytes"):
        frame[col] = [[tuple(kv) for kv in x] for x in frame[col]]
    for col in ("image_width", "image_height", "image_bytes"):  # null on video rows
        if col in frame:
            frame[col] = frame[col].astype("Int32" if col != "image_bytes" else "Int64")
    params = {"workload": workload.provenance, "models": pair.preset, "device": device, "host": platform.node(),
              "default_density": default_density, "wire_dtype": wire_dtype, "token_dim": pair.encoders["small"].dim}
    write_trace(frame, out, provenance(pair, device), params)
    partial.unlink()
    return out
