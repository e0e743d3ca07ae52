"""`testbed models`: write a tiny random-init checkpoint folder of a VLM family, a real-size config-only
folder (GPU timing), or load a folder and say what it is."""

from __future__ import annotations

import argparse
from pathlib import Path

from testbed.argtypes import COUNT, OUTPUT_DIR, SEED


def _cmd_tiny(args: argparse.Namespace) -> int:
    from testbed.models.tiny_checkpoint import write_tiny

    out = write_tiny(args.family, Path(args.out_dir), args.role, args.seed)
    print(f"wrote {out}: tiny {args.family} ({args.role}), random init: answers are noise")
    return 0


def _cmd_real_size(args: argparse.Namespace) -> int:
    from testbed.models.real_size import write_real_size

    out = write_real_size(args.family, Path(args.out_dir), args.role)
    print(f"wrote {out}: {args.family} {args.role} at its published size, config only: random weights are drawn on "
          "the device at load (for timing; answers are noise)")
    return 0


def _cmd_profile_families(args: argparse.Namespace) -> int:
    """Profile each family's pair (both roles) into OUT/<gpu>-<family>.toml and its per-stage table into
    OUT/<gpu>-stages.csv/.md: real-size config-only folders on a GPU, tiny ones with --tiny (a CPU dry run)."""
    import re
    import tempfile

    import pandas as pd

    from testbed import report

    from testbed.cli.profiling import write_profile
    from testbed.live.profile import device_name, stage_table
    from testbed.models.pair import make_pair
    from testbed.models.real_size import write_real_size
    from testbed.models.tiny_checkpoint import write_tiny

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(args.device).split(" x")[0].lower()).strip("-")[:48]
    rows = []
    with tempfile.TemporaryDirectory(prefix="testbed-families-") as tmp:
        for family in args.families:
            folders = {}
            for role in ("small", "large"):
                folders[role] = Path(tmp) / f"{family}-{role}"
                (write_tiny if args.tiny else write_real_size)(family, folders[role], role)  # type: ignore[operator]
            spec = f"small={folders['small']},large={folders['large']}"
            pair = make_pair(spec, args.device)
            print(f"{family}: stage table ...", flush=True)
            for row in stage_table(pair, args.repeats, prefill_tokens=args.prefill_tokens):
                rows.append({"family": family, **row, "model": f"{'tiny' if args.tiny else 'real-size'} {family}"})
            if not args.skip_profile:
                write_profile(out / f"{slug}-{family}.toml", pair, f"{'tiny' if args.tiny else 'real-size'} {family}",
                              args.device, "both", args.repeats, lambda text: print(text, flush=True))
            del pair
    table = pd.DataFrame(rows)
    table.to_csv(out / f"{slug}-stages.csv", index=False)
    (out / f"{slug}-stages.md").write_text(f"# Per-stage times on {device_name(args.device)}\n\n"
                                            "Random-init models of the published configurations (timing only).\n\n"
                                            + report.format_table(table) + "\n")
    print(table.to_string(index=False))
    print(f"wrote {out / (slug + '-stages.csv')} and the profiles in {out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from testbed.models.checkpoint_vlm import load_checkpoint

    ck = load_checkpoint(args.path, args.device, trust_remote_code=args.trust_remote_code, where="")
    s = ck.summary()
    print(f"{s['folder']}: family {s['family']} (model_type {s['model_type']}), {s['parameters']:,} parameters, "
          f"{s['weights']}")
    print(f"  vision tokens: {s['tokens_per_frame']} a frame of width {s['encoder_width']} "
          f"(frames {s['frame_side']} px square); token sharing with a model whose projector takes the same width")
    print(f"  supports: {', '.join(s['supports'])}")
    if args.trust_remote_code:
        print("  trust_remote_code is on: the checkpoint's own Python code ran")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from testbed.models.checkpoint import REAL_SIZE_FAMILIES, TINY_FAMILIES

    m = sub.add_parser("models", help="checkpoint folders of real VLM families: write a tiny one, check one")
    msub = m.add_subparsers(dest="models_command", required=True)
    t = msub.add_parser("tiny", help="write a tiny random-init checkpoint folder of a family (CPU, seconds)")
    t.add_argument("family", choices=TINY_FAMILIES)
    t.add_argument("out_dir", type=OUTPUT_DIR)
    t.add_argument("--role", choices=["small", "large"], default="small",
                   help="small or large: the two roles of a family share the vision encoder (token sharing works)")
    t.add_argument("--seed", type=SEED, default=0)
    t.set_defaults(fn=_cmd_tiny)
    r = msub.add_parser("real-size", help="write a config-only folder of a family at its published size; weights "
                                          "are drawn at load on the device (GPU timing)")
    r.add_argument("family", choices=REAL_SIZE_FAMILIES)
    r.add_argument("out_dir", type=OUTPUT_DIR)
    r.add_argument("--role", choices=["small", "large"], default="small",
                   help="small: Qwen2.5-VL-3B / LLaVA-OneVision-0.5B; large: the 7B of the family")
    r.set_defaults(fn=_cmd_real_size)
    p = msub.add_parser("profile-families", help="profile real-size pairs of each family on this device into "
                                                 "hardware profiles and a per-stage table (make gpu-profile)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=OUTPUT_DIR, default="traces/profiles")
    p.add_argument("--families", nargs="+", choices=REAL_SIZE_FAMILIES, default=list(REAL_SIZE_FAMILIES))
    p.add_argument("--repeats", type=COUNT, default=5, help="timed repeats per size after a warm-up")
    p.add_argument("--prefill-tokens", type=COUNT, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--tiny", action="store_true", help="tiny random-init folders instead (a CPU dry run)")
    p.add_argument("--skip-profile", action="store_true", help="the per-stage table only")
    p.set_defaults(fn=_cmd_profile_families)
    c = msub.add_parser("check", help="load a checkpoint folder and print its family, size, encoder width and "
                                      "what it supports")
    c.add_argument("path", help="a transformers checkpoint folder (config.json, weights, processor, tokenizer)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--trust-remote-code", action="store_true", help="let the checkpoint run its own Python code")
    c.set_defaults(fn=_cmd_check)
