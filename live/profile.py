"""Measure a hardware profile on this machine: each stage's latency against its size, with warm-up
and repeats (the median of each), for the role's models: `local` is the device (the small model and
its encoder), `edge` the server (the large model and its encoder).

Stages and sizes as testbed.profiles documents them: decode per megapixel and per seek, preprocess
and encode per frame, prefill and generate per token, merge per frame, compress and decompress per
raw byte. The clock is read here (live/), never in the core.
"""

from __future__ import annotations

import platform
from functools import partial
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import torch

from testbed.codec.merge import merge_to_density
from testbed.codec.wire import decode_message, encode_message
from testbed.models.vlm import VLMPair
from testbed.profiles import MIN_REPEATS, OPTIONAL_STAGES, STAGES, Curve, DeviceProfile
from testbed.results import versions
from testbed.tokenizer.decode import decode
from testbed.tokenizer.video import probe

Clock = Callable[[], float]
LIBRARIES = ("torch", "transformers", "av", "decord", "numpy", "zstandard")


def library_versions() -> dict[str, str]:
    """The versions a measured stage time depends on."""
    return versions(LIBRARIES)


def device_name(device: str) -> str:
    """What the profile was measured on: the torch device and the CPU."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} {torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{device} {cpu} x{torch.get_num_threads()} threads"


SIZES = {"decode": (8, 32, 96, 384), "encode": (4, 16, 64), "prefill": (4, 16, 32, 64, 128, 512),
         "merge": (16, 64, 256)}
"""Frames measured per stage (prefill up to the most frames a sampler takes, and densely around the 64
frames of the 1-FPS sampler: attention grows faster than linearly, so a chord between far-apart sizes
overstates the middle); merge's sizes also time compress and decompress."""


def _median(work: Callable[[], Any], repeats: int, clock: Clock) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = clock()
        work()
        times.append(clock() - t0)
    return statistics.median(times)


