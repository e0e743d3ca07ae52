"""Workload traces: one Parquet row per query, with a schema version and provenance.

Provenance is ``synthetic:<generator>:<seed>`` or ``live:<host>:<models>``; it travels in the file's
metadata and into every result made from it. Optional columns leave room for later capabilities
(bandit context inputs, per-frame stream fields, image QA); a new column means a new version here.

Version 2 added seed 002's input signals (signal_*) and made image rows real: a row whose
image_width, image_height and image_bytes are set is an image query (one frame; the video columns
then describe that one frame). Version 1 files still read.

Version 3 added seed 003's crop outcomes (view_* columns: the large model's logits from the global
view, with the attention crop, with a random crop, at full resolution; the attention box; each
view's bytes). Versions 1 and 2 still read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from testbed.errors import TraceError
from testbed.query import (DENSITIES, ContextInputs, ImageMeta, InputSignals, Media, Query, QueryRecord, VideoMeta,
                           ViewOutcomes)

SCHEMA_VERSION = 3
READS = (1, 2, 3)
"""Schema versions this testbed reads: 2 and 3 only added optional columns."""
META_VERSION = b"testbed.schema_version"
META_PROVENANCE = b"testbed.provenance"
META_PARAMS = b"testbed.parameters"

_F32_LIST = pa.list_(pa.float32())
REQUIRED: dict[str, pa.DataType] = {
    "query_id": pa.string(),
    "benchmark": pa.string(),
    "split": pa.string(),
    "duration_s": pa.float64(),
    "fps": pa.float64(),
    "n_frames": pa.int64(),
    "width": pa.int32(),
    "height": pa.int32(),
    "file_bytes": pa.int64(),
    "keyframes": pa.list_(pa.int32()),
    "question": pa.string(),
    "options": pa.list_(pa.string()),
    "answer": pa.int32(),
    "small_logits": _F32_LIST,
    "large_native_logits": _F32_LIST,
    **{f"large_logits_a{a}": _F32_LIST for a in DENSITIES},
}
OPTIONAL: dict[str, pa.DataType] = {
    # stage times measured by a live run, keyed like "local.tokenize.keyframe.pipelined"
    "recorded_s": pa.map_(pa.string(), pa.float64()),
    # the bytes those stages produced (compressed token payloads), under the same keys
    "recorded_bytes": pa.map_(pa.string(), pa.int64()),
    # recorded traces: the small model on the default (1 FPS) sampler's frames (DeviceNative), and
    # the native large model on keyframe-aligned frames (NoSharing); without them the sim uses
    # small_logits and large_native_logits for those paths too
    "small_logits_fps": _F32_LIST,
    "large_native_logits_keyframe": _F32_LIST,
    # ... and the native large model on 1-FPS tokens that went through the codec (Collaborative)
    "large_native_logits_codec": _F32_LIST,
    # bandit context inputs (seed 000 Eq. 4): PCA-ready pooled embeddings and relevance features
    "context_txt": _F32_LIST,
    "context_vis": _F32_LIST,
    "context_s_max": pa.float64(),
    "context_s_mean": pa.float64(),
    "context_s_cplx": pa.float64(),
    # streams (seed 001): one row per frame
    "stream_id": pa.string(),
    "frame_index": pa.int64(),
    "frame_time_s": pa.float64(),
    # image QA (seeds 002, 003): set on an image query's row (all three), null on a video's
    "image_width": pa.int32(),
    "image_height": pa.int32(),
    "image_bytes": pa.int64(),
    # seed 002's image-complexity signals of the media (testbed.router.signals; schema v2)
    "signal_spatial_info": pa.float64(),
    "signal_edge_density": pa.float64(),
    "signal_colourfulness": pa.float64(),
    # seed 003's crop outcomes (testbed.query.ViewOutcomes; schema v3): all set, or none
    "view_global_logits": _F32_LIST,
    "view_crop_logits": _F32_LIST,
    "view_random_logits": _F32_LIST,
    "view_full_logits": _F32_LIST,
    "view_box": pa.list_(pa.int32()),
    "view_global_bytes": pa.int64(),
    "view_crop_bytes": pa.int64(),
    "view_random_bytes": pa.int64(),
}
VIEW_COLUMNS = ("view_global_logits", "view_crop_logits", "view_random_logits", "view_full_logits", "view_box",
                "view_global_bytes", "view_crop_bytes", "view_random_bytes")
SIGNAL_COLUMNS = ("signal_spatial_info", "signal_edge_density", "signal_colourfulness")
SPLITS = ("profile", "test")


@dataclass(frozen=True)
class Workload:
    """A validated trace: its rows as records, provenance and generator parameters."""

    records: tuple[QueryRecord, ...]
    provenance: str
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # one line each, e.g. a video that was cut short

    @property
    def synthetic(self) -> bool:
        return self.provenance.startswith("synthetic:")

    def split(self, name: str) -> tuple[QueryRecord, ...]:
        return tuple(r for r in self.records if r.split == name)

    def benchmarks(self) -> list[str]:
        return list(dict.fromkeys(r.query.benchmark for r in self.records))


def schema_table(frame: pd.DataFrame, provenance: str, parameters: dict[str, Any] | None, *,
                 required: dict[str, pa.DataType], optional: dict[str, pa.DataType], version: int,
                 version_key: bytes, what: str = "trace") -> pa.Table:
    """Arrow table of `frame` under a versioned schema, with provenance and parameters in its metadata;
    checks column names and types (shared by query and stream traces)."""
    if not (provenance.startswith("synthetic:") or provenance.startswith("live:")):
        raise TraceError(f"provenance {provenance!r} must start with 'synthetic:' or 'live:'")
    fields = []
    for name in frame.columns:
        tp = required.get(name) or optional.get(name)
        if tp is None:
            raise TraceError(f"column {name!r} is not in {what} schema v{version}")
        fields.append(pa.field(name, tp))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TraceError(f"{what} is missing required column {missing[0]!r}")
    meta = {version_key: str(version).encode(), META_PROVENANCE: provenance.encode(),
            META_PARAMS: json.dumps(parameters or {}, sort_keys=True).encode()}
    try:
        return pa.Table.from_pandas(frame, schema=pa.schema(fields, metadata=meta), preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TraceError(f"{what} column has the wrong type: {exc}") from None


def check_columns(table: pa.Table, name: str, required: dict[str, pa.DataType], optional: dict[str, pa.DataType],
                  schema: str) -> None:
    """Every column of `table` known to `schema` and of its type, and every required one present."""
    for col in table.column_names:
        want = required.get(col) or optional.get(col)
        if want is None:
            raise TraceError(f"{name}: column {col!r} is not in {schema}")
        if not table.schema.field(col).type.equals(want):
            raise TraceError(f"{name}: column {col!r} has type {table.schema.field(col).type}, expected {want}")
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise TraceError(f"{name}: missing required column {missing[0]!r}")


def to_table(frame: pd.DataFrame, provenance: str, parameters: dict[str, Any] | None = None) -> pa.Table:
    """Arrow table with the trace schema and metadata; validates columns and types."""
    return schema_table(frame, provenance, parameters, required=REQUIRED, optional=OPTIONAL,
                        version=SCHEMA_VERSION, version_key=META_VERSION)


def write_trace(frame: pd.DataFrame, path: Path, provenance: str, parameters: dict[str, Any] | None = None) -> None:
    """Write a workload trace to Parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(frame, provenance, parameters), path)


