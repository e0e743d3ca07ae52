"""Decode chosen frames to RGB arrays: PyAV for keyframes only (the physical limit: each keyframe
packet decoded alone, the packets split over a pool of decoder threads), decord `get_batch` for
arbitrary indices.

decord has reported memory growth across `get_batch` calls (dmlc/decord #157, #208); the known
workaround, `seek(0)` after each batch and one reader per video, is applied. Every failure is a
VideoError naming the file.
"""

from __future__ import annotations

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
    wanted = set(np.asarray(indices).tolist())
    if workers > 1 and len(wanted) > 1:
        return _keyframes_parallel(path, meta, wanted, chunk, min(workers, len(wanted)))
    return _keyframes_serial(path, meta, wanted, chunk)


_NONKEY = getattr(getattr(av, "stream", None), "Discard", None)


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


def _keyframes_serial(path: Path | str, meta: VideoMeta, wanted: set[int], chunk: int) -> Iterator[np.ndarray]:
    out: list[np.ndarray] = []
    got = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            for packet in _wanted_keyframe_packets(container, stream, meta, wanted):
                for frame in stream.codec_context.decode(packet):
                    out.append(frame.to_ndarray(format="rgb24"))
                    got += 1
                if len(out) >= chunk:
                    yield np.stack(out)
                    out = []
            if got < len(wanted):
                for frame in stream.codec_context.decode(None):
                    out.append(frame.to_ndarray(format="rgb24"))
                    got += 1
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(path, f"decoding failed ({exc})") from None
    if out:
        yield np.stack(out)
    if got != len(wanted):
        raise VideoError(path, f"truncated or corrupt: decoded {got} of {len(wanted)} keyframes")


_END = object()


def _put(q: "queue.Queue[Any]", item: Any, stop: threading.Event) -> None:
    """Put unless the consumer has stopped (so no decoder waits forever on a full queue)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _decoder(path: Path | str, packets: "queue.Queue[Any]", frames: "queue.Queue[Any]", stop: threading.Event) -> None:
    """One decoder of the pool: its own container's codec context (configured exactly as the serial
    path's) decodes the packets handed to it, in order, then flushes; the frames, then _END, or the
    exception, go to `frames`."""
    try:
        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            ctx.skip_frame = "NONKEY"
            while not stop.is_set():
                packet = packets.get()
                for frame in ctx.decode(None if packet is _END else packet):
                    _put(frames, frame.to_ndarray(format="rgb24"), stop)
                if packet is _END:
                    break
        _put(frames, _END, stop)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        _put(frames, exc, stop)


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


def _keyframes_parallel(path: Path | str, meta: VideoMeta, wanted: set[int], chunk: int,
                        workers: int) -> Iterator[np.ndarray]:
    """The serial path's frames, bit for bit: this thread demuxes and deals the j-th wanted packet to
    decoder j % workers; each decoder yields its frames in its packets' order, so reading the decoders'
    queues in turn gives the frames in display order. Output queues are bounded (memory stays about a
    chunk while the consumer is slow)."""
    stop = threading.Event()
    packets: list["queue.Queue[Any]"] = [queue.Queue() for _ in range(workers)]
    frames: list["queue.Queue[Any]"] = [queue.Queue(maxsize=max(2, chunk // workers + 1)) for _ in range(workers)]
    threads = [threading.Thread(target=_decoder, args=(path, packets[k], frames[k], stop), daemon=True,
                                name=f"keyframe-decoder-{k}") for k in range(workers)]
    for t in threads:
        t.start()
    dealt = 0
    try:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                for packet in _wanted_keyframe_packets(container, stream, meta, wanted):
                    packets[dealt % workers].put(packet)
                    dealt += 1
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise VideoError(path, f"decoding failed ({exc})") from None
        finally:
            for q in packets:
                q.put(_END)
        out: list[np.ndarray] = []
        got = 0
        while got < len(wanted):
            item = _checked(path, frames[got % workers].get())
            if item is _END:  # a decoder ran dry: frames are missing, and the later ones cannot be placed
                got += sum(_count_rest(path, q) for k, q in enumerate(frames) if k != got % workers)
                break
            out.append(item)
            got += 1
            if len(out) >= chunk:
                yield np.stack(out)
                out = []
        if out:
            yield np.stack(out)
        if got != len(wanted):
            raise VideoError(path, f"truncated or corrupt: decoded {got} of {len(wanted)} keyframes")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


def iter_frames_sequential(path: Path | str, indices: Sequence[int] | np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """RGB frames at `indices`, decoding every frame in order with PyAV (slow, but it reads files
    that decord cannot open, such as an MP4 cut short after its index)."""
    wanted = set(np.asarray(indices).tolist())
    last = max(wanted, default=-1)
    out: list[np.ndarray] = []
    got = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(_frames_until_error(container, stream)):
                if i in wanted:
                    out.append(frame.to_ndarray(format="rgb24"))
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
    parts = list(iter_frames(path, meta, indices, max(1, len(indices)), threads, workers))
    return np.concatenate(parts) if parts else np.zeros((0, meta.height, meta.width, 3), np.uint8)