class LiveThread:
    """Runs the profiler's timed work where live queries run theirs: in a worker thread (never the main
    thread: torch's intra-op parallelism differs between them, 0.9 s against 0.02 s for one 64-frame
    forward pass measured here), with this process's torch thread count. `seen` records both for each
    measurement, so a test can check the settings rather than the times."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile")
        self.seen: set[tuple[bool, int]] = set()

    def median(self, work: Callable[[], Any], repeats: int, clock: Clock) -> float:
        def run() -> float:
            self.seen.add((threading.current_thread() is threading.main_thread(), torch.get_num_threads()))
            return _median(work, repeats, clock)
        return self._pool.submit(run).result()

    def call(self, work: Callable[[], Any]) -> Any:
        """`work()` in the worker thread."""
        return self._pool.submit(work).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _curve(points: list[tuple[float, float]]) -> Curve:
    """A piecewise-linear curve through the per-size medians, anchored at (0, 0) so small sizes
    extrapolate sensibly, fitted isotonic (more work never costs less): a noisy spike at one size is
    pooled with its neighbours instead of being carried to every larger size."""
    from sklearn.isotonic import IsotonicRegression

    xs = np.array([0.0] + [float(x) for x, _ in points])
    ys = np.array([0.0] + [max(0.0, float(y)) for _, y in points])
    fit = IsotonicRegression(y_min=0.0, increasing=True).fit_transform(xs, ys)
    return Curve(tuple(xs.tolist()), tuple(float(y) for y in fit))


def measure(role: str, pair: VLMPair, video: Path, *, repeats: int = MIN_REPEATS, clock: Clock = time.perf_counter,
            progress: Callable[[str], None] = lambda s: None, decode_videos: Sequence[Path] = (),
            runner: LiveThread | None = None, chunk_frames: int = 16) -> DeviceProfile:
    """Every stage of `role` ("local": small model, "edge": large model) as the live path runs it: in a
    worker thread (`LiveThread`), frames encoded in chunks of `chunk_frames` as the tokenizer feeds them,
    one forward pass per Infer (no generate step: live reads the option letters' logits after the
    prefill). Decoding on `video` (the mean over it and `decode_videos` of its size, since decoding
    costs depend on the content)."""
    own = runner is None
    runner = runner or LiveThread()
    try:
        return _measure(role, pair, video, repeats, clock, progress, decode_videos, runner, chunk_frames)
    finally:
        if own:
            runner.close()


def _measure(role: str, pair: VLMPair, video: Path, repeats: int, clock: Clock, progress: Callable[[str], None],
             decode_videos: Sequence[Path], runner: LiveThread, chunk_frames: int) -> DeviceProfile:
    _median = runner.median  # every timed work runs in the runner's worker thread
    side = "small" if role == "local" else "large"
    enc, model = pair.encoders[side], pair.models[side]
    meta = probe(video)
    mpx = meta.megapixels
    stages: dict[str, Curve] = {}

    progress("decode")
    metas = [(video, meta)] + [(v, m) for v, m in ((v, probe(v)) for v in decode_videos)
                               if (m.width, m.height) == (meta.width, meta.height) and v != video]
    counts = [c for c in SIZES['decode'] if c <= min(m.n_frames for _, m in metas)]
    dec = [(c * mpx, float(np.mean([_median(partial(decode, v, m, list(range(c))), repeats, clock)
                                    for v, m in metas]))) for c in counts]
    stages["decode"] = _curve(dec)
    progress("seek")
    keys = list(meta.keyframes)
    seek_pts = []
    for k in (2, 4, 8):
        if k > len(keys):
            break
        t = _median(partial(decode, video, meta, keys[:k]), repeats, clock)
        seek_pts.append((float(k), max(0.0, t - stages["decode"](k * mpx))))
    stages["seek"] = _curve(seek_pts or [(1.0, 0.0)])
    frames = decode(video, meta, list(range(min(64, meta.n_frames))))
    progress("preprocess, encode")
    stages["preprocess"], stages["encode"] = _encoder_curves(enc, frames, repeats, clock, chunk_frames, _median)
    large = pair.encoders["large"]
    if role == "local" and large is not enc:  # Collaborative tokenizes on the device with the large model's encoder
        progress("preprocess, encode (the large model's encoder)")
        stages["large_preprocess"], stages["large_encode"] = _encoder_curves(large, frames, repeats, clock,
                                                                             chunk_frames, _median)
    progress("pipelined tokenizer")
    ratio = pipeline_ratio(enc, video, meta, repeats, clock, chunk_frames, runner)
    progress("prefill")
    question, options = "Which test source does this video show?", ("bars", "noise", "fractal", "life")
    text = model.text_tokens(question, options)
    pf = []
    density = min(16, enc.tokens_per_frame)
    for n in SIZES['prefill']:
        # as the real interpreter's Infer: the encoder's tokens merged to the density, then the model
        raw = torch.randn(n, enc.tokens_per_frame, enc.dim, generator=torch.Generator().manual_seed(n))
        pf.append((float(n * density + text), _median(partial(_infer, model, raw, density, question, options),
                                                      repeats, clock)))
    stages["prefill"] = _curve(pf)
    stages["generate"] = _curve([(1.0, 0.0), (4.0, 0.0)])  # live runs one forward pass: nothing to generate
    progress("merge, compress, decompress")
    mg, cp, dc = [], [], []
    for n in SIZES['merge']:
        tokens = torch.randn(n, enc.tokens_per_frame, enc.dim, generator=torch.Generator().manual_seed(n))
        mg.append((float(n), _median(partial(merge_to_density, tokens, density), repeats, clock)))
        merged = merge_to_density(tokens, density)[0].half()
        nbytes = merged.numel() * merged.element_size()
        cp.append((float(nbytes), _median(partial(encode_message, merged), repeats, clock)))
        dc.append((float(nbytes), _median(partial(decode_message, encode_message(merged)), repeats, clock)))
    stages["merge"], stages["compress"], stages["decompress"] = _curve(mg), _curve(cp), _curve(dc)
    assert set(STAGES) <= set(stages) <= set(STAGES + OPTIONAL_STAGES)
    if role == "edge":
        progress("request, reply")
        stages["request"] = request_curve([video, *decode_videos], repeats, clock, runner)
        stages["reply"] = reply_curve(max(repeats, 20), runner)
    return DeviceProfile(f"{role}: {pair.preset} {side} model on {device_name(str(getattr(model, 'device', 'cpu')))}",
                         stages, pipeline_ratio=ratio)


def _flat(points: list[tuple[float, float]]) -> Curve:
    """A curve through per-size medians that keeps its fixed part: flat below the smallest size, isotonic
    over the sizes (a cost that is mostly fixed, such as opening a file, must not scale down to 0)."""
    from sklearn.isotonic import IsotonicRegression

    pts = sorted(dict(points).items())
    xs = np.array([float(x) for x, _ in pts])
    ys = IsotonicRegression(y_min=0.0, increasing=True).fit_transform(xs, np.array([float(y) for _, y in pts]))
    if len(xs) == 1:
        return Curve((0.0, float(xs[0])), (float(ys[0]), float(ys[0])))
    return Curve((0.0, *xs.tolist()), (float(ys[0]), *(float(y) for y in ys)))


def request_curve(videos: Sequence[Path], repeats: int, clock: Clock, runner: LiveThread) -> Curve:
    """The edge taking a video upload in (written to its scratch folder and probed, as live.edge_node
    does), per upload byte, on each of `videos`."""
    import tempfile

    from testbed.live.edge_node import take_in

    points = []
    with tempfile.TemporaryDirectory(prefix="testbed-profile-") as d:
        for i, v in enumerate(dict.fromkeys(videos)):
            data = Path(v).read_bytes()
            points.append((float(len(data)), runner.median(partial(take_in, Path(d) / f"{i}.mp4", "video", data),
                                                           repeats, clock)))
    return _flat(points)


def reply_curve(repeats: int, runner: LiveThread) -> Curve:
    """The request/reply machinery's time on the way down, beyond the link: a reply's trip from the edge's
    handler to the device's caller (the edge server encoding and sending it, ZeroMQ's I/O threads, the
    client receiving and decoding), measured on loopback with the real server and client, from a worker
    thread as live queries ask. One clock on both ends (one host), so the receipt time splits each round
    trip exactly, as live.remote_edge does."""
    from testbed.live.client import EdgeClient
    from testbed.live.edge_server import EdgeServer
    from testbed.live.handlers import probe as probe_handler
    from testbed.codec.size import REPLY_BYTES

    def down(client: EdgeClient) -> float:
        r = client.request({"op": "sink"}, [bytes(1024)])
        up = float(r.meta["received_at"]) - r.sent_at
        edge = float(r.timing.get("queue_s", 0.0)) + float(r.timing.get("service_s", 0.0))
        return max(0.0, r.round_trip_s - up - edge)

    with EdgeServer("tcp://127.0.0.1:*", probe_handler) as server:
        server.start()
        with EdgeClient(server.endpoint, timeout_s=10.0) as client:
            seconds = runner.call(lambda: [down(client) for _ in range(repeats + 1)][1:])  # the first connects
    return _flat([(float(REPLY_BYTES), statistics.median(seconds))])


def _encoder_curves(enc: Any, frames: np.ndarray, repeats: int, clock: Clock, chunk_frames: int,
                    median: Callable[..., float]) -> tuple[Curve, Curve]:
    """Preprocess and encode curves of `enc` over SIZES['encode'] frames (encoded in the tokenizer's chunks)."""
    pre, encd = [], []
    for n in SIZES['encode']:
        batch = np.concatenate([frames] * (n // len(frames) + 1))[:n]
        pre.append((float(n), median(partial(enc.preprocess, batch), repeats, clock)))
        chunks = torch.split(enc.preprocess(batch), chunk_frames)
        encd.append((float(n), median(lambda: [enc.encode(c) for c in chunks], repeats, clock)))  # noqa: B023
    return _curve(pre), _curve(encd)


def pipeline_ratio(enc: Any, video: Path, meta: Any, repeats: int, clock: Clock, chunk_frames: int = 16,
                   runner: LiveThread | None = None) -> float:
    """The pipelined tokenizer's makespan over the sequential one's on `video` (1 FPS, as the
    baselines sample): below 1 where its stages overlap on separate resources, 1 or more where they
    share the cores (a CPU-only device)."""
    from testbed.tokenizer.pipeline import Tokenizer
    from testbed.tokenizer.sampling import DEFAULT_SAMPLER

    with Tokenizer(enc, clock, chunk_frames=chunk_frames) as tok:
        timed = runner.median if runner is not None else _median
        walls = {p: timed(partial(tok, video, DEFAULT_SAMPLER, pipelined=p, meta=meta), repeats, clock)
                 for p in (False, True)}
    return walls[True] / walls[False] if walls[False] > 0 else 1.0


def _infer(model: Any, tokens: torch.Tensor, density: int, question: str, options: tuple[str, ...]) -> Any:
    from testbed.live.real import to_density

    return model.option_logits(to_density(tokens, density), question, options)


def stage_table(pair: VLMPair, repeats: int = 3, clock: Clock = time.perf_counter,
                prefill_tokens: Sequence[int] = (1024, 4096, 16384), density: int = 16) -> list[dict[str, Any]]:
    """Per role, the figures seed 000's Fig. 2 breaks a query into: the encoder's frames per second (64
    frames in chunks of 16, as the pipeline feeds it), the LM prefill in ms at each token count (vision
    tokens at `density` a frame plus the prompt) and ToMe merging in ms per frame. Measured in a worker
    thread, as live queries run, with this process's torch thread count."""
    from concurrent.futures import ThreadPoolExecutor

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def timed(work: Callable[[], Any]) -> float:
        def run() -> None:
            work()
            sync()
        return _median(run, repeats, clock)

    rows = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile") as pool:
        for side in ("small", "large"):
            enc, model = pair.encoders[side], pair.models[side]
            frames = np.random.default_rng(0).integers(0, 256, (64, 180, 320, 3), dtype=np.uint8)
            pixels = [enc.preprocess(frames[i:i + 16]) for i in range(0, 64, 16)]
            enc_s = pool.submit(timed, lambda: [enc.encode(p) for p in pixels]).result()  # noqa: B023
            row: dict[str, Any] = {"role": side, "model": pair.preset, "encoder_frames_per_s": 64 / enc_s}
            question, options = "Which test source does this video show?", ("bars", "noise", "fractal", "life")
            text = model.text_tokens(question, options)
            a = min(density, enc.tokens_per_frame)
            for n in prefill_tokens:
                f = max(1, (n - text) // a)
                v = torch.randn(f, a, enc.dim, generator=torch.Generator().manual_seed(n))
                row[f"prefill_ms_{n // 1024}k"] = 1e3 * pool.submit(
                    timed, lambda: model.option_logits(v, question, options)).result()  # noqa: B023
            tokens = torch.randn(64, enc.tokens_per_frame, enc.dim, generator=torch.Generator().manual_seed(64))
            tokens = tokens.to(enc.device)
            row["merge_ms_per_frame"] = 1e3 * pool.submit(timed, lambda: merge_to_density(tokens, a)).result() / 64
            rows.append(row)
    return rows
