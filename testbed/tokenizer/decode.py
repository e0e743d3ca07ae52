"""Decode chosen frames to RGB arrays: PyAV for keyframes only (the physical limit: each keyframe
packet decoded alone, the packets split over a pool of decoders, one reusable RGB scaler each),
decord `get_batch` for arbitrary indices.

decord has reported memory growth across `get_batch` calls (dmlc/decord #157, #208); the known
workaround, `seek(0)` after each batch and one reader per video, is applied. Every failure is a
VideoError naming the file.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any

import av
import numpy as np

from testbed.query import VideoMeta
from testbed.tokenizer.video import VideoError


def only_keyframes(indices: Sequence[int] | np.ndarray, meta: VideoMeta) -> bool:
    """True if every index is a keyframe, so the PyAV keyframe path can serve them."""
    return len(indices) > 0 and set(np.asarray(indices).tolist()) <= set(meta.keyframes)


def _chunks(indices: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    for i in range(0, len(indices), max(1, chunk)):
        yield indices[i : i + chunk]


DECODE_WORKERS = min(2, os.cpu_count() or 1)
"""Decoders the keyframe path splits its packets over by default (PyAV releases the GIL while it decodes)."""


def iter_keyframes(path: Path | str, meta: VideoMeta, indices: Sequence[int] | np.ndarray,
                   chunk: int, workers: int = DECODE_WORKERS) -> Iterator[np.ndarray]:
    """RGB frames (c, H, W, 3) uint8 of the wanted keyframes, `chunk` at a time, decoding only
    their packets, over `workers` decoders (1: in this thread). Keyframe packets come in display
    order, so the j-th is meta.keyframes[j]."""
    return _batched(keyframes(path, meta, indices, workers), chunk)


def keyframes(path: Path | str, meta: VideoMeta, indices: Sequence[int] | np.ndarray,
              workers: int = DECODE_WORKERS) -> Iterator[np.ndarray]:
    """The wanted keyframes one (H, W, 3) frame at a time, in display order."""
    wanted = set(np.asarray(indices).tolist())
    if workers > 1 and len(wanted) > 1:
        return _keyframes_parallel(path, meta, wanted, min(workers, len(wanted)))
    return _keyframes_serial(path, meta, wanted)


def _batched(frames: Iterator[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Frames stacked `chunk` at a time (the last batch may be shorter)."""
    out: list[np.ndarray] = []
    for frame in frames:
        out.append(frame)
        if len(out) >= chunk:
            yield np.stack(out)
            out = []
    if out:
        yield np.stack(out)


_NONKEY = getattr(getattr(av, "stream", None), "Discard", None)


class _ToRGB:
    """Frames to (H, W, 3) uint8 RGB through one reusable scaler in this thread (`to_ndarray` makes a
    scaler, with its own threads, for every frame: 0.3 ms of a 320 x 180 keyframe's 0.5); the same
    pixels as `frame.to_ndarray(format="rgb24")`."""

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._scaler = VideoReformatter()
        self._one_thread: dict[str, int] = {"threads": 1}

    def __call__(self, frame: Any) -> np.ndarray:
        try:
            rgb = self._scaler.reformat(frame, format="rgb24", **self._one_thread)
        except TypeError:  # a PyAV before `threads`
            self._one_thread = {}
            rgb = self._scaler.reformat(frame, format="rgb24")
        return rgb.to_ndarray()


def _wanted_keyframe_packets(container: Any, stream: Any, meta: VideoMeta, wanted: set[int]) -> Iterator[Any]:
    """The packets of the wanted keyframes in file order, stopping after the last one. The demuxer is
    asked to discard the other packets (AVDISCARD_NONKEY: MP4's skips them from its index, five times
    faster than reading each); where it ignores that, they are skipped here."""
    if _NONKEY is not None:
        stream.discard = _NONKEY.nonkey
    ordinal = found = 0
    for packet in container.demux(stream):
        if packet.size == 0 or not packet.is_keyframe:
            continue
        index = meta.keyframes[ordinal] if ordinal < len(meta.keyframes) else -1
        ordinal += 1
        if index in wanted:
            yield packet
            found += 1
            if found == len(wanted):
                return


def _keyframes_serial(path: Path | str, meta: VideoMeta, wanted: set[int]) -> Iterator[np.ndarray]:
    got = 0
    rgb = _ToRGB()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            for packet in _wanted_keyframe_packets(container, stream, meta, wanted):
                for frame in stream.codec_context.decode(packet):
                    got += 1
                    yield rgb(frame)
            if got < len(wanted):
                for frame in stream.codec_context.decode(None):
                    got += 1
                    yield rgb(frame)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(path, f"decoding failed ({exc})") from None
    if got != len(wanted):
        raise VideoError(path, f"truncated or corrupt: decoded {got} of {len(wanted)} keyframes")


_END = object()


