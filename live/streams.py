"""Camera streams for real (seed 001), in one process: a source plays a video in real time at the
scenario's frame rate to the local node, the stream policy answers every frame with the real small
model, the edge's large model answers uploaded frames asynchronously (InProcEdge), and every
frame's row records when its answer was given against its deadline.

Videos (`stream.content`): each stream is made with ffmpeg from segments of a few seconds each, so
a frame's label is what its segment shows (single-label, SYNTHETIC): ffmpeg's test sources
("test-sources": tiny models answer noise; the times are real), or easy-VQA test images, the label
being the image's shape ("easy-vqa": the pocket pair answers it for real, and its large head
grounds the shape for visual focus). The source thread decodes each frame just before its capture time, writes it as
a JPEG (what an upload sends) and releases it at t0 + k / fps.

Recording: after the policies, every frame is run once more offline, the way seed 001 logged its
cloud model on every frame (Sec. 4.1.3): the large model (its service time is the trace's
cloud_s), the small model alone, and the small model with the large answer of each earlier frame
up to 10 s back as its history, alone, with GGVR and with GGVR + GRVR on that answer's regions.
That is a stream trace (testbed/streams/trace.py, provenance
``live:<host>:<models>``) that `testbed sim` replays with workload.kind = 'stream-trace'.
"""

from __future__ import annotations

import contextlib
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as cwait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from testbed.live.real import (EdgeLink, InProcEdge, RealInterpreter, RealNode, focused, ground, history_prompt,
                       small_input, to_density)
from testbed.live.videos import SOURCES, made_once, run_ffmpeg
from testbed.errors import TestbedError
from testbed.experiment import Experiment, client_streams, run_totals
from testbed.models.vlm import VLMPair
from testbed.notes import note
from testbed.policies.driver import drive, run_sync
from testbed.policies.effects import Context, Inference, Locate
from testbed.query import ImageMeta
from testbed.ledger import frame_infer_key, image_tokenize_key, locate_key
from testbed.results import RunResult
from testbed.router.calibration import Calibration
from testbed.scenario import Scenario
from testbed.streams.run import FrameRun, StreamRun
from testbed.streams.trace import StreamRecord

Clock = Callable[[], float]
QUESTION = "[synthetic] Which ffmpeg test source does this frame show?"
GENERATOR = "ffmpeg-lavfi-stream"
SIZE = (320, 180)
VIDEO_FPS = 10
MAX_LAG_S = 10.0
ROI_SCALE = 0.3
"""A grounded region's side as a share of the frame's shorter side: edgeVLM's `roi_scale` default."""


def _segments(seconds: float, seed: int, choices: int) -> list[tuple[float, int]]:
    """[(start s, choice)]: segments of 3-8 s, each showing one of `choices` things, seeded."""
    rng = np.random.default_rng([seed, 16])
    segments: list[tuple[float, int]] = []
    t = 0.0
    while t < seconds:
        segments.append((t, int(rng.integers(choices))))
        t += float(rng.uniform(3.0, 8.0))
    return segments


