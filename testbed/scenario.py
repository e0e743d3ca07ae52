"""Scenario files (TOML): workload, network, nodes, models, arrivals, policies, sweep.

Validated once, here: unknown keys, wrong types and values out of range are rejected with the
key path and what is allowed. Relative paths are taken from the scenario file's folder. A policy's
knobs live in a table of its own, ``[policies.<name>]``, checked against that policy's knobs type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import tomli_w

from testbed.config import ConfigError, from_dict, help_field, read_toml, to_dict
from testbed.shipped import DATA_ROOT
from testbed.errors import did_you_mean
from testbed.models import PRESETS
from testbed.models.checkpoint import PairSpec, is_pair_text, parse_pair
from testbed.policies.registry import BASELINES, resolve
from testbed.query import DENSITIES
from testbed.workload.synthetic import BENCHMARKS, CONTEXT_SIGNAL

REPO_ROOT = DATA_ROOT
"""The folder holding the shipped scenarios/ and traces/ (testbed/shipped.py): the repository root of a
source checkout, the package data of an installed one."""
SHIPPED_PROFILE = REPO_ROOT / "traces" / "profiles" / "paper-fitted.toml"


STREAM_KINDS = ("stream", "stream-trace")
"""Workload kinds of camera streams (seed 001): the calibrated synthetic streams, or a stream trace."""


@dataclass(frozen=True)
class WorkloadConfig:
    kind: Literal["synthetic", "synthetic-image", "synthetic-crop", "trace", "manifest", "mvbench", "stream",
                  "stream-trace"] = \
        help_field("synthetic", "calibrated synthetic workload (seed 000's video QA); calibrated synthetic image QA "
                                "(seed 002's VQA-like queries with input signals); calibrated synthetic image QA "
                                "with crop outcomes (seed 003's TextVQA-like queries); a Parquet trace; a JSONL "
                                "manifest of your own media files; an MVBench annotation JSON; calibrated synthetic "
                                "camera streams ([stream]); or a Parquet stream trace")
    path: str = help_field("", "the trace, manifest, MVBench JSON or stream trace file (kinds trace, manifest, "
                               "mvbench, stream-trace)")
    video_root: str = help_field("", "folder the MVBench JSON's videos are in (kind mvbench; default: the JSON's)")
    benchmarks: tuple[str, ...] = help_field(("mvbench", "videomme", "mlvu"), "synthetic query sets to generate "
                                                                             "(kind synthetic; synthetic-image makes "
                                                                             "one, vqa-like; synthetic-crop one, "
                                                                             "textvqa-like)")
    queries_per_benchmark: int = help_field(1000, "synthetic queries per benchmark (30% profiling, 70% test)", ge=10,
                                            le=100_000)
    context_signal: float = help_field(CONTEXT_SIGNAL, "synthetic: correlation of each bandit context column with "
                                                       "the density a query needs (assumed; 0: pure noise)",
                                       ge=0.0, le=1.0)

    def __post_init__(self) -> None:
        for b in self.benchmarks:
            if b not in BENCHMARKS:
                raise ConfigError("workload.benchmarks", f"unknown benchmark {b!r}; allowed: {', '.join(BENCHMARKS)}")
        if self.kind not in ("synthetic", "synthetic-image", "synthetic-crop", "stream") and not self.path:
            raise ConfigError("workload.path", f"required when workload.kind = {self.kind!r}")

    @property
    def streams(self) -> bool:
        return self.kind in STREAM_KINDS


@dataclass(frozen=True)
class StreamConfig:
    """Camera streams (seed 001): used when workload.kind is 'stream' or 'stream-trace'."""

    datasets: tuple[str, ...] = help_field(("nuscenes",), "synthetic stream sets to generate (workload.kind = "
                                                          "'stream'), each calibrated on seed 001's Table 2")
    streams_per_dataset: int = help_field(0, "streams per synthetic set (0: the dataset's own, e.g. nuScenes' 156 "
                                             "scenes of 20 s)", ge=0)
    tau_s: float = help_field(1.0, "a frame's answer is due this long after its capture; a large answer later than "
                                   "that is not adopted for it (seed 001: tau = 1 s)", gt=0.0)
    vision_tokens: int = help_field(1824, "vision tokens the large model's encoder makes of one frame, what "
                                          "distributed-vlm uploads (Qwen2.5-VL on 1600x900: 1824, seed 001 Sec. 3.3.1)",
                                  ge=1)
    cloud_extra_s: float = help_field(0.0, "sim of a stream trace: seconds added to every recorded large-model "
                                            "service time (a farther, busier cloud than the recording's; seed 001's "
                                            "LVLM took 2.11 s a frame, Table 3)", ge=0.0)
    fps: float = help_field(1.0, "real runs: frames per second the video is played at (seed 001: 1-2 FPS)",
                             gt=0.0, le=60.0)
    seconds: float = help_field(20.0, "real runs: seconds of each stream (a scene)", gt=0.0)
    live_streams: int = help_field(2, "real runs: streams to play", ge=1)
    content: Literal["test-sources", "easy-vqa"] = help_field(
        "test-sources", "real runs: what the streams show, segment by segment: ffmpeg's test sources (the label is "
                        "the source) or easy-VQA test images (the label is the shape; the pocket pair answers it)")
    cpu_threads: int = help_field(1, "real runs on a CPU: torch's intra-op threads while streams play (0: torch's "
                                     "default); 1 keeps a frame's latency steady on a busy 2-core machine (tiny "
                                     "models: p95 15 ms with 1 thread, 221 ms with 2, measured under load)", ge=0)

    def __post_init__(self) -> None:
        from testbed.streams.specs import DATASETS

        for d in self.datasets:
            if d not in DATASETS:
                raise ConfigError("stream.datasets", f"unknown stream set {d!r}; allowed: {', '.join(DATASETS)}")
        if not self.datasets:
            raise ConfigError("stream.datasets", "name at least one stream set")


@dataclass(frozen=True)
class CalibrationConfig:
    """Temperature scaling (seed 000 Eq. 1-2): fitted on the profiling split, or read from a file."""

    file: str = help_field("", "a calibration file written by `testbed calibrate TRACE --out FILE`: its temperatures "
                               "instead of fitting on the run's profiling split")
    bins: int = help_field(15, "equal-width confidence bins of the ECE and the reliability diagram each run reports",
                           ge=2, le=100)


@dataclass(frozen=True)
class NetworkConfig:
    up_mbps: float = help_field(59.0, "uplink rate, Mbit/s (seed 000: 59, Speedtest global median)", gt=0.0)
    down_mbps: float = help_field(119.0, "downlink rate, Mbit/s (seed 000: 119)", gt=0.0)
    rtt_ms: float = help_field(9.0, "round-trip time, ms; each direction adds RTT/2 (seed 000: 9)", ge=0.0)
    loss: float = help_field(0.0, "random loss probability per TCP segment; the sender's Reno window caps the rate "
                                  "near MSS/RTT*1.22/sqrt(loss) (Mathis) and lost segments are sent again",
                             ge=0.0, lt=1.0)
    efficiency: float = help_field(1 / 1.055, "goodput / shaped rate on a constant-rate link (ZeroMQ over "
                                              "tbf-shaped veth: 1/1.055); traces use mahimahi's framing instead",
                                   gt=0.0, le=1.0)
    mtu: int = help_field(1500, "IP MTU, bytes; TCP segments carry mtu - 52 payload bytes (IP, TCP, timestamps)",
                          ge=576, le=1500)
    slow_start_after_idle: bool = help_field(False, "a connection starts in slow start (initial window 10) and its "
                                                    "window decays after idling longer than RTT + 200 ms, as "
                                                    "Linux's net.ipv4.tcp_slow_start_after_idle = 1 does; false: "
                                                    "a warm window that never limits a loss-free link")
    up_trace: str = help_field("", "mahimahi uplink trace (ms per 1500-byte opportunity); overrides up_mbps")
    down_trace: str = help_field("", "mahimahi downlink trace; overrides down_mbps")
    trace_mean_mbps_up: float = help_field(0.0, "scale the uplink trace to this mean rate (0: as recorded)", ge=0.0)
    trace_mean_mbps_down: float = help_field(0.0, "scale the downlink trace to this mean rate (0: as recorded)", ge=0.0)
    shared: bool = help_field(False, "all clients share one uplink and downlink (one cell or LAN); "
                                     "false: each client has its own link of these rates (in the sim: live runs "
                                     "put every client on the one shaped link, and fidelity replays them so)")

    def __post_init__(self) -> None:
        for d in ("up", "down"):  # a rule that ties two keys: a target mean needs a trace to scale
            if getattr(self, f"trace_mean_mbps_{d}") and not getattr(self, f"{d}_trace"):
                raise ConfigError(f"network.trace_mean_mbps_{d}", f"scales a trace: set network.{d}_trace too (or "
                                                                   "leave this 0)")


@dataclass(frozen=True)
class NodesConfig:
    profile: str = help_field("", "hardware profile TOML (stage latency over size); empty: the shipped "
                                  "paper-fitted one")
    edge_gpus: int = help_field(1, "GPU servers at the edge (seed 000 serves offloads one at a time)", ge=1)
    edge_decode_workers: int = help_field(4, "CPU video-decode workers at the edge", ge=1)
    local_gpus: int = help_field(1, "GPU servers on each client's device", ge=1)
    local_decode_workers: int = help_field(1, "CPU video-decode workers on each client's device", ge=1)
    chunk_frames: int = help_field(16, "frames per chunk in the pipelined tokenizer", ge=1)



@dataclass(frozen=True)
class ModelsConfig:
    token_dim: int = help_field(1024, "vision token width (UMT-L: 1024)", ge=1)
    dtype: Literal["fp16", "bf16", "fp32"] = help_field("fp16", "token dtype on the wire")
    compression_ratio: float = help_field(0.85, "compressed/raw bytes of a token message (zstd 3, byte-shuffle: "
                                                "0.85 measured on fp16 tiny-encoder and random tokens)", gt=0.0, le=1.5)
    default_density: int = help_field(16, "tokens per frame fed to the LM by default (VideoChat-Flash: 16)")
    preset: str = help_field("tiny", "the VLM pair of real runs: 'tiny' (random weights, CPU), 'real-size' "
                                     "(random-init 2B/7B, GPU timing), 'pocket' (trained easy-VQA heads, CPU) "
                                     "or a local model-pair folder")
    device: str = help_field("cpu", "torch device of real runs: cpu, cuda, cuda:1, ...")
    small: str = help_field("", "the device's VLM as a transformers checkpoint folder (Qwen2.5-VL, Qwen2-VL, "
                                "LLaVA-OneVision, SmolVLM or another image-text-to-text family); with large, "
                                "in place of preset")
    large: str = help_field("", "the edge's VLM as a transformers checkpoint folder (with small)")
    large_encoder: Literal["small", "own"] = help_field("own", "the encoder the large checkpoint tokenizes with "
                                                              "when it runs natively: its own or the small one's")
    trust_remote_code: bool = help_field(False, "let checkpoints run their own Python code (families outside "
                                                "transformers, e.g. VideoChat-Flash); off unless you trust them")

    def __post_init__(self) -> None:
        if self.default_density not in DENSITIES:
            raise ConfigError("models.default_density", f"must be one of {DENSITIES}")
        if bool(self.small) != bool(self.large):
            raise ConfigError("models.small" if not self.small else "models.large",
                              "name both checkpoint folders, small and large, or neither")
        if is_pair_text(self.preset):
            parse_pair(self.preset, "models.preset")


@dataclass(frozen=True)
class ArrivalsConfig:
    kind: Literal["closed", "poisson"] = help_field("closed", "closed loop (next query after the answer) or Poisson")
    clients: int = help_field(1, "users, each with its own device, sharing one edge", ge=1, le=10_000)
    rate_per_client: float = help_field(0.05, "queries per second per client (poisson)", gt=0.0)
    think_s: float = help_field(0.0, "pause between answer and next query (closed)", ge=0.0)



@dataclass(frozen=True)
class LiveConfig:
    shaping: Literal["auto", "tbf+netem", "tbf", "htb", "user-space"] = help_field(
        "auto", "how live mode shapes the link: tc in network namespaces (tbf, htb; netem adds delay and loss in "
                "the kernel where it exists, else the transport adds them), or user-space pacing on loopback; "
                "auto takes the first this machine supports")
    edge_timeout_s: float = help_field(60.0, "an Offload the edge has not answered by then falls back to the device",
                                       gt=0.0)
    edge_max_queue: int = help_field(8, "requests that may wait at the edge; more get 'busy' and fall back", ge=1)
    self_check: bool = help_field(True, "measure the shaped link's goodput and RTT before the first query")



DEFAULT_POLICIES = ("device-native", "edge-hosted", "collaborative", "quickgrasp", "quickgrasp-fixed16", "nosharing",
                    "uncalibrated-fixed16", "oracle")


@dataclass(frozen=True)
class PoliciesConfig:
    run: tuple[str, ...] = help_field(DEFAULT_POLICIES, "policies to run, by name")
    baselines: tuple[str, ...] = help_field(BASELINES, "policies every other is compared against (speedup)")
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "tables": True, "tables_of": "policy with its knobs, e.g. [policies.quickgrasp-fixed16] tau_route = 0.6",
        "help": "each run policy's knobs, every default filled in"})

    def __post_init__(self) -> None:
        if not self.run:
            raise ConfigError("policies.run", "name at least one policy")
        for key, names in (("policies.run", self.run), ("policies.baselines", self.baselines)):
            twice = [n for n in dict.fromkeys(names) if names.count(n) > 1]
            if twice:
                raise ConfigError(key, f"{twice[0]!r} is named {names.count(twice[0])} times; name each policy once")
        for name in self.run:
            resolve(name, "policies.run")
        for name in self.baselines:
            resolve(name, "policies.baselines")
        wanted = list(dict.fromkeys(self.run + self.baselines))
        wanted += [s for s in dict.fromkeys(resolve(n).knobs_from for n in wanted) if s and s not in wanted]
        for name in self.knobs:
            if name not in wanted:
                raise ConfigError(f"policies.{name}", "knobs for a policy that is neither run nor a baseline "
                                                      f"(nor read by one); run: {', '.join(self.run)}")
        filled = {}
        for name in wanted:
            filled[name] = to_dict(_knobs(name, self.knobs.get(name, {})))
        object.__setattr__(self, "knobs", filled)

    def knobs_for(self, name: str) -> Any:
        """The knobs dataclass of policy `name` (a run policy or a baseline); a policy that reads
        another's knobs (`PolicySpec.knobs_from`) gets that one's table."""
        source = resolve(name).knobs_from or name
        return _knobs(source, self.knobs.get(source, {}))


def _knobs(name: str, table: dict[str, Any]) -> Any:
    path = f"policies.{name}"
    try:
        return from_dict(resolve(name).knobs, table, path)
    except ConfigError as exc:
        if exc.path.startswith(path):
            raise
        raise ConfigError(f"{path}.{exc.path}" if exc.path else path, exc.message) from None


@dataclass(frozen=True)
class Scenario:
    name: str = help_field("", "scenario name (results go to results/<name>/)")
    description: str = help_field("", "one line on what the scenario asks")
    seed: int = help_field(0, "seed for every random choice: same scenario and seed, same numbers", ge=0)
    paper_comparison: bool = help_field(False, "print measured figures next to the seeds' papers' (seed 000's; "
                                               "seed 002's where input-aware and edge-hosted run)")
    replications: int = help_field(0, "testbed sim runs this many seeds (seed, seed+1, ...) and reports each metric's "
                                      "mean and 95% CI, as --replications N does (0: one run; a query workload "
                                      "without a sweep)", ge=0)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    nodes: NodesConfig = field(default_factory=NodesConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    arrivals: ArrivalsConfig = field(default_factory=ArrivalsConfig)
    policies: PoliciesConfig = field(default_factory=PoliciesConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict, metadata={
        "help": "grid over any key path, e.g. 'network.up_mbps' = [5, 20, 59]"})
    base_dir: str = field(default=".", metadata={"internal": True, "help": "folder relative paths start from"})

    def __post_init__(self) -> None:
        streams = self.workload.streams
        if self.replications == 1:
            raise ConfigError("replications", "must be 0 (one run) or at least 2 seeds, got 1")
        if self.replications and (streams or self.sweep):
            raise ConfigError("replications", "replicates one point of a query workload: a stream scenario or a "
                                              "[sweep] runs once per point")
        for key, names in (("policies.run", self.policies.run), ("policies.baselines", self.policies.baselines)):
            for name in names:
                if resolve(name, key).stream != streams:
                    what = ("answers camera streams: set workload.kind = 'stream' or 'stream-trace'" if not streams
                            else "answers queries, not camera streams (stream policies: svlm-only, lvlm-only, "
                                 "distributed-vlm, edgevlm, laecips-like, adas-like and their -lcr<band> forms)")
                    hint = "; a stream scenario sets baselines = [] or stream policies" \
                        if key.endswith("baselines") and streams else ""
                    raise ConfigError(key, f"{name} {what}{hint}")

    def resolve_path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else (Path(self.base_dir) / path).resolve()

    def model_pair(self) -> str:
        """What make_pair builds: a preset, a model-pair folder, or two checkpoint folders as
        `small=PATH,large=PATH` (paths from [models] small/large resolved against the scenario's folder)."""
        m = self.models
        if is_pair_text(m.preset):  # --models small=PATH,large=PATH (paths as the user typed them)
            spec = parse_pair(m.preset, "--models")
            return PairSpec(spec.small, spec.large, spec.large_encoder,
                            spec.trust_remote_code or m.trust_remote_code).text()
        if m.small:
            return PairSpec(str(self.resolve_path(m.small)), str(self.resolve_path(m.large)), m.large_encoder,
                            m.trust_remote_code).text()
        return m.preset

    def profile_path(self) -> Path:
        """The hardware profile file: the scenario's, or the shipped paper-fitted profile."""
        return self.resolve_path(self.nodes.profile) if self.nodes.profile else SHIPPED_PROFILE

    def grid(self) -> list[tuple[dict[str, Any], "Scenario"]]:
        """Every point of the sweep (one point without a sweep) as (assignment, scenario)."""
        return [self.point(i) for i in range(self.points)]

    @property
    def points(self) -> int:
        """How many points the sweep has (1 without a sweep)."""
        return math.prod(len(v) for v in self.sweep.values()) if self.sweep else 1

    def point(self, index: int) -> tuple[dict[str, Any], "Scenario"]:
        """Point `index` of the grid, in `grid`'s order (itertools.product: the last key varies fastest),
        built alone: a worker running one point of a large sweep does not rebuild them all."""
        if not self.sweep:
            return {}, self
        if not 0 <= index < self.points:
            raise IndexError(f"sweep point {index} of {self.points}")
        keys = list(self.sweep)
        picked: dict[str, Any] = {}
        for k in reversed(keys):
            index, j = divmod(index, len(self.sweep[k]))
            picked[k] = self.sweep[k][j]
        assignment = {k: picked[k] for k in keys}
        return assignment, with_overrides(self, assignment)


def with_overrides(sc: Scenario, assignment: dict[str, Any], flags: dict[str, str] | None = None) -> Scenario:
    """A copy of `sc` with dotted keys set, validated like the file itself. An error names the key
    as `sweep.<key>`, or as the command-line flag `flags` maps it to (e.g. "--queries")."""
    flags = flags or {}

    def where(key: str) -> str:
        return flags.get(key, f"sweep.{key}")

    data = to_dict(sc)
    data.pop("sweep")
    data.pop("base_dir")
    for key, value in assignment.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(where(key), "not a key path of a scenario")
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], dict):
            raise ConfigError(where(key), "not a key path of a scenario")
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    if {"policies.run", "policies.baselines"} & set(assignment):  # knobs of policies no longer run go
        keep = set(data["policies"]["run"]) | set(data["policies"]["baselines"])
        data["policies"] = {k: v for k, v in data["policies"].items()
                            if not isinstance(v, dict) or k in keep}
    try:
        return replace(from_dict(Scenario, data), base_dir=sc.base_dir)
    except ConfigError as exc:
        raise ConfigError(where(exc.path), exc.message) from None