def put_unless_stopped(q: "queue.Queue[Any]", item: Any, stop: threading.Event) -> None:
    """Put unless the consumer has stopped (so no decoder waits forever on a full queue)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _decoder(ctx: Any, packets: "queue.Queue[Any]", frames: "queue.Queue[Any]", stop: threading.Event) -> None:
    """One decoder of the pool: its codec context decodes the packets handed to it, in order, then
    flushes; the frames as RGB (scaled here, beside the other decoders), then _END, or the exception,
    go to `frames`."""
    try:
        rgb = _ToRGB()
        while not stop.is_set():
            packet = packets.get()
            for frame in ctx.decode(None if packet is _END else packet):
                put_unless_stopped(frames, rgb(frame), stop)
            if packet is _END:
                break
        put_unless_stopped(frames, _END, stop)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        put_unless_stopped(frames, exc, stop)


def _codec_contexts(stream: Any, n: int) -> list[Any]:
    """`n` decoders configured as the serial path's stream decoder, without a container each (opening
    the file again costs more than a keyframe's decoding)."""
    template = stream.codec_context
    out = []
    for _ in range(n):
        ctx = av.CodecContext.create(template.codec, "r")
        if template.extradata:
            ctx.extradata = template.extradata
        ctx.skip_frame = "NONKEY"
        out.append(ctx)
    return out


def _checked(path: Path | str, item: Any) -> Any:
    """A decoder's item, or its exception raised (a decoding failure as the serial path reports it)."""
    if isinstance(item, (av.FFmpegError, ValueError, OSError)):
        raise VideoError(path, f"decoding failed ({item})") from None
    if isinstance(item, BaseException):
        raise item
    return item


def _count_rest(path: Path | str, q: "queue.Queue[Any]") -> int:
    """Frames a decoder still yields before its end."""
    n = 0
    while _checked(path, q.get()) is not _END:
        n += 1
    return n


def _keyframes_parallel(path: Path | str, meta: VideoMeta, wanted: set[int], workers: int) -> Iterator[np.ndarray]:
    """The serial path's frames, bit for bit: this thread demuxes and deals the j-th wanted packet to
    decoder j % workers; each decoder yields its frames in its packets' order, so reading the decoders'
    queues in turn gives the frames in display order. Output queues are bounded (memory stays a few
    frames per decoder while the consumer is slow)."""
    stop = threading.Event()
    packets: list["queue.Queue[Any]"] = [queue.Queue() for _ in range(workers)]
    frames: list["queue.Queue[Any]"] = [queue.Queue(maxsize=8) for _ in range(workers)]
    threads: list[threading.Thread] = []
    try:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                threads = [threading.Thread(target=_decoder, args=(ctx, packets[k], frames[k], stop), daemon=True,
                                            name=f"keyframe-decoder-{k}")
                           for k, ctx in enumerate(_codec_contexts(stream, workers))]
                for t in threads:
                    t.start()
                for j, packet in enumerate(_wanted_keyframe_packets(container, stream, meta, wanted)):
                    packets[j % workers].put(packet)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise VideoError(path, f"decoding failed ({exc})") from None
        finally:
            for q in packets:
                q.put(_END)
        got = 0
        while got < len(wanted):
            item = _checked(path, frames[got % workers].get())
            if item is _END:  # a decoder ran dry: frames are missing, and the later ones cannot be placed
                got += sum(_count_rest(path, q) for k, q in enumerate(frames) if k != got % workers)
                break
            got += 1
            yield item
        if got != len(wanted):
            raise VideoError(path, f"truncated or corrupt: decoded {got} of {len(wanted)} keyframes")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


def _keyframes_array(path: Path | str, meta: VideoMeta, wanted: set[int], workers: int) -> np.ndarray:
    """The wanted keyframes as one array, from `workers` decoders sharing one queue of packets: this
    thread demuxes, then decodes beside the others; each decoder copies its frames into their rows
    (a decoder's frames come out in the order of the packets it took)."""
    jobs: "queue.Queue[Any]" = queue.Queue()
    lock = threading.Lock()
    box: dict[str, np.ndarray] = {}
    done: list[Any] = []

    def work(ctx: Any) -> None:
        rgb, rows, got = _ToRGB(), collections.deque[int](), 0
        try:
            while True:
                job = jobs.get()
                if job is _END:
                    jobs.put(_END)  # for the next decoder
                    packet = None
                else:
                    row, packet = job
                    rows.append(row)
                for frame in ctx.decode(packet):
                    item = rgb(frame)
                    out = box.get("out")
                    if out is None:
                        with lock:
                            out = box.setdefault("out", np.empty((len(wanted), *item.shape), item.dtype))
                    if out.shape[1:] != item.shape:
                        raise VideoError(path, f"its frames change size ({out.shape[1:]} then {item.shape})")
                    if rows:
                        out[rows.popleft()] = item
                        got += 1
                if packet is None:
                    break
            done.append(got)
        except BaseException as exc:  # re-raised by the caller
            done.append(exc)

    threads: list[threading.Thread] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            mine, *theirs = _codec_contexts(stream, workers)
            threads = [threading.Thread(target=work, args=(ctx,), daemon=True, name=f"keyframe-decoder-{k + 1}")
                       for k, ctx in enumerate(theirs)]
            for t in threads:
                t.start()
            for j, packet in enumerate(_wanted_keyframe_packets(container, stream, meta, wanted)):
                jobs.put((j, packet))
        jobs.put(_END)
        work(mine)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(path, f"decoding failed ({exc})") from None
    finally:
        jobs.put(_END)
        for t in threads:
            t.join()
    for end in done:
        if isinstance(end, BaseException):
            _checked(path, end)
    got = sum(done)
    if got != len(wanted) or "out" not in box:
        raise VideoError(path, f"truncated or corrupt: decoded {got} of {len(wanted)} keyframes")
    return box["out"]