def read_table(path: Path, what: str = "trace") -> pa.Table:
    """The Parquet table at `path`; a missing or unreadable file is one TraceError naming it."""
    try:
        return pq.read_table(path)
    except FileNotFoundError:
        raise TraceError(f"{what} file not found: {path}") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise TraceError(f"{path}: not a readable Parquet {what} ({exc})") from None


def read_trace(path: Path) -> Workload:
    """Read and validate a workload trace; every problem is one TraceError naming the file."""
    return table_to_workload(read_table(path), str(path))


def table_to_workload(table: pa.Table, name: str = "trace") -> Workload:
    """Validate an Arrow table against the schema and turn its rows into records."""
    meta = table.schema.metadata or {}
    version = meta.get(META_VERSION)
    if version is None:
        raise TraceError(f"{name}: no testbed schema version in the file metadata")
    if version not in {str(v).encode() for v in READS}:
        raise TraceError(f"{name}: schema version {version.decode()} but this testbed reads "
                         f"{', '.join(map(str, READS))}")
    check_columns(table, name, REQUIRED, OPTIONAL, f"trace schema v{SCHEMA_VERSION}")
    provenance = meta.get(META_PROVENANCE, b"").decode()
    params = json.loads(meta.get(META_PARAMS, b"{}").decode() or "{}")
    cols = table.to_pydict()
    records = tuple(_record(cols, i, name) for i in range(table.num_rows))
    return Workload(records, provenance, params)


