"""A stream in flight, the same for every interpreter: its frames' runs (ledger, answer, when it
was given), the futures its policy started, and the per-frame result rows.

The interpreter hands each effect the run of the frame that was current when the policy yielded
it (`StreamRun.current`), so a frame's ledger holds its own work and that of every future started
while it was current, whenever that work finishes. Times here are on the stream's clock: seconds
since the stream started, the clock frame times and deadlines are on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from testbed.errors import TestbedError
from testbed.policies.effects import FrameAnswer
from testbed.query import Frame, ImageMeta, Stream
from testbed.ledger import Ledger, Replayed
from testbed.streams.trace import FrameRecord, StreamRecord


@dataclass
class FrameRun(Replayed):
    """One frame: its record, ledger and answer. `local_s` is when the policy emitted its answer
    (the local path), `final_s` when the answer that stands was given (a large answer's arrival
    when it replaced the local one)."""

    rec: FrameRecord
    client: int
    stream: "StreamRun"
    ledger: Ledger = field(default_factory=Ledger)
    answer: FrameAnswer | None = None
    local_s: float = math.nan
    final_s: float = math.nan
    ggvr_tokens: int = 0  # the context frame's region tokens GGVR added to the small model's input

    @property
    def futures(self) -> dict[int, Any]:
        return self.stream.futures

    @property
    def request_id(self) -> str:
        return f"{self.stream.rec.stream_id}:{self.rec.index}"

    @property
    def query_run(self) -> None:
        return None

    @property
    def frame_run(self) -> FrameRun:
        return self

    @property
    def deadline_s(self) -> float:
        return self.rec.time_s + self.stream.tau_s

    def frame(self) -> Frame:
        s = self.stream.rec
        path = s.paths[self.rec.index] if s.paths else ""
        media = ImageMeta(s.width, s.height, int(s.image_bytes[self.rec.index]), path)
        return Frame(s.stream_id, self.rec.index, self.rec.time_s, self.deadline_s, media)


@dataclass
class StreamRun:
    """One stream in flight on client `client`, started at `start_s` on the interpreter's clock."""

    rec: StreamRecord
    client: int
    tau_s: float
    vision_tokens: int
    start_s: float = 0.0
    cloud_extra_s: float = 0.0  # added to the recorded cloud service time (sim)
    frames: list[FrameRun] = field(default_factory=list)
    futures: dict[int, Any] = field(default_factory=dict)
    next_index: int = 0
    current: FrameRun | None = None
    notes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.frames:
            self.frames = [FrameRun(self.rec.frame(i), self.client, self) for i in range(self.rec.n)]

    @property
    def stream(self) -> "StreamRun":
        return self

    @property
    def end_s(self) -> float:
        """When the stream ends: its last frame's deadline. Answers after it are dropped."""
        return float(self.rec.times[-1]) + self.tau_s

    def view(self) -> Stream:
        r = self.rec
        return Stream(r.stream_id, r.benchmark, r.task, r.question, r.categories, r.fps, self.tau_s,
                      self.vision_tokens)

    def advance(self) -> FrameRun | None:
        """The next frame's run (now current), or None after the last."""
        if self.next_index >= self.rec.n:
            self.current = None
            return None
        self.current = self.frames[self.next_index]
        self.next_index += 1
        return self.current

    def emit(self, index: int, answer: FrameAnswer, now_s: float) -> FrameRun | None:
        """Record frame `index`'s answer at stream time `now_s`; None (dropped) after the stream's end."""
        if not 0 <= index < self.next_index:
            raise TestbedError(f"stream {self.rec.stream_id}: an answer for frame {index}, which has not been "
                               "captured yet")
        fr = self.frames[index]
        if fr.answer is not None or not math.isnan(fr.local_s):
            raise TestbedError(f"stream {self.rec.stream_id}: frame {index} answered twice")
        fr.local_s = now_s
        if now_s > self.end_s:
            return None
        fr.answer, fr.final_s = answer, now_s
        return fr

    def upgrade(self, index: int, answer: FrameAnswer, now_s: float, until_s: float) -> bool:
        """A large answer for frame `index` arrived at `now_s`: it replaces the recorded one if it
        is on time (by `until_s` and the stream's end). Returns whether it did."""
        fr = self.frames[index]
        if now_s > min(until_s, self.end_s) or fr.answer is None:
            return False
        fr.answer, fr.final_s = answer, now_s
        return True

    def rows(self, policy: str, mode: str) -> list[dict[str, Any]]:
        """One result row per frame; call once every future the stream started has finished."""
        r = self.rec
        out = []
        for fr in self.frames:
            i = fr.rec.index
            a = fr.answer or FrameAnswer((), "none")
            ctx_lag = (float(r.times[i] - r.times[a.context_frame]) if a.context_frame >= 0 else math.nan)
            late = fr.local_s - fr.deadline_s if not math.isnan(fr.local_s) else math.inf
            ledger = fr.ledger
            out.append({
                "policy": policy, "mode": mode, "benchmark": r.benchmark, "stream_id": r.stream_id, "task": r.task,
                "client": self.client, "frame_index": i, "frame_time_s": float(r.times[i]),
                "deadline_s": fr.deadline_s, "emit_s": fr.final_s, "local_s": fr.local_s,
                "local_lateness_s": late, "local_missed": bool(late > 0), "answered": fr.answer is not None,
                "n_categories": len(r.categories), "labels": [int(x) for x in r.labels[i].nonzero()[0]],
                "pred": list(a.labels), "source": a.source, "context_frame": a.context_frame,
                "context_lag_s": ctx_lag, "uploaded": fr.ledger.round_trips > 0, "ggvr_tokens": fr.ggvr_tokens,
                "bytes_up": ledger.bytes_up,
                "bytes_down": ledger.bytes_down, "t_local_s": ledger.local_s, "t_local_queue_s": ledger.local_queue_s,
                "t_uplink_s": ledger.uplink_s, "t_edge_queue_s": ledger.edge_queue_s, "t_edge_s": ledger.edge_s,
                "t_downlink_s": ledger.downlink_s, "stage_s": ledger.stages,
            })
        return out
