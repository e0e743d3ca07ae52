"""The edge node's work: rebuild an Offload from a request and run its steps for real with the
model pair (decompress the tokens, or tokenize the uploaded media first; then the large model),
through the same `placement.run_steps` and real interpreter the in-process run uses.

The reply carries the option logits, the stage times under the sim's keys, and the edge's own
queue and compute time; the transport adds its queue and service time. Uploaded media are written
to a private temporary folder and removed after the request.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from testbed.live.messages import WORKDIR_PREFIX, Reply, Request
from testbed.live.real import InProcEdge, RealInterpreter, RealNode
from testbed.codec.wire import DEFAULT_MAX_BYTES
from testbed.models.vlm import VLMPair
from testbed.policies.driver import run_sync
from testbed.policies.placement import run_steps
from testbed.policies.remote import digest, offload_from_request
from testbed.query import Media, Query, QueryRecord, VideoMeta
from testbed.ledger import REQUEST_KEY, QueryRun
from testbed.tokenizer.image import probe_image
from testbed.tokenizer.video import probe

EMPTY = VideoMeta(0.0, 1.0, 1, 1, 1, 0, (0,))
HELD_MEDIA = 64
"""Image payloads the edge keeps (by SHA-256) for a later round of the same query to name (seed 003's
global view, held while the device makes the crop)."""


def boot_id() -> str:
    """This host's boot id: equal on both ends means one monotonic clock (namespaces share it)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


def take_in(path: Path, kind: str, data: Any) -> Media:
    """An uploaded video or image written to `path` and probed: what the edge does with a media payload
    before its steps (`testbed profile` times it as the `request` stage)."""
    path.write_bytes(data)
    return probe(path) if kind == "video" else probe_image(path)


class ModelEdge:
    """A handler for live.edge_server: the edge's models, its GPU servers and a work folder."""

    def __init__(self, pair: VLMPair, *, gpus: int = 1, chunk_frames: int = 16,
                 max_message_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.node = RealNode(pair, gpus, chunk_frames)
        self.interp = RealInterpreter([], self.node, InProcEdge(), max_message_bytes=max_message_bytes)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        self.boot_id = boot_id()
        self._n = 0
        self._lock = threading.Lock()
        self._held: OrderedDict[str, bytes] = OrderedDict()

    def _hold(self, kind: str, data: Any) -> None:
        if kind != "image":
            return
        key = digest(data)  # outside the lock: workers hash in parallel
        with self._lock:
            self._held[key] = bytes(data)
            self._held.move_to_end(key)
            while len(self._held) > HELD_MEDIA:
                self._held.popitem(last=False)

    def _held_for(self, key: str) -> bytes | None:
        with self._lock:
            return self._held.get(key)

    def close(self) -> None:
        self.interp.close()
        self.node.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _path(self, kind: str) -> Path:
        with self._lock:
            self._n += 1
            n = self._n
        return self.workdir / f"{os.getpid()}-{n}.{'mp4' if kind == 'video' else 'img'}"

    def __call__(self, request: Request) -> Reply:
        files: list[Path] = []

        def media_for(i: int, kind: str, data: Any) -> Media:
            path = self._path(kind)
            files.append(path)
            media = take_in(path, kind, data)
            self._hold(kind, data)
            return media

        try:
            qid = str(request.meta.get("query_id", "?"))
            t0 = time.perf_counter()
            off = offload_from_request(request.meta.get("offload", {}), request.payloads, media_for, self._held_for)
            run = QueryRun(QueryRecord(Query(qid, "edge", EMPTY, "", ()), 0, "test"), 0)
            run.ledger.stage(REQUEST_KEY, time.perf_counter() - t0)  # taking the request in: a stage the sim charges
            result = run_sync(run_steps(off, lambda step: self.interp.perform(step, run, "edge")))
        finally:
            for f in files:
                f.unlink(missing_ok=True)
        ledger = run.ledger
        return Reply({"logits": [float(x) for x in result.option_logits], "model": result.model,
                      "roi": list(result.roi) if result.roi is not None else None,
                      "rois": [[c, *box] for c, box in result.rois],
                      "prefill_tokens": ledger.edge_prefill_tokens,
                      "stages": dict(ledger.stages), "edge_s": ledger.edge_s, "edge_queue_s": ledger.edge_queue_s,
                      "frames": ledger.frames, "decoded": ledger.decoded, "received_at": request.received_at,
                      "boot_id": self.boot_id})