def _record(cols: dict[str, list[Any]], i: int, name: str) -> QueryRecord:
    options = tuple(cols["options"][i])
    k = len(options)
    qid = cols["query_id"][i]

    def logits(col: str) -> np.ndarray:
        v = np.asarray(cols[col][i], dtype=np.float64)
        if len(v) != k or not np.isfinite(v).all():
            raise TraceError(f"{name}: query {qid}: {col} must hold {k} finite logits, one per option")
        return v

    answer = cols["answer"][i]
    if not 0 <= answer < k:
        raise TraceError(f"{name}: query {qid}: answer {answer} outside its {k} options")
    if cols["split"][i] not in SPLITS:
        raise TraceError(f"{name}: query {qid}: split {cols['split'][i]!r} not one of {SPLITS}")
    n_frames = cols["n_frames"][i]
    keyframes = tuple(int(x) for x in cols["keyframes"][i])
    if n_frames < 1 or any(not 0 <= x < n_frames for x in keyframes):
        raise TraceError(f"{name}: query {qid}: keyframes must lie in [0, n_frames)")
    media: Media = _image(cols, i, name) or VideoMeta(
        float(cols["duration_s"][i]), float(cols["fps"][i]), int(n_frames), int(cols["width"][i]),
        int(cols["height"][i]), int(cols["file_bytes"][i]), keyframes)
    query = Query(qid, cols["benchmark"][i], media, cols["question"][i], options)
    recorded = dict(cols["recorded_s"][i] or []) if "recorded_s" in cols else {}

    def optional(col: str) -> np.ndarray | None:
        return logits(col) if col in cols and cols[col][i] is not None else None

    sizes = {k: int(v) for k, v in (cols["recorded_bytes"][i] or [])} if "recorded_bytes" in cols else {}
    return QueryRecord(query, int(answer), cols["split"][i], logits("small_logits"), logits("large_native_logits"),
                       {a: logits(f"large_logits_a{a}") for a in DENSITIES}, recorded, sizes,
                       small_logits_fps=optional("small_logits_fps"),
                       large_native_logits_keyframe=optional("large_native_logits_keyframe"),
                       large_native_logits_codec=optional("large_native_logits_codec"), context=_context(cols, i, name),
                       signals=_signals(cols, i, name, media), views=_views(cols, i, name, media, logits))


def _image(cols: dict[str, list[Any]], i: int, name: str) -> ImageMeta | None:
    """Row i's image (image QA) if its image_* columns are set; a partly set or non-positive size is an error."""
    values = [cols[c][i] if c in cols else None for c in ("image_width", "image_height", "image_bytes")]
    if all(v is None for v in values):
        return None
    qid = cols["query_id"][i]
    if any(v is None for v in values):
        raise TraceError(f"{name}: query {qid}: an image query needs image_width, image_height and image_bytes")
    width, height, nbytes = (int(v) for v in values if v is not None)
    if width < 1 or height < 1:
        raise TraceError(f"{name}: query {qid}: zero-size image ({width}x{height})")
    if nbytes < 1:
        raise TraceError(f"{name}: query {qid}: image_bytes must be positive, got {nbytes}")
    return ImageMeta(width, height, nbytes)


def _views(cols: dict[str, list[Any]], i: int, name: str, media: Media, logits: Any) -> ViewOutcomes | None:
    """Row i's crop outcomes (seed 003) from its view_* columns: none set is None; a partial set, a
    box outside the image or a non-positive size is an error."""
    values = [cols[c][i] if c in cols else None for c in VIEW_COLUMNS]
    if all(v is None for v in values):
        return None
    qid = cols["query_id"][i]
    if any(v is None for v in values) or not isinstance(media, ImageMeta):
        raise TraceError(f"{name}: query {qid}: crop outcomes need an image query with every view_* column set")
    from testbed.crop import CropError, check_box

    try:
        box = check_box(tuple(int(v) for v in cols["view_box"][i]), media.width, media.height)
    except CropError as exc:
        raise TraceError(f"{name}: query {qid}: view_box: {exc}") from None
    sizes = [int(cols[c][i]) for c in ("view_global_bytes", "view_crop_bytes", "view_random_bytes")]
    if min(sizes) < 1:
        raise TraceError(f"{name}: query {qid}: view bytes must be positive, got {sizes}")
    return ViewOutcomes(logits("view_global_logits"), logits("view_crop_logits"), logits("view_random_logits"),
                        logits("view_full_logits"), box, *sizes)


def _signals(cols: dict[str, list[Any]], i: int, name: str, media: Media) -> InputSignals:
    """Row i's input signals from its signal_* columns (None where absent or null); its bytes per
    pixel from the media's metadata, as a real run measures it."""
    from testbed.router.signals import bytes_per_pixel

    values = []
    for col in SIGNAL_COLUMNS:
        v = cols[col][i] if col in cols else None
        if v is not None and not np.isfinite(v):
            raise TraceError(f"{name}: query {cols['query_id'][i]}: {col} must be finite")
        values.append(None if v is None else float(v))
    return InputSignals(values[0], values[1], values[2], bytes_per_pixel(media))


def _context(cols: dict[str, list[Any]], i: int, name: str) -> ContextInputs:
    """The bandit's context inputs of row i from the optional context_* columns (None where a column
    is absent or the row's value is null)."""
    qid = cols["query_id"][i]

    def embedding(col: str) -> np.ndarray | None:
        v = cols[col][i] if col in cols else None
        if v is None:
            return None
        out = np.asarray(v, dtype=np.float64)
        if out.size == 0 or not np.isfinite(out).all():
            raise TraceError(f"{name}: query {qid}: {col} must hold a non-empty list of finite values")
        return out

    def scalar(col: str) -> float | None:
        v = cols[col][i] if col in cols else None
        if v is None:
            return None
        if not np.isfinite(v):
            raise TraceError(f"{name}: query {qid}: {col} must be finite")
        return float(v)

    return ContextInputs(embedding("context_txt"), embedding("context_vis"), scalar("context_s_max"),
                         scalar("context_s_mean"), scalar("context_s_cplx"))
