"""easy-VQA workloads for real runs with the pocket pair, made with ffmpeg (imageio-ffmpeg's binary).

Video QA: each clip stitches `scenes` easy-VQA test images, one scene per image, each scene
exactly one GOP (`-g L -keyint_min L -sc_threshold 0` with L frames per scene), and asks one
question that needs the one scene with the named shape or colour ("what is the color of the
circle in the video?" where only one scene shows a circle; "does the video contain a circle?"
with one or no such scene). With more than 64 scenes, QuickGrasp's keyframe sampler reads every
scene while the default 1-FPS sampler (64 frames over a longer clip) skips some, and merging
tokens to a lower density blurs the scene's shape, so sampling and density both move accuracy.

Image QA: the easy-VQA test split as one-image queries (its images copied next to the manifest).

Small objects (seed 003): each easy-VQA test image pasted small at a seeded random place into a large
canvas of its own background colour, saved as a JPEG photo, so that the global view (the canvas
resized to the encoder's input) shrinks the shape to a few pixels and a crop around it recovers it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from collections.abc import Callable

import numpy as np

from testbed.live.videos import made_once, run_ffmpeg
from testbed.errors import TestbedError
from testbed.models.pocket_data import image_labels, load_split, options_for
from testbed.models.pocket_train import VIDEO_TEMPLATES, compose_video

VIDEO_MANIFEST = "pocket-video.jsonl"
IMAGE_MANIFEST = "pocket-image.jsonl"
VIDEO_SCENARIO = "pocket-video.toml"
IMAGE_SCENARIO = "pocket-image.toml"
INARVL_SCENARIO = "pocket-image-inarvl.toml"
INARVL_MANIFEST = "pocket-image-inarvl.jsonl"
INARVL_PROFILE_SHARE = 0.3
"""INAR-VL's manifest: a seeded random 30% of the test images are the profiling split (seed 000's and
seed 002's 3:7 split), and its lines are shuffled, so any first N (`--queries`) are a sample across images."""
VIDEO_POLICIES = ("device-native", "edge-hosted", "collaborative", "quickgrasp-fixed2", "quickgrasp-fixed4",
                  "quickgrasp-fixed8", "quickgrasp-fixed16", "quickgrasp-fixed32", "nosharing",
                  "uncalibrated-fixed2", "uncalibrated-fixed4", "uncalibrated-fixed8", "uncalibrated-fixed16",
                  "uncalibrated-fixed32")


