"""An Offload as plain data for the wire (msgpack-able maps and byte payloads), and back.

The local node sends the Offload's payload bytes as frames and its steps as maps naming those
frames; the edge rebuilds the steps against the media and tokens it received and runs them with
`placement.run_steps`, exactly as the sim and the in-process run do. Nothing here is pickled, and
every map from a peer is checked before use (`RemoteError` names what is wrong).

Seed 003: an image payload may be a view the device made (its map says which, and a crop's box and
original size, which the edge checks against the image it decodes); a payload `held` at the edge
travels as the SHA-256 of its bytes and an empty frame, and the edge finds it among the media it
received lately (`held_for`); an Infer step may carry `locate`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from testbed.crop import CropError, check_box
from testbed.errors import TestbedError
from testbed.policies.effects import Decompress, EdgeStep, Infer, Locate, Offload, Payload, Tokenize
from testbed.policies.placement import check_offload
from testbed.query import ImageMeta, Media
from testbed.tokenizer.sampling import Sampler

STEPS_VERSION = 1
MAX_STEPS = 16
MAX_OPTIONS = 26
MAX_TEXT = 65536
MAX_SIDE = 1 << 16
MAX_FRAMES = 4096
"""Frames a request may name (a sampler's count and bounds, a token payload's frames): the samplers take
at most 512."""
MAX_DENSITY = 4096
VIEWS = ("global", "crop", "full")


def digest(data: bytes | memoryview) -> str:
    """How a held payload is named on the wire: the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


class RemoteError(TestbedError):
    """A request's steps or payloads that do not describe a well-formed Offload."""


def _sampler_map(s: Sampler) -> dict[str, Any]:
    return {"kind": s.kind, "rate": s.rate, "min_frames": s.min_frames, "max_frames": s.max_frames, "count": s.count}


def offload_request(off: Offload) -> tuple[dict[str, Any], list[bytes]]:
    """(meta, payload frames) for an Offload whose payloads hold real bytes. Media payloads are the
    file's bytes (read by the caller into Payload.data); token payloads the codec's message."""
    check_offload(off)
    frames: list[bytes] = []
    payloads = []
    for p in off.payloads:
        if p.data is None:
            raise RemoteError(f"a {p.kind} payload has no bytes to send")
        pm: dict[str, Any] = {"kind": p.kind, "frames": p.frames, "density": p.density, "encoder": p.encoder,
                              "sampler": p.sampler, "raw_bytes": p.raw_bytes}
        if isinstance(p.media, ImageMeta) and p.media.view:
            pm["view"] = p.media.view
            if p.media.box is not None:
                pm["box"] = list(p.media.box)
            if p.media.source_size is not None:
                pm["source"] = list(p.media.source_size)
        if p.held:
            pm["held"] = digest(p.data)
        payloads.append(pm)
        frames.append(b"" if p.held else p.data)
    steps: list[dict[str, Any]] = []
    for step in off.steps:
        if isinstance(step, Decompress):
            steps.append({"op": "decompress", "payload": _index(off, step.payload)})
        elif isinstance(step, Tokenize):
            i = next(i for i, p in enumerate(off.payloads) if p.media is step.media)
            steps.append({"op": "tokenize", "payload": i, "sampler": _sampler_map(step.sampler),
                          "pipelined": step.pipelined, "encoder": step.encoder})
        else:
            if step.tokens is not None:
                raise RemoteError("an edge Infer over the wire takes the tokens of the step before it (tokens=None)")
            sm: dict[str, Any] = {"op": "infer", "model": step.model, "density": step.density,
                                  "question": step.question, "options": list(step.options)}
            if step.locate is not None:
                loc = step.locate
                sm["locate"] = {"above": loc.above, "scale": loc.scale, "width": loc.width, "height": loc.height}
                if loc.labels:
                    sm["locate"]["labels"] = loc.labels
            steps.append(sm)
    return {"v": STEPS_VERSION, "payloads": payloads, "steps": steps}, frames


def _index(off: Offload, payload: Payload) -> int:
    return next(i for i, p in enumerate(off.payloads) if p is payload)


