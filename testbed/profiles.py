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
and two an edge profile measured by `testbed profile` has (OPTIONAL_STAGES: a profile without them charges
nothing for them, so the paper-fitted profile's numbers are what they were):
  request     media bytes the edge server takes in before its steps (writing an uploaded video or image,
              probing it; a token payload is decoded in its decompress stage, so it charges nothing here)
  reply       reply bytes handed back: the request/reply machinery's time on the way down (the edge
              sending, the device receiving and decoding), beyond the link's transfer
and two a measured device profile has when the pair's encoders differ (Collaborative tokenizes on the
device with the large model's encoder; without them the device's own encoder's curves stand in):
  large_preprocess, large_encode   as preprocess and encode, with the large model's encoder

Energy (seed 002): each device may give its power, `[local.power]` and `[edge.power]`: `idle_w`, the
watts it draws while it runs none of the query's stages, and `<kind>_w` for each kind of stage a
result row books time under (ENERGY_STAGES: tokenize, infer, compress, decompress, describe,
inspect), the watts while that stage runs; and `[radio]`, the device's network interface:
`tx_j_per_byte` and `rx_j_per_byte`. A profile without them (every profile before them) loads with
DEFAULT_POWER and DEFAULT_RADIO, and a run says so once. `testbed.energy` turns a row's stage times,
delay and bytes into joules.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from testbed.config import read_toml
from testbed.errors import ConfigError

STAGES = ("decode", "seek", "preprocess", "encode", "prefill", "generate", "merge", "compress", "decompress")
OPTIONAL_STAGES = ("request", "reply", "large_preprocess", "large_encode")
PROFILE_SCHEMA_VERSION = 1
MIN_REPEATS = 5
"""A measured profile times each size at least this often after a warm-up (the median is the size's time)."""
ENERGY_STAGES = ("tokenize", "infer", "compress", "decompress", "describe", "inspect")
"""Kinds of stage a result row books time under (the second part of its stage keys), each with a power."""


@dataclass(frozen=True, slots=True)
class Power:
    """Watts a device draws while each kind of stage runs (`active_w`, one per ENERGY_STAGES) and
    while it runs none of the query's stages (`idle_w`: waiting for the link or the other side)."""

    active_w: dict[str, float]
    idle_w: float

    def watts(self, kind: str) -> float:
        """Active watts of a stage kind; a kind the table lacks draws the busiest kind's."""
        w = self.active_w.get(kind)  # (the busiest kind only where asked: this runs for every stage of every row)
        return w if w is not None else max(self.active_w.values(), default=self.idle_w)


@dataclass(frozen=True, slots=True)
class Radio:
    """The device's network interface: joules per byte sent and per byte received, on top of the
    device's idle draw while it waits."""

    tx_j_per_byte: float
    rx_j_per_byte: float


DEFAULT_POWER = {
    "local": Power(dict.fromkeys(ENERGY_STAGES, 15.0), 3.0),
    "edge": Power({**dict.fromkeys(ENERGY_STAGES, 300.0), "decompress": 100.0}, 80.0),
}
"""Assumed, for a profile that gives no power: a laptop-class device (15 W busy, 3 W idle) and a
one-GPU server (300 W on the GPU, 100 W decompressing on the CPU, 80 W idle). Every figure from it
is an assumption, and the run says so."""
DEFAULT_RADIO = Radio(1e-7, 5e-8)
"""Assumed, for a profile that gives no radio: 100 nJ per byte sent and 50 nJ per byte received
(the order of Wi-Fi's energy per bit at full rate)."""


