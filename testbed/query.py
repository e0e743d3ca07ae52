"""Values that describe a query as a policy sees it, and its hidden truth as a trace records it.

A query names its media: a video or an image file (`path`), or only the metadata a trace
recorded (`path == ""`), which is all the sim needs. Real interpreters refuse media without a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

DENSITIES = (2, 4, 8, 16, 32)
"""Candidate token densities (tokens per frame), seed 000 SV-A: A = {2, 4, 8, 16, 32}."""


@dataclass(frozen=True, slots=True)
class VideoMeta:
    """Container metadata: everything samplers and the size model need, nothing decoded.

    `path` is the file on this machine, or "" when only a trace's metadata exists."""

    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    file_bytes: int
    keyframes: tuple[int, ...]
    path: str = ""

    kind: ClassVar[Literal["video"]] = "video"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    @property
    def keyframe_array(self) -> np.ndarray:
        return np.asarray(self.keyframes, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """An image file's size; the encoder sees it as one frame (image QA, seeds 002 and 003).

    A view the device made of a query's image (seed 003, the `Crop` effect) says which (`view`:
    "global" the image resized to the encoder's input, "crop" a region at full detail, "full" the
    original for tiling) and, for a crop, its `box` in pixels of the original image."""

    width: int
    height: int
    file_bytes: int
    path: str = ""
    view: str = ""
    box: tuple[int, int, int, int] | None = None
    source_size: tuple[int, int] | None = None  # a view's original image (width, height)

    kind: ClassVar[Literal["image"]] = "image"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


Media = VideoMeta | ImageMeta


@dataclass(frozen=True, slots=True)
class Query:
    """What a policy may look at: the media, the question and its options."""

    query_id: str
    benchmark: str
    media: Media
    question: str
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Stream:
    """What a stream policy may look at before any frame (seed 001): the task, its categories
    (a multi-label set or single-label classes, in the question's list), the frame rate, how
    long after capture a frame's answer is due (tau), and how many vision tokens the large
    model's encoder makes of a frame (what Distributed VLM uploads)."""

    stream_id: str
    benchmark: str
    task: Literal["multi-label", "single-label"]
    question: str
    categories: tuple[str, ...]
    fps: float
    tau_s: float
    vision_tokens: int


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: its index, capture time and deadline on the stream's clock (seconds
    since the stream started), and the frame as an image (`path` "" in the sim)."""

    stream_id: str
    index: int
    time_s: float
    deadline_s: float
    media: ImageMeta


@dataclass(frozen=True, slots=True)
class Hindsight:
    """Correctness of every model variant on one query; only the Oracle policy is given it."""

    small_correct: bool
    large_native_correct: bool
    large_correct: dict[int, bool]


@dataclass(frozen=True, slots=True)
class ContextInputs:
    """The raw inputs of the density bandit's context (seed 000 Eq. 4, 6-10) besides the frame count
    and the small model's logits: the pooled question embedding `txt` (D,) and vision embedding
    `vis` (D,) before PCA, the clip relevance summaries `s_max`, `s_mean` (Eq. 7) and the spectral
    complexity `s_cplx` (Eq. 8-10). A trace records them in its context_* columns; a real run
    computes them from the tokens (the `Describe` effect). None where unknown."""

    txt: np.ndarray | None = field(default=None, compare=False)
    vis: np.ndarray | None = field(default=None, compare=False)
    s_max: float | None = None
    s_mean: float | None = None
    s_cplx: float | None = None


@dataclass(frozen=True, slots=True)
class InputSignals:
    """INAR-VL's image-complexity signals of a query's media (seed 002; `testbed.router.signals`):
    spatial information, edge density and colourfulness of its pixels, and its compressed bytes per
    pixel. A trace records them in its signal_* columns; a real run computes them from the file
    (the `Inspect` effect). None where unknown."""

    spatial_info: float | None = None
    edge_density: float | None = None
    colourfulness: float | None = None
    bytes_per_pixel: float | None = None

    @property
    def known(self) -> bool:
        return None not in (self.spatial_info, self.edge_density, self.colourfulness, self.bytes_per_pixel)


@dataclass(frozen=True, slots=True)
class ViewOutcomes:
    """Seed 003's outcomes of one image query, as a crop trace records them: the large model's option
    logits from the global view alone, from the global view with the attention crop, with a random
    crop of the same size, and from the full-resolution image (LLaVA-1.5-HD tiles); the attention
    box (pixels of the original); the JPEG bytes of the global view and of each crop. The
    full-resolution upload is the original file (the media's `file_bytes`)."""

    global_logits: np.ndarray = field(compare=False)
    crop_logits: np.ndarray = field(compare=False)
    random_logits: np.ndarray = field(compare=False)
    full_logits: np.ndarray = field(compare=False)
    box: tuple[int, int, int, int]
    global_bytes: int
    crop_bytes: int
    random_bytes: int


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One workload row: the query and its ground truth; from a trace also every model variant's
    option logits, the stage times a live run recorded and the bandit's context inputs. A
    manifest gives no logits (None): real interpreters compute them, the sim cannot run without
    them."""

    query: Query
    answer: int
    split: str
    small_logits: np.ndarray | None = None
    large_native_logits: np.ndarray | None = None
    large_logits: dict[int, np.ndarray] = field(default_factory=dict)
    recorded_s: dict[str, float] = field(default_factory=dict)
    recorded_bytes: dict[str, int] = field(default_factory=dict)  # a recorded stage's output bytes (payloads)
    small_logits_fps: np.ndarray | None = None  # the small model on 1-FPS frames, where recorded
    large_native_logits_keyframe: np.ndarray | None = None  # the native large model on keyframes, where recorded
    large_native_logits_codec: np.ndarray | None = None  # ... on 1-FPS tokens after the codec, where recorded
    context: ContextInputs = field(default_factory=ContextInputs)
    signals: InputSignals = field(default_factory=InputSignals)
    views: ViewOutcomes | None = None  # seed 003's crop outcomes, where recorded

    def hindsight(self) -> Hindsight:
        if self.small_logits is None or self.large_native_logits is None:
            raise ValueError(f"query {self.query.query_id} has no recorded model outcomes")
        return Hindsight(
            small_correct=int(np.argmax(self.small_logits)) == self.answer,
            large_native_correct=int(np.argmax(self.large_native_logits)) == self.answer,
            large_correct={a: int(np.argmax(v)) == self.answer for a, v in self.large_logits.items()},
        )
