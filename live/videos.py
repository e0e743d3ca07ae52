"""Videos made with ffmpeg (the binary imageio-ffmpeg ships, libx264) for real runs of scenarios
whose workload is synthetic, and for the tests.

Each generated clip shows one of ffmpeg's test sources; its question asks which, so the answer is
real (a model can learn it) but the queries are SYNTHETIC, and the workload says so. Three length
classes mirror the synthetic benchmarks (short clips, minutes, several minutes), with fixed GOPs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from collections.abc import Callable

import numpy as np

from testbed.errors import TestbedError

SOURCES = ("testsrc2", "smptebars", "rgbtestsrc", "mandelbrot", "life", "cellauto")
"""ffmpeg lavfi sources: what a generated clip shows, and the options of its question."""
CLASSES = {
    # benchmark-like class: (seconds low, seconds high, fps, gop choices)
    "mvbench": (4.0, 16.0, 30, (30, 60, 300)),
    "videomme": (40.0, 120.0, 30, (60, 125, 250)),
    "mlvu": (150.0, 300.0, 25, (125, 250)),
}
SOURCE_OPTIONS = {"mandelbrot": ":maxiter=256:end_pts=4000"}
"""Options that keep a source's cost flat over a clip: mandelbrot's default zoom deepens with time (a
292-s clip took over 600 s); capped iterations and a slow zoom make one 4 s here."""
SIZE = "160x90"
GENERATOR = "ffmpeg-lavfi"


def ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_ffmpeg(args: list[str], made: str, stdin: bytes | None = None) -> None:
    """Run the bundled ffmpeg with `args`; a failure or a 10-minute hang is one TestbedError naming `made`."""
    try:
        subprocess.run([ffmpeg(), *args], input=stdin, check=True, timeout=600, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise TestbedError(f"ffmpeg could not make {made}: {exc}") from None


def encode(out: Path, seconds: float, fps: int = 30, size: str = "320x180", gop: int = 150,
           source: str = "testsrc2", container_args: tuple[str, ...] = ()) -> Path:
    """A lavfi test-source video with a fixed GOP (`-g N -keyint_min N -sc_threshold 0` puts a
    keyframe exactly every N frames)."""
    lavfi = f"{source}=size={size}:rate={fps}{SOURCE_OPTIONS.get(source, '')}"
    run_ffmpeg(["-v", "error", "-y", "-f", "lavfi", "-i", lavfi, "-t", f"{seconds:.3f}", "-c:v", "libx264",
           "-preset", "ultrafast", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt",
           "yuv420p", *container_args, str(out)], out.name)
    return out


def made_once(path: Path, make: Callable[[Path], object]) -> Path:
    """`path`, made by `make(tmp)` unless it exists: under a lock per file (so concurrent runs sharing a
    cache make each file once and never read a half-written one), into a temporary name unique to this
    process (the suffix kept, for ffmpeg), renamed atomically; a failed or interrupted make leaves no
    temporary behind."""
    import fcntl
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return path
        tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp{path.suffix}"
        try:
            make(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def generated_manifest(folder: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Make (or reuse) `per_class` clips per length class in `folder` and a manifest of their
    synthetic questions; 30% of each class is the profiling split. Returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"synthetic-{per_class}x{len(CLASSES)}-seed{seed}.jsonl"
    if manifest.is_file() and all((folder / json.loads(line)["video"]).is_file()
                                  for line in manifest.read_text().splitlines() if line.strip()):
        return manifest
    rng = np.random.default_rng([seed, 77])
    lines = []
    for bench, (lo, hi, fps, gops) in CLASSES.items():
        n_profile = round(0.3 * per_class)
        for i in range(per_class):
            seconds = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            gop = int(rng.choice(gops))
            source = str(rng.choice(SOURCES))
            name = f"{bench}-{i:02d}-{source}-{seconds:.0f}s-g{gop}.mp4"
            made_once(folder / name, lambda tmp: encode(tmp, seconds, fps, SIZE, gop, source))  # noqa: B023
            options = [str(o) for o in rng.permutation(SOURCES)[:4]]
            if source not in options:
                options[int(rng.integers(4))] = source
            lines.append({"query_id": f"gen-{bench}-{i:02d}", "benchmark": bench, "video": name,
                          "question": "[synthetic] Which ffmpeg test source does this video show?",
                          "options": options, "answer": options.index(source),
                          "split": "profile" if i < n_profile else "test"})
    text = "".join(json.dumps(x) + "\n" for x in lines)  # the same for the same seed: made once, like the clips
    return made_once(manifest, lambda tmp: tmp.write_text(text))
