"""Stream traces: one Parquet row per frame, with their own versioned schema and provenance.

A QA trace row is a query (options, one answer, logits per density); a stream row is a frame of a
camera stream (seed 001): its ground-truth labels (a set for multi-label recognition, one class
for single-label tasks), the small model's per-category scores on it with its own history, with
an earlier large-model answer replacing that history at each lag (context replacement) and with
visual focus on top, the large model's scores, and the cloud's service time for it (the Fig. 4
latency less the link's transfers). A score > 0 means "present" (multi-label); the arg-max is the
class (single-label). Provenance is ``synthetic:<generator>:<seed>`` or ``live:<host>:<models>``
and travels in the file metadata, as for QA traces (testbed/traces.py). Every problem with a
file is one TraceError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from testbed.errors import TraceError
from testbed.streams.labels import predicted  # noqa: F401  (re-exported)
from testbed.traces import META_PARAMS, META_PROVENANCE, check_columns, read_table, schema_table

SCHEMA_VERSION = 1
META_VERSION = b"testbed.stream_schema_version"
"""A key of its own, so a stream trace is never read as a QA trace (and vice versa)."""
TASKS = ("multi-label", "single-label")
Task = Literal["multi-label", "single-label"]

_F32 = pa.list_(pa.float32())
REQUIRED: dict[str, pa.DataType] = {
    "stream_id": pa.string(),
    "benchmark": pa.string(),
    "frame_index": pa.int64(),
    "frame_time_s": pa.float64(),  # capture time since the stream started
    "fps": pa.float64(),
    "task": pa.string(),
    "question": pa.string(),
    "categories": pa.list_(pa.string()),
    "labels": pa.list_(pa.int32()),  # ground truth: indices into categories
    "width": pa.int32(),
    "height": pa.int32(),
    "image_bytes": pa.int64(),  # the encoded frame, what an upload sends
    "small_logits": _F32,  # the small model with its own history
    "large_logits": _F32,
    "cloud_s": pa.float64(),  # the large model's service time at the cloud, transfers excluded
}
OPTIONAL: dict[str, pa.DataType] = {
    # the small model with the large model's answer for frame t - d as its history, d = 1..D
    "context_logits": pa.list_(_F32),
    # the same with visual focus on that answer's regions (GGVR and GRVR), and with GGVR alone
    "context_focus_logits": pa.list_(_F32),
    "context_ggvr_logits": pa.list_(_F32),
    "large_latency_s": pa.float64(),  # end-to-end latency as measured (informational)
    "large_roi": pa.list_(pa.int32()),  # x0, y0, x1, y1 of the large model's region of interest
    "large_rois": pa.list_(pa.int32()),  # its grounding: (category, x0, y0, x1, y1) per region, flattened
    "recorded_s": pa.map_(pa.string(), pa.float64()),  # stage times a live run measured
    "path": pa.string(),  # the frame's image file (live recordings)
}
PER_STREAM = ("benchmark", "fps", "task", "question", "width", "height")


@dataclass(frozen=True, eq=False)
class StreamRecord:
    """One stream's frames as arrays: n frames, C categories, D context lags."""

    stream_id: str
    benchmark: str
    task: Task
    fps: float
    question: str
    categories: tuple[str, ...]
    width: int
    height: int
    times: np.ndarray  # (n,) capture times, s
    labels: np.ndarray  # (n, C) bool
    small: np.ndarray  # (n, C)
    large: np.ndarray  # (n, C)
    cloud_s: np.ndarray  # (n,)
    image_bytes: np.ndarray  # (n,) int
    context: np.ndarray | None = None  # (n, D, C)
    context_focus: np.ndarray | None = None  # (n, D, C)
    context_ggvr: np.ndarray | None = None  # (n, D, C)
    large_latency_s: np.ndarray | None = None
    roi: np.ndarray | None = None  # (n, 4)
    rois: tuple[tuple[tuple[int, tuple[int, int, int, int]], ...], ...] = ()  # per frame: (category, box)
    recorded: tuple[dict[str, float], ...] = ()
    paths: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def max_lag(self) -> int:
        """Context lags recorded, in frames (0: the trace holds no context-replaced predictions)."""
        return 0 if self.context is None else int(self.context.shape[1])

    @property
    def duration_s(self) -> float:
        return float(self.times[-1]) + 1.0 / self.fps

    def frame(self, i: int) -> "FrameRecord":
        return FrameRecord(self, i)


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One frame of a stream, as the sim interpreter's per-frame run sees it."""

    stream: StreamRecord
    index: int

    @property
    def recorded_s(self) -> dict[str, float]:
        return self.stream.recorded[self.index] if self.stream.recorded else {}

    @property
    def recorded_bytes(self) -> dict[str, int]:
        """Payload sizes a run recorded (none in stream traces yet: the size model applies)."""
        return {}

    @property
    def time_s(self) -> float:
        return float(self.stream.times[self.index])


