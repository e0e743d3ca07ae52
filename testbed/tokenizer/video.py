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


def probe(path: Path | str) -> VideoMeta:
    """Frame count, fps, size, bytes and keyframe indices of the first video stream."""
    p = Path(path)
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
            rate = stream.average_rate or stream.guessed_rate
            width, height = stream.codec_context.width, stream.codec_context.height
            pts: list[int] = []
            keys: list[bool] = []
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                pts.append(stamp if stamp is not None else len(pts))
                keys.append(bool(packet.is_keyframe))
    except VideoError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(p, f"not a readable video ({exc})") from None
    n = len(pts)
    if n == 0:
        raise VideoError(p, "no video frames")
    if declared and n < declared:
        raise VideoError(p, f"truncated: the container declares {declared} frames but only {n} are present")
    fps = float(rate) if rate else 0.0
    if not fps > 0 or not width or not height:
        raise VideoError(p, "the stream gives no frame rate or size")
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(np.asarray(pts), kind="stable")] = np.arange(n)
    keyframes = tuple(sorted(int(r) for r, k in zip(rank, keys) if k))
    return VideoMeta(n / fps, fps, n, int(width), int(height), size, keyframes)