def stitch(out: Path, images: list[Path], scene_frames: int, fps: int, crf: int = 12) -> Path:
    """One clip: each image held for `scene_frames` frames, one GOP per scene, libx264, yuv420p."""
    from PIL import Image

    frames = []
    for p in images:
        with Image.open(p) as im:
            frames.append(np.asarray(im.convert("RGB")))
    h, w = frames[0].shape[:2]
    if any(f.shape != frames[0].shape for f in frames):
        raise TestbedError(f"{out.name}: the scenes' images differ in size")
    raw = b"".join(f.tobytes() * scene_frames for f in frames)
    run_ffmpeg(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-g", str(scene_frames),
           "-keyint_min", str(scene_frames), "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(out)], out.name, raw)
    return out


def video_workload(folder: Path, clips: int = 30, scenes: int = 80, scene_frames: int = 4, fps: int = 8,
                   seed: int = 0, profile_share: float = 0.3, progress: Callable[[int], None] | None = None) -> Path:
    """`clips` clips of `scenes` easy-VQA test images and their questions (the four templates in
    turn); the first `profile_share` of them are the profiling split. Returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    split = load_split("test")
    shape, color = image_labels(split)
    pool = np.flatnonzero((shape >= 0) & (color >= 0))
    rng = np.random.default_rng([seed, 12])
    kinds = list(VIDEO_TEMPLATES)
    n_profile = round(profile_share * clips)
    lines = []
    for i in range(clips):
        v = compose_video(rng, shape, color, pool, scenes, kinds[i % len(kinds)])
        name = f"clip-{i:03d}-{scenes}x{scene_frames}.mp4"
        made_once(folder / name, lambda tmp: stitch(tmp, [split.images[s] for s in v.scenes],  # noqa: B023
                                                    scene_frames, fps))
        opts = options_for(v.answer)
        lines.append({"query_id": f"pocket-video-{i:03d}", "benchmark": "pocket-video", "video": name,
                      "question": v.question, "options": list(opts), "answer": opts.index(v.answer),
                      "split": "profile" if i < n_profile else "test"})
        if progress:
            progress(1)
    manifest = folder / VIDEO_MANIFEST
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    policies = ", ".join(f'"{p}"' for p in VIDEO_POLICIES)
    (folder / VIDEO_SCENARIO).write_text(
        f'description = "Pocket pair on {clips} easy-VQA clips of {scenes} scenes (one GOP each)"\n'
        f"seed = {seed}\n\n[workload]\nkind = \"manifest\"\npath = \"{VIDEO_MANIFEST}\"\n\n"
        f"[models]\npreset = \"pocket\"\ndtype = \"fp16\"\n\n[policies]\nrun = [{policies}]\n")
    return manifest


CROP_MANIFEST = "pocket-crop.jsonl"
CROP_SCENARIO = "pocket-crop.toml"
CROP_TRACE = "pocket-crop-trace.parquet"
CROP_SWEEP = "pocket-crop-sweep.toml"


def small_object_workload(folder: Path, n_images: int = 300, canvas: int = 896, object_px: int = 48, seed: int = 0,
                          profile_share: float = 0.3) -> Path:
    """The first `n_images` easy-VQA test images, each pasted at `object_px` pixels into a `canvas` x
    `canvas` JPEG (quality 95) at a seeded random place, as image queries (every question of each
    image); a seeded `profile_share` of the images are the profiling split. Writes the manifest and
    a scenario running seed 003's four policies with the pocket pair, and one sweeping their
    retransmitted share in the sim on the trace `testbed record` makes of it (CROP_TRACE)."""
    from PIL import Image

    if not 8 <= object_px <= canvas:
        raise TestbedError(f"the object ({object_px} px) must fit the canvas ({canvas} px) and be at least 8 px")
    split = load_split("test", limit_images=n_images)
    rng = np.random.default_rng([seed, 3, canvas, object_px])
    (folder / "canvas").mkdir(parents=True, exist_ok=True)
    profile = set(rng.permutation(len(split.images))[:round(profile_share * len(split.images))].tolist())
    for i, p in enumerate(split.images):
        with Image.open(p) as im:
            shape = im.convert("RGB")
        page = Image.new("RGB", (canvas, canvas), shape.getpixel((0, 0)))  # the image's own background
        x, y = (int(v) for v in rng.integers(0, canvas - object_px + 1, size=2))
        page.paste(shape.resize((object_px, object_px), Image.Resampling.LANCZOS), (x, y))
        page.save(folder / "canvas" / f"{i}.jpg", quality=95)
    lines = []
    for j, (q, a, img) in enumerate(zip(split.questions, split.answers, split.image_ids.tolist())):
        opts = options_for(a)
        lines.append({"query_id": f"easyvqa-small-{j:05d}", "benchmark": "easy-vqa-small", "image": f"canvas/{img}.jpg",
                      "question": q, "options": list(opts), "answer": opts.index(a),
                      "split": "profile" if img in profile else "test"})
    lines = [lines[k] for k in rng.permutation(len(lines))]  # any first N (--queries) sample across images
    manifest = folder / CROP_MANIFEST
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / CROP_SCENARIO).write_text(
        'description = "Seed 003 for real: entropy-triggered crops with the pocket pair on small easy-VQA shapes in '
        f'{canvas} px canvases"\nseed = {seed}\n\n'
        f'[workload]\nkind = "manifest"\npath = "{CROP_MANIFEST}"  # {round(profile_share * 100)}% of the images '
        'profile the threshold\n\n[models]\npreset = "pocket"\n\n'
        '[policies]\nrun = ["global-only", "full-res", "random-crop", "entropy-crop"]\nbaselines = []\n\n'
        '[policies.entropy-crop]\ntarget_retransmit_share = 0.5  # assumed\n'
        'crop_scale = 0.4                 # a box of 0.4 of the canvas around the map\'s peak (7 x 7 cells)\n'
        'global_side = 224                # EfficientNet-Lite0\'s input\n'
        'view_tokens = 49                 # its 7 x 7 tokens per view, unmerged\n')
    (folder / CROP_SWEEP).write_text(
        'description = "Seed 003 Fig. 4/5 from recorded pocket outcomes: small easy-VQA shapes, the retransmitted '
        'share swept"\n'
        f'seed = {seed}\n\n[workload]\nkind = "trace"\npath = "{CROP_TRACE}"  # testbed record {CROP_SCENARIO} '
        f'--queries 600 --out {CROP_TRACE}\n\n'
        '[policies]\nrun = ["global-only", "full-res", "random-crop", "entropy-crop"]\nbaselines = []\n\n'
        '[policies.entropy-crop]\ncrop_scale = 0.4\nglobal_side = 224\nview_tokens = 49\n\n'
        '[sweep]\n"policies.entropy-crop.target_retransmit_share" = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n')
    return manifest


IMAGE_PROFILE_SHARE = 0.1
"""The image manifest's profiling split: the questions of the first tenth of the test images."""


def image_workload(folder: Path, profile_share: float = IMAGE_PROFILE_SHARE) -> Path:
    """The easy-VQA test split as image queries: images copied to `folder/images/`, one line per
    question; questions of the first `profile_share` of the images are the profiling split."""
    split = load_split("test")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for p in split.images:
        dst = folder / "images" / p.name
        if not dst.is_file():
            shutil.copyfile(p, dst)
    n_profile = round(profile_share * len(split.images))
    lines = []
    for i, (q, a, img) in enumerate(zip(split.questions, split.answers, split.image_ids)):
        opts = options_for(a)
        lines.append({"query_id": f"easyvqa-test-{i:05d}", "benchmark": "easy-vqa", "image": f"images/{img}.png",
                      "question": q, "options": list(opts), "answer": opts.index(a),
                      "split": "profile" if img < n_profile else "test"})
    manifest = folder / IMAGE_MANIFEST
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rng = np.random.default_rng([0, 2, 13])
    profile_images = set(rng.permutation(len(split.images))[:round(INARVL_PROFILE_SHARE * len(split.images))].tolist())
    shuffled = [{**x, "split": "profile" if img in profile_images else "test"}
                for x, img in zip(lines, split.image_ids.tolist())]
    shuffled = [shuffled[i] for i in rng.permutation(len(shuffled))]
    (folder / INARVL_MANIFEST).write_text("".join(json.dumps(x) + "\n" for x in shuffled))
    (folder / IMAGE_SCENARIO).write_text(
        'description = "Pocket pair on the easy-VQA test split (image QA)"\nseed = 0\n\n'
        f'[workload]\nkind = "manifest"\npath = "{IMAGE_MANIFEST}"\n\n[models]\npreset = "pocket"\n\n'
        '[policies]\nrun = ["device-native", "collaborative", "quickgrasp-fixed16"]\n')
    (folder / INARVL_SCENARIO).write_text(
        'description = "INAR-VL (seed 002) for real: input-aware routing with the pocket pair on easy-VQA images"\n'
        'seed = 0\npaper_comparison = true  # seed 002\'s four figures, measured\n\n'
        f'[workload]\nkind = "manifest"\npath = "{INARVL_MANIFEST}"  # a random 30% of the images are the profiling '
        'split\n\n[models]\npreset = "pocket"\n\n'
        '[policies]\nrun = ["device-native", "edge-hosted", "input-aware"]\n'
        'baselines = ["device-native", "edge-hosted"]\n\n'
        '[policies.input-aware]\ntarget_local_share = 0.36  # seed 002: 36% served at its edge tier (the device)\n')
    return manifest