def make_stream_video(path: Path, seconds: float, seed: int) -> list[tuple[float, int]]:
    """A video of `seconds` s cut from test-source segments of 3-8 s; returns [(start s, source)]."""
    segments = _segments(seconds, seed, len(SOURCES))
    if not path.is_file():
        ends = [s for s, _ in segments[1:]] + [seconds]
        cmd = ["-v", "error", "-y"]
        for (start, src), end in zip(segments, ends):
            cmd += ["-f", "lavfi", "-t", f"{end - start:.3f}", "-i",  # life, cellauto, mandelbrot: no duration option
                    f"{SOURCES[src]}=size={SIZE[0]}x{SIZE[1]}:rate={VIDEO_FPS}"]
        n = len(segments)
        scaled = "".join(f"[{i}:v]format=yuv420p,setsar=1[s{i}];" for i in range(n))
        cmd += ["-filter_complex", scaled + "".join(f"[s{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]",
                "-map", "[v]",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        made_once(path, lambda tmp: run_ffmpeg([*cmd, str(tmp)], path.name))
    return segments


def make_shapes_video(path: Path, seconds: float, seed: int, canvas: int = 448, object_px: int = 64,
                      ) -> list[tuple[float, int]]:
    """A video of `seconds` s of easy-VQA test images, one per 3-8 s segment, each shape pasted at
    `object_px` into a `canvas` px frame of its own background at a seeded place (a small object in
    a camera frame: the small model's global view loses it, the large one can ground it); returns
    [(start s, shape index)] (a segment's image is a seeded pick among those of its shape)."""
    from PIL import Image

    from testbed.live.pocket_videos import stitch
    from testbed.models.pocket_data import image_labels, load_split

    segments = _segments(seconds, seed, len(SHAPES))
    if path.is_file():
        return segments
    split = load_split("test")
    shape, _ = image_labels(split)
    rng = np.random.default_rng([seed, 17])
    ends = [t for t, _ in segments[1:]] + [seconds]
    scenes = [max(1, int(round((end - t) * VIDEO_FPS))) for (t, _), end in zip(segments, ends)]

    def make(tmp: Path) -> None:
        pages = []
        for i, (_, s) in enumerate(segments):
            with Image.open(split.images[int(rng.choice(np.flatnonzero(shape == s)))]) as im:
                img = im.convert("RGB")
            page = Image.new("RGB", (canvas, canvas), img.getpixel((0, 0)))
            x, y = (int(v) for v in rng.integers(0, canvas - object_px + 1, size=2))
            page.paste(img.resize((object_px, object_px), Image.Resampling.LANCZOS), (x, y))
            pages.append(tmp.with_name(f"{tmp.stem}-page{i}.png"))
            page.save(pages[-1])
        try:
            _stitch_scenes(stitch, tmp, pages, scenes)
        finally:
            for p in pages:
                p.unlink(missing_ok=True)

    made_once(path, make)
    return segments


def _stitch_scenes(stitch: Callable[..., Path], out: Path, images: list[Path], scenes: list[int]) -> None:
    """One clip holding image i for scenes[i] frames (ffmpeg's concat of per-image clips)."""
    parts = []
    for i, (img, n) in enumerate(zip(images, scenes)):
        parts.append(stitch(out.with_name(f"{out.stem}-part{i}.mp4"), [img], n, VIDEO_FPS))
    listing = out.with_name(f"{out.stem}-parts.txt")
    listing.write_text("".join(f"file '{p.name}'\n" for p in parts))
    try:
        run_ffmpeg(["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-f", "mp4",
                    str(out)], out.name)
    finally:
        listing.unlink(missing_ok=True)
        for p in parts:
            p.unlink(missing_ok=True)


@dataclass(frozen=True)
class Content:
    """What a live stream shows: its question, the categories (one per segment kind), the frame size,
    the video maker, and a generator name for provenance."""

    question: str
    categories: tuple[str, ...]
    size: tuple[int, int]
    make: Callable[[Path, float, int], list[tuple[float, int]]]
    generator: str
    note: str


SHAPES = ("circle", "rectangle", "triangle")
CONTENTS = {
    "test-sources": Content(QUESTION, tuple(SOURCES), SIZE, make_stream_video, GENERATOR,
                            "SYNTHETIC videos (ffmpeg test sources)"),
    "easy-vqa": Content("what shape is in the image", SHAPES, (448, 448), make_shapes_video, "easy-vqa-stream",
                        "SYNTHETIC videos (easy-VQA test shapes, 64 px in 448 px frames)"),
}
"""`stream.content`: what real stream runs play."""


class VideoSource:
    """Plays a video in real time: frame k (at k / fps of the video) is decoded, written as a JPEG
    and released at t0 + k / fps. `frame(k)` blocks until then and returns it as an image."""

    def __init__(self, video: Path, fps: float, n_frames: int, folder: Path, stream_id: str, clock: Clock) -> None:
        self.video, self.fps, self.n = video, fps, n_frames
        self.folder, self.stream_id, self.clock = folder, stream_id, clock
        self.t0 = 0.0
        self._ready = [threading.Event() for _ in range(n_frames)]
        self._media: list[ImageMeta | None] = [None] * n_frames
        self.released_s: list[float] = [float("nan")] * n_frames
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> float:
        """Open the video and decode the first frame (a camera that is already running), then start
        playing; returns t0, the clock time of frame 0's capture."""
        import av

        self._container = av.open(str(self.video))
        self._frames = self._container.decode(video=0)
        self._first = next(self._frames, None)
        self.t0 = self.clock()
        self._thread = threading.Thread(target=self._play, name=f"source-{self.stream_id}", daemon=True)
        self._thread.start()
        return self.t0

    def _play(self) -> None:
        import itertools

        try:
            with self._container:
                frames = itertools.chain([self._first] if self._first is not None else [], self._frames)
                k = 0
                for vf in frames:
                    if k >= self.n:
                        break
                    t = float(vf.pts * vf.time_base) if vf.pts is not None and vf.time_base is not None else 0.0
                    if t + 1e-6 < k / self.fps:
                        continue
                    img = vf.to_image()
                    path = self.folder / f"{self.stream_id}-{k:04d}.jpg"
                    img.save(path, quality=85)
                    self._media[k] = ImageMeta(img.width, img.height, path.stat().st_size, str(path))
                    wait = self.t0 + k / self.fps - self.clock()
                    if wait > 0:
                        time.sleep(wait)
                    self.released_s[k] = self.clock() - self.t0
                    self._ready[k].set()
                    k += 1
            if k < self.n:
                raise TestbedError(f"{self.video.name}: holds {k} frames at {self.fps} FPS, {self.n} asked for")
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting policy
            self.error = exc
            for e in self._ready:
                e.set()

    def frame(self, k: int) -> ImageMeta:
        self._ready[k].wait()
        if self.error is not None:
            raise TestbedError(f"stream source failed: {self.error}")
        media = self._media[k]
        assert media is not None
        return media

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)

    def played(self) -> list[ImageMeta]:
        """The frames released so far, in order (all of them once `join` returned)."""
        return [m for m in self._media if m is not None]


class LiveStreamRun(StreamRun):
    """A StreamRun with the source its frames come from."""

    source: VideoSource | None = None


def live_record(stream_id: str, fps: float, seconds: float, segments: list[tuple[float, int]],
                content: Content = CONTENTS["test-sources"]) -> StreamRecord:
    """A StreamRecord of a generated stream: times and labels known, scores left for the recording."""
    n = int(round(seconds * fps))
    c = len(content.categories)
    times = np.arange(n) / fps
    starts = np.array([s for s, _ in segments])
    labels = np.zeros((n, c), dtype=bool)
    labels[np.arange(n), [segments[int(np.searchsorted(starts, t, side="right")) - 1][1] for t in times]] = True
    zeros = np.zeros((n, c))
    return StreamRecord(stream_id, content.generator, "single-label", fps, content.question, content.categories,
                        content.size[0], content.size[1], times, labels, zeros, zeros, np.zeros(n),
                        np.zeros(n, dtype=np.int64))


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` (0: unchanged) for the block: one thread keeps a frame's
    latency steady when other work shares a small CPU (parallel regions wait for their slowest thread)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def warm_up(pair: VLMPair, edge: RealNode, devices: list[RealNode], folder: Path, density: int,
            content: Content = CONTENTS["test-sources"]) -> None:
    """Run both paths once on a blank frame before any stream starts, as a deployed system would
    be warm when its camera starts: first calls allocate and initialise (uncounted)."""
    from PIL import Image

    path = folder / "warm-up.jpg"
    Image.new("RGB", content.size).save(path)
    for node in (*devices, edge):
        for name, tok in node.tokenizers.items():
            tokens = tok.image(path).tokens
            pair.models[name].option_logits(to_density(tokens, density), content.question, content.categories)
    path.unlink()


def vision_tokens(pair: VLMPair) -> int:
    """Tokens the large model's encoder makes of one frame."""
    return int(pair.encoders["large"].tokens_per_frame)


def run_streams_real(sc: Scenario, pair: VLMPair, folder: Path, mode: str = "inproc",
                     progress: Callable[[int], None] | None = None, note: Callable[[str], None] = note,
                     clock: Clock = time.perf_counter, link: EdgeLink | None = None,
                     ) -> tuple[RunResult, list[tuple[StreamRecord, list[ImageMeta]]]]:
    """Run every stream policy of `sc` for real on generated videos played in real time; uploads go
    to `link` (an edge over a shaped link), or to the edge's steps in this process.
    Returns the result and, per stream, its record and frame images (for `record_trace`)."""
    st = sc.stream
    n = int(round(st.seconds * st.fps))
    if n < 1:
        raise TestbedError("stream.seconds x stream.fps must give at least one frame")
    from testbed.live.run import cache_dir

    content = CONTENTS[st.content]
    videos = []
    for i in range(st.live_streams):
        tag = "" if st.content == "test-sources" else f"{st.content}-"
        path = cache_dir() / "streams" / f"stream-{tag}{st.seconds:g}s-seed{sc.seed}-{i}.mp4"
        videos.append((f"live-{i:02d}", path, content.make(path, st.seconds, sc.seed * 1000 + i)))
    frames_dir = folder / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    edge = RealNode(pair, sc.nodes.edge_gpus, sc.nodes.chunk_frames)
    devices = [RealNode(pair, sc.nodes.local_gpus, sc.nodes.chunk_frames) for _ in range(sc.arrivals.clients)]
    notes: set[str] = set()
    played: dict[str, tuple[StreamRecord, list[ImageMeta]]] = {}
    tokens = vision_tokens(pair)
    lock = threading.Lock()
    ex = Experiment(sc, Calibration(1.0, 1.0), ())
    stack = contextlib.ExitStack()
    stack.enter_context(cpu_threads(st.cpu_threads if sc.models.device == "cpu" else 0))
    try:
        warm_up(pair, edge, devices, frames_dir, sc.models.default_density, content)
        for name in sc.policies.run:
            spec, ctx = ex.prepare(name)
            for node in (edge, *devices):
                node.busy_s = 0.0
            interp = RealInterpreter(devices, edge, link or InProcEdge(), wire_dtype=sc.models.dtype, clock=clock)
            runs: dict[str, LiveStreamRun] = {}
            policy_dir = frames_dir / name
            policy_dir.mkdir(exist_ok=True)

            def client(c: int, queue: tuple[tuple[str, Path, list[tuple[float, int]]], ...]) -> None:
                for stream_id, video, segments in queue:  # a client's streams one after another, as in the sim
                    rec = live_record(stream_id, st.fps, st.seconds, segments, content)
                    run = LiveStreamRun(rec, c, st.tau_s, tokens)
                    run.source = VideoSource(video, st.fps, n, policy_dir, stream_id, clock)
                    run.start_s = run.source.start()

                    def perform(e: Any, run: LiveStreamRun = run) -> Any:
                        return interp.perform(e, run.current if run.current is not None else run)

                    run_sync(drive(spec.fn(run.view(), ctx), perform))
                    run.source.join()
                    end = run.start_s + run.end_s  # the next stream starts when this one ends
                    time.sleep(max(0.0, end - clock()))
                    with lock:
                        runs[stream_id] = run
                        notes.update(run.notes)
                        played.setdefault(stream_id, (rec, run.source.played()))
                    if progress:
                        progress(n)

            t_start = clock()
            try:
                with ThreadPoolExecutor(max_workers=sc.arrivals.clients) as pool:
                    for f in [pool.submit(client, c, q) for c, q in
                              enumerate(client_streams(videos, sc.arrivals.clients)) if q]:
                        f.result()
                cwait([f for r in runs.values() for f in r.futures.values()])
            finally:
                interp.close()
            rows = [row for stream_id, *_ in videos if stream_id in runs for row in runs[stream_id].rows(name, mode)]
            ex.finish(spec, ctx, rows, run_totals(name, clock() - t_start, edge.busy_s, sc.nodes.edge_gpus,
                                                  sum(x["bytes_up"] for x in rows),
                                                  sum(x["bytes_down"] for x in rows)))
    finally:
        stack.close()
        for node in (edge, *devices):
            node.close()
    for x in sorted(notes):
        note(x)
    provenance = f"synthetic:{content.generator}:{sc.seed}"
    result = ex.result(pd.DataFrame(ex.rows), provenance, f"measured ({mode}, models {pair.preset})",
                       {"fps": st.fps, "seconds": st.seconds, "streams": st.live_streams}, mode, sorted(notes), None,
                       random_weights=pair.random_weights)
    return result, list(played.values())


def record_trace(pair: VLMPair, played: list[tuple[StreamRecord, list[ImageMeta]]], density: int,
                 clock: Clock = time.perf_counter, max_lag_s: float = MAX_LAG_S, threads: int = 1,
                 roi_scale: float = ROI_SCALE) -> pd.DataFrame:
    """Every frame once more, offline: the large model (timed: cloud_s) and its grounding of each
    category it names, the small model alone and with each earlier frame's large answer (up to
    `max_lag_s` back) as history: alone, with GGVR, and with GGVR + GRVR. Trace rows."""
    with cpu_threads(threads):
        return _record(pair, played, density, clock, max_lag_s, roi_scale)


def _record(pair: VLMPair, played: list[tuple[StreamRecord, list[ImageMeta]]], density: int, clock: Clock,
            max_lag_s: float, roi_scale: float) -> pd.DataFrame:
    node = RealNode(pair)
    small_tok, large_tok = node.tokenizers["small"], node.tokenizers["large"]
    small, large = pair.models["small"], pair.models["large"]
    rows = []
    try:
        for rec, media in played:
            d_max = max(1, int(round(max_lag_s * rec.fps)))
            large_scores, s_own, times, toks, rois = [], [], [], [], []
            for m in media:
                t0 = clock()
                ts = small_tok.image(m.path).tokens
                t1 = clock()
                own = small.option_logits(to_density(ts, density), rec.question, rec.categories)
                t2 = clock()
                tl = large_tok.image(m.path).tokens
                t3 = clock()
                big = large.option_logits(to_density(tl, density), rec.question, rec.categories)
                t4 = clock()
                loc = Locate(0.0, roi_scale, m.width, m.height, rec.task)
                rois.append(ground(large, tl, rec.categories, big, loc))
                t5 = clock()
                toks.append(ts)
                s_own.append(own)
                large_scores.append(big)
                times.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4))
            for k, m in enumerate(media):
                variants: dict[tuple[str, ...], list[np.ndarray]] = {(): [], ("ggvr",): [], ("ggvr", "grvr"): []}
                spent: dict[tuple[str, ...], list[float]] = {v: [] for v in variants}
                for d in range(1, d_max + 1):
                    if k - d < 0:
                        for v in variants:
                            variants[v].append(s_own[k])
                        continue
                    prompt = history_prompt(rec, Context(k - d, d, Inference("large", large_scores[k - d]))) \
                        + rec.question
                    for v in variants:
                        t0 = clock()
                        data, extra = toks[k], None
                        if v and rois[k - d]:
                            data, extra = focused(toks[k], toks[k - d], rois[k - d], v, m.width, m.height)
                        variants[v].append(small.option_logits(small_input(data, density, extra), prompt,
                                                               rec.categories))
                        spent[v].append(clock() - t0)
                tok_s, own_s, ltok_s, big_s, ground_s = times[k]
                recorded = {image_tokenize_key("local"): tok_s, image_tokenize_key("edge"): ltok_s,
                            frame_infer_key("local", "small", False, False): own_s, locate_key(): ground_s}
                if spent[()]:
                    recorded[frame_infer_key("local", "small", True, False)] = float(np.mean(spent[()]))
                    recorded[frame_infer_key("local", "small", True, True)] = float(np.mean(spent[("ggvr", "grvr")]))
                f32 = [[np.asarray(x, np.float32) for x in variants[v]] for v in variants]
                rows.append({
                    "stream_id": rec.stream_id, "benchmark": rec.benchmark, "frame_index": k,
                    "frame_time_s": float(rec.times[k]), "fps": rec.fps, "task": rec.task, "question": rec.question,
                    "categories": list(rec.categories), "labels": np.flatnonzero(rec.labels[k]).astype(np.int32),
                    "width": np.int32(m.width), "height": np.int32(m.height), "image_bytes": m.file_bytes,
                    "small_logits": np.asarray(s_own[k], np.float32),
                    "large_logits": np.asarray(large_scores[k], np.float32),
                    "cloud_s": big_s, "context_logits": f32[0], "context_ggvr_logits": f32[1],
                    "context_focus_logits": f32[2],
                    "large_rois": np.asarray([[c, *b] for c, b in rois[k]], np.int32).reshape(-1),
                    "large_latency_s": ltok_s + big_s + ground_s, "recorded_s": sorted(recorded.items()),
                    "path": m.path,
                })
    finally:
        node.close()
    return pd.DataFrame(rows)


def host_provenance(pair: VLMPair, mode: str) -> str:
    return f"live:{platform.node() or 'host'}:{pair.preset}:{mode}"


__all__ = ["FrameRun", "LiveStreamRun", "VideoSource", "record_trace", "run_streams_real"]
