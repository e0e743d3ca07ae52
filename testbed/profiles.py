"""Hardware profiles: latency of each stage as a function of its size, per device (Vidur-style
profile-then-predict). The sim interpolates them; `testbed profile` (live) and the paper fit write them.

Stages and their size units:
  decode      megapixels decoded (frames physically decoded x frame megapixels)
  seek        random accesses into the container (jumps to a keyframe)
  preprocess  frames resized and normalised
  encode      frames through the vision encoder
  prefill     LM input tokens (vision + text)
  generate    LM output tokens
  merge       frames whose tokens are merged to a density
  compress    raw bytes compressed (zstd)
  decompress  raw bytes decompressed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from testbed.config import read_toml
from testbed.errors import ConfigError

STAGES = ("decode", "seek", "preprocess", "encode", "prefill", "generate", "merge", "compress", "decompress")
PROFILE_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Curve:
    """Piecewise-linear seconds over size; linear extrapolation past both ends, never negative."""

    size: tuple[float, ...]
    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.size) < 2 or len(self.size) != len(self.seconds):
            raise ValueError("a curve needs at least two (size, seconds) points of equal length")
        if any(b <= a for a, b in zip(self.size, self.size[1:])):
            raise ValueError("curve sizes must increase strictly")
        if any(s < 0 for s in self.seconds):
            raise ValueError("curve seconds must be >= 0")

    def __call__(self, x: float) -> float:
        xs, ys = self.size, self.seconds
        if x <= xs[0]:
            slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
            return max(0.0, ys[0] + slope * (x - xs[0]))
        if x >= xs[-1]:
            slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            return max(0.0, ys[-1] + slope * (x - xs[-1]))
        return float(np.interp(x, xs, ys))

    @classmethod
    def linear(cls, intercept: float, slope: float, span: float) -> "Curve":
        """Two points: `intercept` at size 0 and intercept + slope*span at `span`."""
        return cls((0.0, float(span)), (float(intercept), float(intercept + slope * span)))


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One device (GPU + CPU + model) with a curve per stage."""

    description: str
    stages: dict[str, Curve] = field(default_factory=dict)

    def seconds(self, stage: str, size: float) -> float:
        try:
            return self.stages[stage](size)
        except KeyError:
            raise ConfigError(f"profile.{stage}", f"stage missing from profile; has {sorted(self.stages)}") from None


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """Profiles for the local device and the edge server, with where they came from."""

    name: str
    provenance: str
    local: DeviceProfile
    edge: DeviceProfile
    notes: str = ""
    measured: dict[str, Any] = field(default_factory=dict)  # device, library versions, date (testbed profile)

    def device(self, where: str) -> DeviceProfile:
        return self.local if where == "local" else self.edge


def _device_from(table: Any, path: str) -> DeviceProfile:
    if not isinstance(table, dict):
        raise ConfigError(path, "expected a table of stages")
    stages: dict[str, Curve] = {}
    for name, spec in table.items():
        sub = f"{path}.{name}"
        if name == "description":
            continue
        if name not in STAGES:
            raise ConfigError(sub, f"unknown stage; allowed: {', '.join(STAGES)}")
        if not isinstance(spec, dict) or set(spec) != {"size", "seconds"}:
            raise ConfigError(sub, "expected a table with exactly the keys size and seconds")
        try:
            stages[name] = Curve(tuple(float(v) for v in spec["size"]), tuple(float(v) for v in spec["seconds"]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(sub, str(exc)) from None
    missing = [s for s in STAGES if s not in stages]
    if missing:
        raise ConfigError(f"{path}.{missing[0]}", "required stage is missing")
    return DeviceProfile(str(table.get("description", "")), stages)


def profile_from_dict(data: dict[str, Any]) -> HardwareProfile:
    """Validate a parsed profile TOML."""
    allowed = {"meta", "local", "edge"}
    for key in data:
        if key not in allowed:
            raise ConfigError(key, f"unknown key; allowed here: {', '.join(sorted(allowed))}")
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise ConfigError("meta", "required table is missing")
    version = meta.get("schema_version")
    if version != PROFILE_SCHEMA_VERSION:
        raise ConfigError("meta.schema_version", f"got {version!r}; this testbed reads version {PROFILE_SCHEMA_VERSION}")
    for key in ("name", "provenance"):
        if not isinstance(meta.get(key), str):
            raise ConfigError(f"meta.{key}", "required string is missing")
    for side in ("local", "edge"):
        if side not in data:
            raise ConfigError(side, "required table is missing (a measured profile needs both roles: "
                                    f"testbed profile --role {side} --out THIS_FILE)")
    measured = meta.get("measured", {})
    if not isinstance(measured, dict):
        raise ConfigError("meta.measured", "expected a table")
    return HardwareProfile(meta["name"], meta["provenance"], _device_from(data["local"], "local"),
                           _device_from(data["edge"], "edge"), str(meta.get("notes", "")), measured)


def load_profile(path: Path) -> HardwareProfile:
    """Read and validate a hardware profile TOML file."""
    try:
        return profile_from_dict(read_toml(path))
    except ConfigError as exc:
        if exc.path:
            raise ConfigError(f"{path.name}:{exc.path}", exc.message) from None
        raise


def profile_to_dict(p: HardwareProfile) -> dict[str, Any]:
    """TOML-writable form of a profile."""
    dev = device_to_dict
    meta: dict[str, Any] = {"schema_version": PROFILE_SCHEMA_VERSION, "name": p.name, "provenance": p.provenance,
                            "notes": p.notes}
    if p.measured:
        meta["measured"] = p.measured
    return {"meta": meta, "local": dev(p.local), "edge": dev(p.edge)}


def device_to_dict(d: DeviceProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"description": d.description}
    for name, c in d.stages.items():
        out[name] = {"size": list(c.size), "seconds": list(c.seconds)}
    return out


def mismatch_notes(profile: HardwareProfile, measured: dict[str, Any]) -> list[str]:
    """One line per way `profile` was measured differently from `measured` (the run's own device and
    library versions): a prediction from it then carries that difference."""
    mine = profile.measured
    if not mine:
        return [f"profile {profile.name} was not measured ({profile.provenance}); its predictions are not this "
                "machine's"]
    notes = []
    for role in ("local", "edge"):
        a, b = mine.get(f"{role}_device"), measured.get(f"{role}_device")
        if a and b and a != b:
            notes.append(f"profile {profile.name}: {role} measured on {a}, this run's {role} is {b}")
    va, vb = mine.get("versions", {}), measured.get("versions", {})
    diff = sorted(k for k in set(va) & set(vb) if va[k] != vb[k])
    if diff:
        notes.append(f"profile {profile.name} was measured with other library versions: "
                     + ", ".join(f"{k} {va[k]} (now {vb[k]})" for k in diff))
    return notes