def iter_frames_sequential(path: Path | str, indices: Sequence[int] | np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """RGB frames at `indices`, decoding every frame in order with PyAV (slow, but it reads files
    that decord cannot open, such as an MP4 cut short after its index)."""
    wanted = set(np.asarray(indices).tolist())
    last = max(wanted, default=-1)
    out: list[np.ndarray] = []
    got = 0
    rgb = _ToRGB()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(_frames_until_error(container, stream)):
                if i in wanted:
                    out.append(rgb(frame))
                    got += 1
                    if len(out) >= chunk:
                        yield np.stack(out)
                        out = []
                if i >= last:
                    break
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(path, f"decoding failed ({exc})") from None
    if out:
        yield np.stack(out)
    if got != len(wanted):
        raise VideoError(path, f"truncated or corrupt: decoded {got} of {len(wanted)} frames")


def _frames_until_error(container, stream) -> Iterator:  # type: ignore[no-untyped-def]
    """Decoded frames in display order; a demux or decode error ends the sequence (a file cut short)."""
    try:
        for packet in container.demux(stream):
            yield from packet.decode()
    except (av.FFmpegError, ValueError, OSError):
        try:  # flush the frames the decoder still holds
            yield from stream.codec_context.decode(None)
        except (av.FFmpegError, ValueError, OSError):
            return


def _decord_reader(path: Path | str, threads: int):  # type: ignore[no-untyped-def]
    import decord

    try:
        return decord.VideoReader(str(path), num_threads=threads)
    except (decord.DECORDError, RuntimeError) as exc:
        raise VideoError(path, f"not a readable video ({str(exc).splitlines()[0]})") from None


def iter_frames_decord(path: Path | str, indices: Sequence[int] | np.ndarray, chunk: int,
                       threads: int = 0) -> Iterator[np.ndarray]:
    """RGB frames (c, H, W, 3) uint8 at `indices`, `chunk` at a time, with decord."""
    return _decord_batches(_decord_reader(path, threads), path, indices, chunk)


def _decord_batches(reader, path: Path | str, indices: Sequence[int] | np.ndarray,  # type: ignore[no-untyped-def]
                    chunk: int) -> Iterator[np.ndarray]:
    import decord

    idx = np.asarray(indices, dtype=np.int64)
    try:
        if len(idx) and (idx.min() < 0 or idx.max() >= len(reader)):
            raise VideoError(path, f"frame index out of range 0..{len(reader) - 1}")
        for part in _chunks(idx, chunk):
            try:
                batch = reader.get_batch(part.tolist()).asnumpy()
            except (decord.DECORDError, RuntimeError) as exc:
                raise VideoError(path, f"truncated or corrupt ({str(exc).splitlines()[0]})") from None
            reader.seek(0)  # decord #157/#208: keeps memory flat across batches
            if len(batch) != len(part):
                raise VideoError(path, f"decoded {len(batch)} of {len(part)} frames")
            yield batch
    finally:
        del reader


def iter_frames(path: Path | str, meta: VideoMeta, indices: Sequence[int] | np.ndarray, chunk: int,
                threads: int = 0, workers: int = DECODE_WORKERS) -> Iterator[np.ndarray]:
    """Chunks of decoded frames: the keyframe fast path when it applies (over `workers` decoders),
    decord otherwise (`threads`), and PyAV's sequential decode for a file decord cannot open (it may
    still hold the frames wanted)."""
    if only_keyframes(indices, meta):
        return iter_keyframes(path, meta, indices, chunk, workers)
    try:
        reader = _decord_reader(path, threads)
    except VideoError:
        return iter_frames_sequential(path, indices, chunk)
    return _decord_batches(reader, path, indices, chunk)


def decode(path: Path | str, meta: VideoMeta, indices: Sequence[int] | np.ndarray, threads: int = 0,
           workers: int = DECODE_WORKERS) -> np.ndarray:
    """All frames at `indices` as one (n, H, W, 3) uint8 array."""
    if only_keyframes(indices, meta):  # each frame copied once, into the result
        wanted = set(np.asarray(indices).tolist())
        if workers > 1 and len(wanted) > 1:
            return _keyframes_array(path, meta, wanted, min(workers, len(wanted)))
        out: np.ndarray | None = None
        for i, frame in enumerate(_keyframes_serial(path, meta, wanted)):
            if out is None:
                out = np.empty((len(wanted), *frame.shape), frame.dtype)
            out[i] = frame
        assert out is not None  # the serial path raises unless every wanted frame came
        return out
    parts = list(iter_frames(path, meta, indices, max(1, len(indices)), threads, workers))
    return np.concatenate(parts) if parts else np.zeros((0, meta.height, meta.width, 3), np.uint8)
