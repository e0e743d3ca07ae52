"""Measuring this machine into a hardware profile (`testbed profile`, and after a live run with
--fidelity): the stage times of the model pair on videos, the way live runs work."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence


def write_profile(out: Path, pair: Any, models: str, device: str, role: str, repeats: int,
                  say: Callable[[str], None],
                  videos: Sequence[Path] = ()) -> None:
    """Measure `role` ("local", "edge" or "both") into the profile `out`, keeping its other role;
    decoding is measured on `videos` (default: a generated 320x180 clip)."""
    import datetime
    import platform

    import tomli_w

    from testbed.live.busy import ForeignLoad
    from testbed.live.profile import device_name, library_versions, measure
    from testbed.live.run import cache_dir
    from testbed.live.videos import encode, made_once
    from testbed.config import read_toml
    from testbed.notes import note
    from testbed.profiles import BUSY_NOTICE, PROFILE_SCHEMA_VERSION, device_to_dict

    data = read_toml(out) if out.is_file() else {}
    video = videos[0] if videos else None
    if video is None:
        video = made_once(cache_dir() / "profile" / "profile-320x180-30fps-gop30-20s.mp4",
                          lambda tmp: encode(tmp, 20, fps=30, size="320x180", gop=30))
    roles = ["local", "edge"] if role == "both" else [role]
    measured = dict(data.get("meta", {}).get("measured", {}))
    with ForeignLoad() as busy:
        for r in roles:
            say(f"profiling {r} ({models} on {device}) ...")
            data[r] = device_to_dict(measure(r, pair, video, repeats=repeats, decode_videos=videos[1:],
                                             progress=lambda stage: say(f"  {stage}")))
            measured[f"{r}_device"] = device_name(device)
    if busy.share is not None:
        measured["foreign_cpu_share"] = busy.share
        if busy.share > BUSY_NOTICE:
            note(f"other processes used {100 * busy.share:.0f}% of this machine's CPUs while profiling; its times "
                 "include that contention")
    measured.update(versions=library_versions(), date=datetime.date.today().isoformat(), models=models,
                    host=platform.node())
    data["meta"] = {"schema_version": PROFILE_SCHEMA_VERSION, "name": out.stem,
                    "provenance": f"measured:{platform.node()}:{models}@{device}",
                    "notes": "measured by `testbed profile` as live runs work (a worker thread, chunks of 16 frames, "
                             "one forward pass per Infer): median of repeats after a warm-up, fitted isotonic over "
                             "size", "measured": measured}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(tomli_w.dumps(data))
    missing = [r for r in ("local", "edge") if r not in data]
    say(f"wrote {out}" + (f" (still without the {missing[0]} role: run testbed profile --role {missing[0]} "
                          f"--out {out})" if missing else ""))


def profile_videos(workload: Any, most: int = 4) -> list[Path]:
    """Videos of the run's own workload to measure decoding on (decoding per megapixel depends on the
    resolution and the content): the `most` longest at the most common resolution; none without videos."""
    from collections import Counter

    from testbed.query import VideoMeta

    videos = [r.query.media for r in workload.records if isinstance(r.query.media, VideoMeta) and r.query.media.path]
    if not videos:
        return []
    size = Counter((m.width, m.height) for m in videos).most_common(1)[0][0]
    same = sorted({m.path: m for m in videos if (m.width, m.height) == size}.values(), key=lambda m: -m.n_frames)
    return [Path(m.path) for m in same[:most]]