def resolved_toml(sc: Scenario, live: bool = False) -> str:
    """The scenario as run: every key in force with its value (defaults filled in), every path
    absolute, so it reruns as is; keys that had no effect on this run are left out (a rate a trace
    overrides, the other arrival kind's knobs, the synthetic generator's keys of a trace run, the
    [stream] table of a query run, the [live] table of a sim run)."""
    data = to_dict(sc)
    data.pop("base_dir", None)
    net, arr, wl = data["network"], data["arrivals"], data["workload"]
    for d in ("up", "down"):
        if net[f"{d}_trace"]:
            net.pop(f"{d}_mbps")
        else:
            net.pop(f"{d}_trace")
            net.pop(f"trace_mean_mbps_{d}")
    arr.pop("think_s" if arr["kind"] == "poisson" else "rate_per_client")
    if wl["kind"] == "synthetic":
        wl.pop("path")
        wl.pop("video_root")
    elif wl["kind"] == "synthetic-crop":  # one query set; its size is all the generator reads
        for key in ("path", "video_root", "benchmarks", "context_signal"):
            wl.pop(key)
    else:
        for key in ("benchmarks", "queries_per_benchmark", "context_signal"):
            wl.pop(key, None)
        if wl["kind"] != "mvbench":
            wl.pop("video_root")
    if not sc.workload.streams:
        data.pop("stream", None)
    if not live:
        data.pop("live", None)
    data["nodes"]["profile"] = str(sc.profile_path())
    for table, key in (("network", "up_trace"), ("network", "down_trace"), ("workload", "path"),
                       ("workload", "video_root"), ("calibration", "file")):
        if data[table].get(key):
            data[table][key] = str(sc.resolve_path(data[table][key]))
    preset = data["models"]["preset"]
    if preset not in PRESETS and not is_pair_text(preset):
        data["models"]["preset"] = str(sc.resolve_path(preset))
    for key in ("small", "large"):
        if data["models"].get(key):
            data["models"][key] = str(sc.resolve_path(data["models"][key]))
    return tomli_w.dumps(data)


