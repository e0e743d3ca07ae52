"""Read a video container's metadata, keyframe indices included, without decoding (PyAV).

PyAV is used for probing because it reads packet flags in one demux pass and reports bad input
as exceptions (decord prints C++ errors and, on some inputs, aborts). Keyframe indices are in
display order: a packet's rank by presentation time.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from testbed.errors import TestbedError
from testbed.query import VideoMeta


class VideoError(TestbedError):
    """A video that cannot be used: missing, empty, truncated, corrupt or without a video stream.

    Every decoding and probing function in testbed.tokenizer raises this type, naming the file."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


SLACK_FRAMES = 1
"""Frames a container may declare beyond those present without comment: AVI headers often count
one more than the stream holds, and ffmpeg, OpenCV and decord all play such files."""


def frame_span(pts: list[int], fps: float, time_base: float) -> int:
    """How many frame intervals the timestamps cover, first to last inclusive: the frame count for a
    stream with a frame at every interval, more for a sparse one (len(pts) when the rate is unknown)."""
    if len(pts) < 2 or not fps > 0 or not time_base > 0:
        return len(pts)
    ticks = 1.0 / (fps * time_base)  # timestamp units per frame
    return max(len(pts), int(round((max(pts) - min(pts)) / ticks)) + 1)


def probe(path: Path | str, notes: list[str] | None = None) -> VideoMeta:
    """Frame count, fps, size, bytes and keyframe indices of the first video stream.

    A file cut short (its timestamps end before the declared frame count or duration, beyond
    SLACK_FRAMES, or a demux error after the first frames) keeps the frames before the cut, without
    its last packet (it may be partial); a one-line note saying so is appended to `notes`. A sparse
    file (an AVI holding fewer frames than it declares, spread over its whole length) is whole: its
    duration is the span of its timestamps and its fps the frames it holds per second of that span.
    What cannot be demuxed raises VideoError."""
    p = Path(path)
    if p.is_dir():
        raise VideoError(p, "is a folder, not a video file")
    if not p.is_file():
        raise VideoError(p, "no such file")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(p, "file is empty")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise VideoError(p, "no video stream")
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            declared_s = container.duration / 1e6 if container.duration else 0.0  # AV_TIME_BASE units
            rate = stream.average_rate or stream.guessed_rate
            width, height = stream.codec_context.width, stream.codec_context.height
            pts: list[int] = []
            keys: list[bool] = []
            cut = ""
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    stamp = packet.pts if packet.pts is not None else packet.dts
                    pts.append(stamp if stamp is not None else len(pts))
                    keys.append(bool(packet.is_keyframe))
            except (av.FFmpegError, ValueError, OSError) as exc:
                if not pts:
                    raise
                cut = f"demuxing stopped after {len(pts)} frames ({exc})"
    except VideoError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(p, f"not a readable video ({exc})") from None
    fps = float(rate) if rate else 0.0
    span = frame_span(pts, fps, float(stream.time_base) if stream.time_base else 0.0)
    if not cut and declared and span < declared - SLACK_FRAMES:
        cut = (f"the container declares {declared} frames but its timestamps end after {span}"
               + (f" ({len(pts)} frames present)" if span != len(pts) else ""))
    if not cut and not declared and declared_s and fps > 0 and span < declared_s * fps - SLACK_FRAMES - 1:
        cut = f"the container declares {declared_s:.2f} s but only {span / fps:.2f} s of frames are present"
    if cut and len(pts) > 1:  # the last packet before a cut may be partial
        pts, keys = pts[:-1], keys[:-1]
    n = len(pts)
    if n == 0:
        raise VideoError(p, "no video frames")
    if cut and notes is not None:
        notes.append(f"{p}: cut short: {cut}; using its first {n} frames")
    if not fps > 0 or not width or not height:
        raise VideoError(p, "the stream gives no frame rate or size")
    if not cut and span > n + SLACK_FRAMES:  # sparse: n frames over the whole span (an AVI's skipped frames)
        fps = fps * n / span
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(np.asarray(pts), kind="stable")] = np.arange(n)
    keyframes = tuple(sorted(int(r) for r, k in zip(rank, keys) if k))
    return VideoMeta(n / fps, fps, n, int(width), int(height), size, keyframes, str(p))