@dataclass(frozen=True)
class StreamWorkload:
    """A validated stream trace: its streams, provenance and generator parameters."""

    streams: tuple[StreamRecord, ...]
    provenance: str
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def synthetic(self) -> bool:
        return self.provenance.startswith("synthetic:")

    def benchmarks(self) -> list[str]:
        return list(dict.fromkeys(s.benchmark for s in self.streams))

    @property
    def frames(self) -> int:
        return sum(s.n for s in self.streams)


def to_table(frame: pd.DataFrame, provenance: str, parameters: dict[str, Any] | None = None) -> pa.Table:
    """Arrow table with the stream schema and metadata; checks column names and types."""
    return schema_table(frame, provenance, parameters, required=REQUIRED, optional=OPTIONAL,
                        version=SCHEMA_VERSION, version_key=META_VERSION, what="stream trace")


def write_stream_trace(frame: pd.DataFrame, path: Path, provenance: str,
                       parameters: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(frame, provenance, parameters), path)


def read_stream_trace(path: Path) -> StreamWorkload:
    """Read and validate a stream trace; every problem is one TraceError naming the file."""
    return table_to_streams(read_table(path, "stream trace"), str(path))


def _list_values(col: pa.ChunkedArray, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(row lengths, flat values) of a list column with no nulls."""
    arr = col.combine_chunks()
    if arr.null_count:
        raise ValueError("null")
    offsets = np.asarray(arr.offsets)
    return np.diff(offsets), np.asarray(arr.flatten(), dtype=dtype)


def table_to_streams(table: pa.Table, name: str = "stream trace") -> StreamWorkload:
    """Validate an Arrow table against the stream schema and group its rows into streams."""
    meta = table.schema.metadata or {}
    version = meta.get(META_VERSION)
    if version is None:
        hint = " (it is a QA trace: use workload.kind = 'trace')" if b"testbed.schema_version" in meta else ""
        raise TraceError(f"{name}: no stream schema version in the file metadata{hint}")
    if version != str(SCHEMA_VERSION).encode():
        raise TraceError(f"{name}: stream schema version {version.decode()} but this testbed reads {SCHEMA_VERSION}")
    check_columns(table, name, REQUIRED, OPTIONAL, f"stream trace schema v{SCHEMA_VERSION}")
    if table.num_rows == 0:
        raise TraceError(f"{name}: the trace holds no frames")
    for col in table.column_names:
        if col != "recorded_s" and table.column(col).null_count:
            raise TraceError(f"{name}: column {col!r} has missing values")
    provenance = meta.get(META_PROVENANCE, b"").decode()
    if not (provenance.startswith("synthetic:") or provenance.startswith("live:")):
        raise TraceError(f"{name}: provenance {provenance!r} must start with 'synthetic:' or 'live:'")
    params = json.loads(meta.get(META_PARAMS, b"{}").decode() or "{}")
    return StreamWorkload(_streams(table, name), provenance, params)


def _streams(table: pa.Table, name: str) -> tuple[StreamRecord, ...]:
    n = table.num_rows
    sid = np.asarray(table.column("stream_id").to_pylist(), dtype=object)
    order = list(dict.fromkeys(sid.tolist()))
    scalars = {c: table.column(c).to_numpy() for c in
               ("frame_index", "frame_time_s", "fps", "width", "height", "image_bytes", "cloud_s")}
    strings = {c: table.column(c).to_pylist() for c in ("benchmark", "task", "question")}
    cats = table.column("categories").to_pylist()
    n_cat = np.array([len(c) for c in cats])
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for col in ("labels", "small_logits", "large_logits", "large_roi"):
        if col in table.column_names:
            lists[col] = _list_values(table.column(col), np.int64 if col in ("labels", "large_roi") else np.float64)
    nested: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for col in ("context_logits", "context_focus_logits", "context_ggvr_logits"):
        if col in table.column_names:
            outer = table.column(col).combine_chunks()
            lags = np.diff(np.asarray(outer.offsets))
            inner_len, values = _list_values(pa.chunked_array([outer.flatten()]), np.float64)
            nested[col] = (lags, inner_len, values)
    for col in ("small_logits", "large_logits"):
        lengths = lists[col][0]
        bad = np.flatnonzero(lengths != n_cat)
        if len(bad):
            i = int(bad[0])
            raise TraceError(f"{name}: stream {sid[i]} frame {scalars['frame_index'][i]}: {col} must hold "
                             f"{n_cat[i]} scores, one per category")
        if not np.isfinite(lists[col][1]).all():
            raise TraceError(f"{name}: {col} holds a value that is not finite")
    for col, (lags, inner_len, values) in nested.items():
        if (lags < 1).any():
            raise TraceError(f"{name}: {col} must hold at least one context lag on every frame")
        if (inner_len != np.repeat(n_cat, lags)).any():
            raise TraceError(f"{name}: {col} must hold one score per category at every lag")
        if not np.isfinite(values).all():
            raise TraceError(f"{name}: {col} holds a value that is not finite")
    for col in ("context_focus_logits", "context_ggvr_logits"):
        if col in nested and "context_logits" not in nested:
            raise TraceError(f"{name}: {col} needs context_logits")
        if col in nested and (nested[col][0] != nested["context_logits"][0]).any():
            raise TraceError(f"{name}: context_logits and {col} must hold the same lags")
    if "large_roi" in lists and (lists["large_roi"][0] != 4).any():
        raise TraceError(f"{name}: large_roi must hold 4 integers (x0, y0, x1, y1)")
    rois = _rois(table, n_cat, name) if "large_rois" in table.column_names else None
    label_len, label_vals = lists["labels"]
    label_row = np.repeat(np.arange(n), label_len)
    if len(label_vals) and ((label_vals < 0) | (label_vals >= n_cat[label_row])).any():
        i = int(label_row[np.flatnonzero((label_vals < 0) | (label_vals >= n_cat[label_row]))[0]])
        raise TraceError(f"{name}: stream {sid[i]} frame {scalars['frame_index'][i]}: a label is outside its "
                         f"{n_cat[i]} categories")
    for i, t in enumerate(strings["task"]):
        if t not in TASKS:
            raise TraceError(f"{name}: stream {sid[i]}: task {t!r} is not one of {TASKS}")
        if t == "single-label" and label_len[i] != 1:
            raise TraceError(f"{name}: stream {sid[i]} frame {scalars['frame_index'][i]}: a single-label frame "
                             f"needs exactly one label, got {label_len[i]}")
    for col in ("fps", "width", "height"):
        if (scalars[col] <= 0).any():
            raise TraceError(f"{name}: {col} must be > 0")
    if (scalars["image_bytes"] < 1).any():
        raise TraceError(f"{name}: image_bytes must be >= 1")
    if (~np.isfinite(scalars["cloud_s"]) | (scalars["cloud_s"] < 0)).any():
        raise TraceError(f"{name}: cloud_s must be finite and >= 0")

    recorded = table.column("recorded_s").to_pylist() if "recorded_s" in table.column_names else None
    paths = table.column("path").to_pylist() if "path" in table.column_names else None
    latency = table.column("large_latency_s").to_numpy() if "large_latency_s" in table.column_names else None
    offsets = {c: np.concatenate([[0], np.cumsum(v[0])]) for c, v in lists.items()}
    nested_offsets = {c: np.concatenate([[0], np.cumsum(v[0] * n_cat)]) for c, v in nested.items()}
    streams = []
    by_id: dict[str, list[int]] = {s: [] for s in order}
    for i, s in enumerate(sid.tolist()):
        by_id[s].append(i)
    for s in order:
        idx = np.asarray(by_id[s])
        first = int(idx[0])
        for key in PER_STREAM:
            vals = [strings[key][i] for i in idx] if key in strings else scalars[key][idx]
            if len(set(np.asarray(vals).tolist())) != 1:
                raise TraceError(f"{name}: stream {s}: {key} must be the same on every frame")
        if len({tuple(cats[i]) for i in idx}) != 1:
            raise TraceError(f"{name}: stream {s}: categories must be the same on every frame")
        fi = scalars["frame_index"][idx]
        order_in = np.argsort(fi, kind="stable")
        idx, fi = idx[order_in], fi[order_in]
        if (fi != np.arange(len(idx))).any():
            raise TraceError(f"{name}: stream {s}: frame_index must run 0, 1, ..., {len(idx) - 1} "
                             "(each once)")
        times = scalars["frame_time_s"][idx].astype(np.float64)
        if not np.isfinite(times).all() or times[0] < 0 or (np.diff(times) <= 0).any():
            raise TraceError(f"{name}: stream {s}: frame_time_s must be >= 0 and increase with frame_index")
        c = int(n_cat[first])
        if c < 1:
            raise TraceError(f"{name}: stream {s}: needs at least one category")

        def mat(col: str) -> np.ndarray:
            o = offsets[col]
            return np.stack([lists[col][1][o[i]:o[i + 1]] for i in idx])

        labels = np.zeros((len(idx), c), dtype=bool)
        lo = offsets["labels"]
        for k, i in enumerate(idx):
            labels[k, lists["labels"][1][lo[i]:lo[i + 1]]] = True
        ctx = {}
        for col, (lags, _inner, values) in nested.items():
            if len(set(lags[idx].tolist())) != 1:
                raise TraceError(f"{name}: stream {s}: {col} must hold the same number of context lags on every frame")
            d = int(lags[idx[0]])
            o = nested_offsets[col]
            ctx[col] = np.stack([values[o[i]:o[i + 1]].reshape(d, c) for i in idx])
        streams.append(StreamRecord(
            stream_id=s, benchmark=strings["benchmark"][first], task=strings["task"][first],  # type: ignore[arg-type]
            fps=float(scalars["fps"][first]), question=strings["question"][first], categories=tuple(cats[first]),
            width=int(scalars["width"][first]), height=int(scalars["height"][first]), times=times, labels=labels,
            small=mat("small_logits"), large=mat("large_logits"), cloud_s=scalars["cloud_s"][idx].astype(np.float64),
            image_bytes=scalars["image_bytes"][idx].astype(np.int64), context=ctx.get("context_logits"),
            context_focus=ctx.get("context_focus_logits"), context_ggvr=ctx.get("context_ggvr_logits"),
            rois=tuple(rois[i] for i in idx) if rois is not None else (),
            large_latency_s=latency[idx].astype(np.float64) if latency is not None else None,
            roi=mat("large_roi") if "large_roi" in lists else None,
            recorded=tuple(dict(recorded[i] or []) for i in idx) if recorded is not None else (),
            paths=tuple(paths[i] for i in idx) if paths is not None else ()))
    return tuple(streams)


def _rois(table: pa.Table, n_cat: np.ndarray, name: str) -> list[tuple[tuple[int, tuple[int, int, int, int]], ...]]:
    """Each row's grounding, from `large_rois` (5 integers per region: category, x0, y0, x1, y1)."""
    lengths, values = _list_values(table.column("large_rois"), np.int64)
    if (lengths % 5).any():
        raise TraceError(f"{name}: large_rois must hold 5 integers per region (category, x0, y0, x1, y1)")
    out = []
    o = 0
    for i, k in enumerate(lengths.tolist()):
        r = values[o:o + k].reshape(-1, 5)
        o += k
        if ((r[:, 0] < 0) | (r[:, 0] >= n_cat[i]) | (r[:, 3] <= r[:, 1]) | (r[:, 4] <= r[:, 2])).any():
            raise TraceError(f"{name}: row {i}: a region in large_rois names no category or is empty")
        out.append(tuple((int(c), (int(x0), int(y0), int(x1), int(y1))) for c, x0, y0, x1, y1 in r))
    return out
