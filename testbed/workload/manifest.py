"""Workloads a user brings: a JSONL manifest of their own media files, or MVBench's annotation JSON.

Manifest, one query a line:
  {"query_id": "q1", "benchmark": "mine", "video": "clips/a.mp4", "question": "...",
   "options": ["...", "..."], "answer": 0, "split": "test"}
`video` (or `image`) is relative to the manifest's folder; `answer` is a 0-based index into
`options`; `benchmark` defaults to the manifest's name and `split` to "test". Every file is probed
(container metadata, no decoding); a bad line is reported with the manifest's name and line number.
A manifest holds no model outcomes: real interpreters compute them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testbed.errors import TraceError
from testbed.jsonfile import read_json
from testbed.query import Media, Query, QueryRecord
from testbed.traces import SPLITS, Workload

KEYS = {"query_id", "benchmark", "video", "image", "question", "options", "answer", "split"}


def probe_media(path: Path, kind: str, notes: list[str] | None = None) -> Media:
    """Metadata of a video (the tokenizer's probe) or an image (its header), with the path in it."""
    if kind == "video":
        from testbed.tokenizer.video import probe

        return probe(path, notes)
    from testbed.tokenizer.image import probe_image

    return probe_image(path)


def _record(obj: Any, where: str, folder: Path, default_benchmark: str, notes: list[str]) -> QueryRecord:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - KEYS
    if unknown:
        raise TraceError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(KEYS))}")
    for key in ("query_id", "question", "options", "answer"):
        if key not in obj:
            raise TraceError(f"{where}: missing {key!r}")
    if ("video" in obj) == ("image" in obj):
        raise TraceError(f"{where}: give exactly one of 'video' and 'image'")
    qid, question, options, answer = obj["query_id"], obj["question"], obj["options"], obj["answer"]
    if not isinstance(qid, str) or not qid:
        raise TraceError(f"{where}: 'query_id' must be a non-empty string")
    if not isinstance(question, str):
        raise TraceError(f"{where}: 'question' must be a string")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise TraceError(f"{where}: 'options' must be a list of at least two strings")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
        raise TraceError(f"{where}: 'answer' must be an index into the {len(options)} options (0-based), "
                         f"got {answer!r}")
    split = obj.get("split", "test")
    if split not in SPLITS:
        raise TraceError(f"{where}: 'split' must be one of {SPLITS}, got {split!r}")
    benchmark = obj.get("benchmark", default_benchmark)
    if not isinstance(benchmark, str) or not benchmark:
        raise TraceError(f"{where}: 'benchmark' must be a non-empty string")
    kind = "video" if "video" in obj else "image"
    rel = obj[kind]
    if not isinstance(rel, str) or not rel:
        raise TraceError(f"{where}: '{kind}' must be a path")
    path = (folder / rel).resolve()
    if not path.is_file():
        raise TraceError(f"{where}: {kind} {rel!r} not found ({path})")
    try:
        media = probe_media(path, kind, notes)
    except TraceError:
        raise
    except Exception as exc:  # the probe's own error (VideoError, ...) gets the manifest's line
        raise TraceError(f"{where}: {exc}") from None
    return QueryRecord(Query(qid, benchmark, media, question, tuple(options)), answer, split)


def read_manifest(path: Path) -> Workload:
    """A JSONL manifest as a Workload (no outcomes); notes on files cut short travel with it, one per
    file however many queries ask about it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TraceError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: not a readable UTF-8 manifest ({exc})") from None
    records = []
    notes: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: invalid JSON ({exc.msg})") from None
        rec = _record(obj, where, path.parent, path.stem, notes)
        if rec.query.query_id in seen:
            raise TraceError(f"{where}: query_id {rec.query.query_id!r} appears twice")
        seen.add(rec.query.query_id)
        records.append(rec)
    if not records:
        raise TraceError(f"{path}: the manifest holds no queries")
    return Workload(tuple(records), f"manifest:{path.name}", notes=tuple(dict.fromkeys(notes)))  # a file once


def read_mvbench(path: Path, video_root: Path | None = None) -> Workload:
    """One MVBench task's annotation JSON (a list of {video, question, candidates, answer}, the
    answer given as the candidate's text) as a Workload; videos are under `video_root`."""
    data = read_json(path, TraceError, "MVBench annotation")
    if not isinstance(data, list) or not data:
        raise TraceError(f"{path}: expected a non-empty JSON list of questions")
    root = video_root or path.parent
    records = []
    notes: list[str] = []
    for i, item in enumerate(data):
        where = f"{path.name}[{i}]"
        if not isinstance(item, dict) or not {"video", "question", "candidates", "answer"} <= set(item):
            raise TraceError(f"{where}: needs video, question, candidates and answer")
        cands = item["candidates"]
        if not isinstance(cands, list) or item["answer"] not in cands:
            raise TraceError(f"{where}: answer {item['answer']!r} is not one of its candidates")
        obj = {"query_id": f"{path.stem}-{i:05d}", "benchmark": "mvbench", "video": item["video"],
               "question": item["question"], "options": cands, "answer": cands.index(item["answer"])}
        records.append(_record(obj, where, root, "mvbench", notes))
    return Workload(tuple(records), f"manifest:mvbench:{path.name}", notes=tuple(dict.fromkeys(notes)))