def scenario_from_dict(data: dict[str, Any], base_dir: Path) -> Scenario:
    """Validate a parsed scenario; every sweep point is validated too."""
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError("sweep", "expected a table of key path = [values]")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key}", "expected a non-empty list of values")
    sc = replace(from_dict(Scenario, data), base_dir=str(base_dir))
    sc.grid()  # validates every sweep point
    return sc


def load_scenario(name_or_path: str, scenarios_dir: Path | None = None) -> Scenario:
    """Load scenarios/<name>.toml or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix not in ("", ".toml") or (path.suffix == "" and len(path.parts) > 1):
        what = "no such file" if not path.exists() else "not a TOML file"
        raise ConfigError("", f"{name_or_path}: {what}; a scenario is a name in scenarios/ or a .toml file")
    if path.suffix != ".toml":
        path = (scenarios_dir or REPO_ROOT / "scenarios") / f"{name_or_path}.toml"
    if not path.exists():
        available = sorted(p.stem for p in (scenarios_dir or REPO_ROOT / "scenarios").glob("*.toml"))
        raise ConfigError("", f"no scenario {name_or_path!r} ({path}){did_you_mean(name_or_path, available)}; "
                              f"available: {', '.join(available)}")
    data = read_toml(path)
    if not data:
        raise ConfigError("", f"{path}: an empty scenario; give at least one key (e.g. description, or [policies] "
                              "run), or run a shipped one such as 'default'")
    data.setdefault("name", path.stem)
    try:
        return scenario_from_dict(data, path.parent.resolve())
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc.path}" if exc.path else path.name, exc.message) from None


def key_rows() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, help) of every scenario key and every policy family's knobs: what
    `testbed keys` prints and docs/scenario-keys.md lists."""
    from testbed.config import field_help
    from testbed.policies.registry import CROP, FIXED, PER_DENSITY

    rows = field_help(Scenario)
    # each policy's knobs, in [policies.<name>] (density families share their knobs type; seed 003's
    # baselines read entropy-crop's table)
    specs = {**FIXED, **{f"{prefix}-fixed<a>": make(16) for prefix, make in PER_DENSITY.items()},
             **{n: s for n, s in CROP.items() if not s.knobs_from}}
    for name, spec in specs.items():
        rows += field_help(spec.knobs, f"policies.{name}.")
    return rows