def _field(m: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in m:
        raise RemoteError(f"{where}: missing {key!r}")
    v = m[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise RemoteError(f"{where}: {key!r} has the wrong type ({type(v).__name__})")
    return v


def _bounded(m: Mapping[str, Any], key: str, lo: int, hi: int, where: str) -> int:
    v = _field(m, key, int, where)
    if not lo <= v <= hi:
        raise RemoteError(f"{where}: {key!r} is {v}; it must be in [{lo}, {hi}]")
    return int(v)


def offload_from_request(meta: Mapping[str, Any], frames: Sequence[bytes | memoryview],
                         media_for: Callable[[int, str, bytes | memoryview], Media],
                         held_for: Callable[[str], bytes | None] = lambda d: None) -> Offload:
    """Rebuild an Offload from a peer's (meta, frames); `media_for(index, kind, data)` stores a media
    payload as a file and returns its probed metadata, `held_for(digest)` gives the bytes of a
    payload held at the edge (None: not there). Everything is checked before use."""
    if not isinstance(meta, Mapping) or meta.get("v") != STEPS_VERSION:
        raise RemoteError(f"steps version {meta.get('v') if isinstance(meta, Mapping) else None!r}; "
                          f"this edge reads {STEPS_VERSION}")
    pmaps = _field(meta, "payloads", list, "request")
    smaps = _field(meta, "steps", list, "request")
    if len(pmaps) != len(frames):
        raise RemoteError(f"{len(pmaps)} payloads described, {len(frames)} frames received")
    if not 1 <= len(smaps) <= MAX_STEPS:
        raise RemoteError(f"an Offload needs 1 to {MAX_STEPS} steps, got {len(smaps)}")
    payloads: list[Payload] = []
    for i, (pm, data) in enumerate(zip(pmaps, frames)):
        where = f"payload {i}"
        if not isinstance(pm, Mapping):
            raise RemoteError(f"{where}: not a map")
        kind = _field(pm, "kind", str, where)
        encoder = _field(pm, "encoder", str, where)
        if encoder not in ("small", "large"):
            raise RemoteError(f"{where}: encoder {encoder!r} is not small or large")
        if kind == "tokens":
            n_frames = _bounded(pm, "frames", 1, MAX_FRAMES, where)
            density = _bounded(pm, "density", 1, MAX_DENSITY, where)
            payloads.append(Payload("tokens", len(data), _bounded(pm, "raw_bytes", 0, 1 << 40, where), n_frames,
                                    density, encoder, str(pm.get("sampler", ""))[:16],  # type: ignore[arg-type]
                                    data=bytes(data)))
        elif kind in ("video", "image"):
            held = pm.get("held")
            if held is not None:
                if not isinstance(held, str) or len(held) != 64:
                    raise RemoteError(f"{where}: 'held' must be a SHA-256 in hex")
                data = held_for(held)  # type: ignore[assignment]
                if data is None:
                    raise RemoteError(f"{where}: held at the edge, but the edge no longer has it (send it again)")
            elif kind == "image" and len(data) == 0:
                raise RemoteError(f"{where}: an empty image (an empty crop?)")
            media = media_for(i, kind, data)
            if "view" in pm:
                media = _view(pm, media, where)
            payloads.append(Payload(kind, len(data), media=media, held=held is not None))  # type: ignore[arg-type]
        else:
            raise RemoteError(f"{where}: kind {kind!r} is not video, image or tokens")
    steps: list[EdgeStep] = []
    for j, sm in enumerate(smaps):
        where = f"step {j}"
        if not isinstance(sm, Mapping):
            raise RemoteError(f"{where}: not a map")
        op = _field(sm, "op", str, where)
        if op == "decompress":
            steps.append(Decompress(payloads[_payload_index(sm, payloads, "tokens", where)]))
        elif op == "tokenize":
            p = payloads[_payload_index(sm, payloads, ("video", "image"), where)]
            sm_s = _field(sm, "sampler", Mapping, where)
            try:
                sampler = Sampler(_field(sm_s, "kind", str, where), float(_field(sm_s, "rate", (int, float), where)),
                                  _bounded(sm_s, "min_frames", 0, MAX_FRAMES, where),
                                  _bounded(sm_s, "max_frames", 0, MAX_FRAMES, where),
                                  _bounded(sm_s, "count", 0, MAX_FRAMES, where))  # type: ignore[arg-type]
            except ValueError as exc:
                raise RemoteError(f"{where}: {exc}") from None
            encoder = _field(sm, "encoder", str, where)
            if encoder not in ("small", "large"):
                raise RemoteError(f"{where}: encoder {encoder!r} is not small or large")
            assert p.media is not None
            steps.append(Tokenize(p.media, sampler, bool(_field(sm, "pipelined", bool, where)), encoder))  # type: ignore[arg-type]
        elif op == "infer":
            model = _field(sm, "model", str, where)
            if model not in ("small", "large"):
                raise RemoteError(f"{where}: model {model!r} is not small or large")
            question = _field(sm, "question", str, where)
            options = _field(sm, "options", list, where)
            if len(question) > MAX_TEXT or not 1 <= len(options) <= MAX_OPTIONS \
                    or not all(isinstance(o, str) and len(o) <= MAX_TEXT for o in options):
                raise RemoteError(f"{where}: the question and 1 to {MAX_OPTIONS} options must be strings")
            locate = _locate(sm["locate"], where) if sm.get("locate") is not None else None
            density = _bounded(sm, "density", 1, MAX_DENSITY, where)
            steps.append(Infer(model, None, density, question, tuple(options), locate=locate))  # type: ignore[arg-type]
        else:
            raise RemoteError(f"{where}: op {op!r} is not decompress, tokenize or infer")
    off = Offload(tuple(payloads), tuple(steps))
    try:
        check_offload(off)
    except TestbedError as exc:
        raise RemoteError(str(exc)) from None
    return off


def _view(pm: Mapping[str, Any], media: Media, where: str) -> ImageMeta:
    """An image payload's view (seed 003), checked against the image that arrived: a known view; a
    crop's box non-empty, inside its original image, and of the decoded crop's size."""
    view = _field(pm, "view", str, where)
    if view not in VIEWS or not isinstance(media, ImageMeta):
        raise RemoteError(f"{where}: view {view!r} of a {media.kind}; views are images: {', '.join(VIEWS)}")
    if view != "crop":
        return replace(media, view=view)
    box, source = _field(pm, "box", list, where), _field(pm, "source", list, where)
    if len(source) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE
                                   for v in source):
        raise RemoteError(f"{where}: source must be the original image's [width, height]")
    try:
        b = check_box(tuple(box), source[0], source[1])
    except CropError as exc:
        raise RemoteError(f"{where}: {exc}") from None
    if (b[2] - b[0], b[3] - b[1]) != (media.width, media.height):
        raise RemoteError(f"{where}: the crop is {media.width}x{media.height} pixels but its box {b} is "
                          f"{b[2] - b[0]}x{b[3] - b[1]}")
    return replace(media, view=view, box=b, source_size=(source[0], source[1]))


def _locate(lm: Any, where: str) -> Locate:
    if not isinstance(lm, Mapping):
        raise RemoteError(f"{where}: locate must be a map")
    above, scale = _field(lm, "above", (int, float), where), _field(lm, "scale", (int, float), where)
    width, height = _field(lm, "width", int, where), _field(lm, "height", int, where)
    if not math.isfinite(above) or not 0 < scale <= 1 or not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE:
        raise RemoteError(f"{where}: locate needs a finite threshold, a scale in (0, 1] and the image's size")
    labels = lm.get("labels", "")
    if labels not in ("", "multi-label", "single-label"):
        raise RemoteError(f"{where}: locate labels must be multi-label or single-label, got {labels!r}")
    return Locate(float(above), float(scale), width, height, labels)


def _payload_index(sm: Mapping[str, Any], payloads: list[Payload], kinds: str | tuple[str, ...], where: str) -> int:
    i = _field(sm, "payload", int, where)
    if not 0 <= i < len(payloads):
        raise RemoteError(f"{where}: payload {i} does not exist")
    if payloads[i].kind not in ((kinds,) if isinstance(kinds, str) else kinds):
        raise RemoteError(f"{where}: payload {i} is {payloads[i].kind}, not {kinds}")
    return i