@dataclass(frozen=True, slots=True)
class Curve:
    """Piecewise-linear seconds over size; linear extrapolation past both ends, never negative.
    Evaluated on Python floats (a binary search and numpy's interpolation formula), as np.interp would
    give, without a numpy call per stage the sim charges."""

    size: tuple[float, ...]
    seconds: tuple[float, ...]
    _xs: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _ys: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _slopes: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.size) < 2 or len(self.size) != len(self.seconds):
            raise ValueError("a curve needs at least two (size, seconds) points of equal length")
        if any(b <= a for a, b in zip(self.size, self.size[1:])):
            raise ValueError("curve sizes must increase strictly")
        if any(s < 0 for s in self.seconds):
            raise ValueError("curve seconds must be >= 0")
        xs, ys = tuple(float(v) for v in self.size), tuple(float(v) for v in self.seconds)
        object.__setattr__(self, "_xs", xs)
        object.__setattr__(self, "_ys", ys)
        object.__setattr__(self, "_slopes", tuple((ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
                                                  for i in range(len(xs) - 1)))

    def __call__(self, x: float) -> float:
        xs, ys = self._xs, self._ys
        x = float(x)
        if x <= xs[0]:
            return max(0.0, ys[0] + self._slopes[0] * (x - xs[0]))
        if x >= xs[-1]:
            return max(0.0, ys[-1] + self._slopes[-1] * (x - xs[-1]))
        j = bisect_right(xs, x) - 1  # xs[j] <= x < xs[j + 1], as np.interp's search
        if xs[j] == x:
            return ys[j]
        return self._slopes[j] * (x - xs[j]) + ys[j]  # np.interp's formula, so the same float

    @classmethod
    def linear(cls, intercept: float, slope: float, span: float) -> "Curve":
        """Two points: `intercept` at size 0 and intercept + slope*span at `span`."""
        return cls((0.0, float(span)), (float(intercept), float(intercept + slope * span)))


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One device (GPU + CPU + model) with a curve per stage, and its power where the profile gives it."""

    description: str
    stages: dict[str, Curve] = field(default_factory=dict)
    power: Power | None = None
    pipeline_ratio: float | None = None
    """Measured makespan of the pipelined tokenizer over the sequential one on this device. At 1 or
    more (a CPU-only device, where decode, preprocess and encode share the cores) pipelining does not
    help and the sim charges ratio x the stages' sum; None or below 1, its overlap model."""

    def seconds(self, stage: str, size: float) -> float:
        try:
            return self.stages[stage](size)
        except KeyError:
            raise ConfigError(f"profile.{stage}", f"stage missing from profile; has {sorted(self.stages)}") from None

    def with_encoder(self, encoder: str) -> "DeviceProfile":
        """This device tokenizing with `encoder`'s model: "large" takes the large_* curves where measured."""
        if encoder != "large" or "large_encode" not in self.stages:
            return self
        return replace(self, stages={**self.stages, "encode": self.stages["large_encode"],
                                     "preprocess": self.stages.get("large_preprocess", self.stages["preprocess"])})

    def optional(self, stage: str, size: float) -> float:
        """An OPTIONAL_STAGES stage's seconds, 0 where the profile does not have it."""
        curve = self.stages.get(stage)
        return curve(size) if curve is not None else 0.0


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """Profiles for the local device and the edge server, with where they came from."""

    name: str
    provenance: str
    local: DeviceProfile
    edge: DeviceProfile
    notes: str = ""
    measured: dict[str, Any] = field(default_factory=dict)  # device, library versions, date (testbed profile)
    radio: Radio | None = None

    def device(self, where: str) -> DeviceProfile:
        return self.local if where == "local" else self.edge

    def power(self, where: str) -> Power:
        """The device's power, or DEFAULT_POWER's where the profile gives none."""
        return self.device(where).power or DEFAULT_POWER["local" if where == "local" else "edge"]

    def radio_or_default(self) -> Radio:
        return self.radio or DEFAULT_RADIO

    def energy_note(self) -> str | None:
        """One line if any power figure is the default (None when the profile gives them all)."""
        missing = [f"[{w}.power]" for w in ("local", "edge") if self.device(w).power is None]
        missing += ["[radio]"] if self.radio is None else []
        if not missing:
            return None
        return (f"profile {self.name} gives no {', '.join(missing)}: energy uses the assumed defaults "
                "(testbed/profiles.py DEFAULT_POWER, DEFAULT_RADIO)")


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ConfigError(path, f"expected a number >= 0, got {value!r}")
    return float(value)


def _power_from(table: Any, path: str) -> Power:
    if not isinstance(table, dict):
        raise ConfigError(path, "expected a table: idle_w and <stage>_w for " + ", ".join(ENERGY_STAGES))
    allowed = {"idle_w", *(f"{k}_w" for k in ENERGY_STAGES)}
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    if "idle_w" not in table:
        raise ConfigError(f"{path}.idle_w", "required number is missing")
    active = {k: _number(table[f"{k}_w"], f"{path}.{k}_w") for k in ENERGY_STAGES if f"{k}_w" in table}
    if not active:
        raise ConfigError(path, "give at least one <stage>_w (" + ", ".join(ENERGY_STAGES) + ")")
    return Power(active, _number(table["idle_w"], f"{path}.idle_w"))


def _radio_from(table: Any) -> Radio:
    if not isinstance(table, dict) or set(table) != {"tx_j_per_byte", "rx_j_per_byte"}:
        raise ConfigError("radio", "expected a table with exactly tx_j_per_byte and rx_j_per_byte")
    return Radio(_number(table["tx_j_per_byte"], "radio.tx_j_per_byte"),
                 _number(table["rx_j_per_byte"], "radio.rx_j_per_byte"))


def _device_from(table: Any, path: str) -> DeviceProfile:
    if not isinstance(table, dict):
        raise ConfigError(path, "expected a table of stages")
    stages: dict[str, Curve] = {}
    power: Power | None = None
    for name, spec in table.items():
        sub = f"{path}.{name}"
        if name == "description":
            continue
        if name == "power":
            power = _power_from(spec, sub)
            continue
        if name == "pipeline_ratio":
            if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not 0 < spec < 100:
                raise ConfigError(sub, f"must be a number in (0, 100), got {spec!r}")
            continue
        if name not in STAGES + OPTIONAL_STAGES:
            raise ConfigError(sub, f"unknown stage; allowed: {', '.join(STAGES + OPTIONAL_STAGES)}")
        if not isinstance(spec, dict) or set(spec) != {"size", "seconds"}:
            raise ConfigError(sub, "expected a table with exactly the keys size and seconds")
        try:
            stages[name] = Curve(tuple(float(v) for v in spec["size"]), tuple(float(v) for v in spec["seconds"]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(sub, str(exc)) from None
    missing = [s for s in STAGES if s not in stages]
    if missing:
        raise ConfigError(f"{path}.{missing[0]}", "required stage is missing")
    ratio = table.get("pipeline_ratio")
    return DeviceProfile(str(table.get("description", "")), stages, power,
                         None if ratio is None else float(ratio))


def profile_from_dict(data: dict[str, Any]) -> HardwareProfile:
    """Validate a parsed profile TOML."""
    allowed = {"meta", "local", "edge", "radio"}
    for key in data:
        if key not in allowed:
            raise ConfigError(key, f"unknown key; allowed here: {', '.join(sorted(allowed))}")
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise ConfigError("meta", "required table is missing")
    version = meta.get("schema_version")
    if version != PROFILE_SCHEMA_VERSION:
        raise ConfigError("meta.schema_version",
                          f"got {version!r}; this testbed reads version {PROFILE_SCHEMA_VERSION}")
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
    radio = _radio_from(data["radio"]) if "radio" in data else None
    return HardwareProfile(meta["name"], meta["provenance"], _device_from(data["local"], "local"),
                           _device_from(data["edge"], "edge"), str(meta.get("notes", "")), measured, radio)


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
    out = {"meta": meta, "local": dev(p.local), "edge": dev(p.edge)}
    if p.radio is not None:
        out["radio"] = {"tx_j_per_byte": p.radio.tx_j_per_byte, "rx_j_per_byte": p.radio.rx_j_per_byte}
    return out


def device_to_dict(d: DeviceProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"description": d.description}
    for name, c in d.stages.items():
        out[name] = {"size": list(c.size), "seconds": list(c.seconds)}
    if d.power is not None:
        out["power"] = {"idle_w": d.power.idle_w, **{f"{k}_w": v for k, v in d.power.active_w.items()}}
    if d.pipeline_ratio is not None:
        out["pipeline_ratio"] = d.pipeline_ratio
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
    for what, share in ((f"the profiling of {profile.name}", mine.get("foreign_cpu_share")),
                        ("the live run", measured.get("foreign_cpu_share"))):
        if share is not None and share > BUSY_NOTICE:
            notes.append(f"other processes used {100 * share:.0f}% of this machine's CPUs during {what}: its stage "
                         "times include that contention; measure on a quiet machine to compare the sim with the "
                         "hardware alone")
    return notes


BUSY_NOTICE = 0.10
"""The share of a machine's CPUs that other processes may use while a profile or a live run is measured
before the fidelity report says so."""
