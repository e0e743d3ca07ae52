"""Decode chosen frames to RGB arrays: PyAV for keyframes only (the physical limit: each keyframe
packet decoded alone), decord `get_batch` for arbitrary indices.

decord has reported memory growth across `get_batch` calls (dmlc/decord #157, #208); the known
workaround, `seek(0)` after each batch and one reader per video, is applied. Every failure is a
VideoError naming the file.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator, Sequence

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


def iter_keyframes(path: Path | str, meta: VideoMeta, indices: Sequence[int] | np.ndarray,
                   chunk: int) -> Iterator[np.ndarray]:
    """RGB frames (c, H, W, 3) uint8 of the wanted keyframes, `chunk` at a time, decoding only
    their packets. Keyframe packets come in display order, so the j-th is meta.keyframes[j]."""
    wanted = set(np.asarray(indices).tolist())
    out: list[np.ndarray] = []
    got = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            ordinal = 0
            for packet in container.demux(stream):
                if packet.size == 0 or not packet.is_keyframe:
                    continue
                index = meta.keyframes[ordinal] if ordinal < len(meta.keyframes) else -1
                ordinal += 1
                if index not in wanted:
                    continue
                for frame in stream.codec_context.decode(packet):
                    out.append(frame.to_ndarray(format="rgb24"))
                    got += 1
                if len(out) >= chunk:
                    yield np.stack(out)
                    out = []
                if got == len(wanted):
                    break
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
                threads: int = 0) -> Iterator[np.ndarray]:
    """Chunks of decoded frames: the keyframe fast path when it applies, decord otherwise, and
    PyAV's sequential decode for a file decord cannot open (it may still hold the frames wanted)."""
    if only_keyframes(indices, meta):
        return iter_keyframes(path, meta, indices, chunk)
    try:
        reader = _decord_reader(path, threads)
    except VideoError:
        return iter_frames_sequential(path, indices, chunk)
    return _decord_batches(reader, path, indices, chunk)


def decode(path: Path | str, meta: VideoMeta, indices: Sequence[int] | np.ndarray, threads: int = 0) -> np.ndarray:
    """All frames at `indices` as one (n, H, W, 3) uint8 array."""
    parts = list(iter_frames(path, meta, indices, max(1, len(indices)), threads))
    return np.concatenate(parts) if parts else np.zeros((0, meta.height, meta.width, 3), np.uint8)
