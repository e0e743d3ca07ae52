"""Temperature scaling over option logits (seed 000 Eq. 1-2), expected calibration error, what a
user sees of both (a per-model, per-benchmark report and a reliability diagram's bins), and the
calibration file `testbed calibrate` writes and a scenario may name instead of fitting.

Arrays: `logits` is (n, K) with NaN padding for queries that have fewer than K options. Logits are
refused when every row looks like probabilities (entries in [0, 1] summing to 1): temperature
scaling divides logits, and dividing probabilities fits a meaningless temperature.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from testbed.cache import cache_dir, write_atomic
from testbed.errors import TestbedError
from testbed.jsonfile import read_json
from testbed.query import QueryRecord

if TYPE_CHECKING:
    from testbed.scenario import Scenario

ECE_BINS = 15
"""Equal-width confidence bins of every ECE and reliability diagram (Guo et al. 2017 use 15)."""
FILE_FORMAT = "testbed-calibration"
FILE_VERSION = 1


class CalibrationError(TestbedError):
    """Logits that cannot be calibrated (probabilities given as logits), or a bad calibration file."""


def check_logits(logits: np.ndarray, what: str = "logits") -> None:
    """Refuse probabilities passed as logits: every row within [0, 1] and summing to 1 (NaN padding
    ignored). One such row can be chance; all of them cannot."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        return
    valid = ~np.isnan(z)
    inside = np.where(valid, (z >= 0) & (z <= 1), True).all(axis=1)
    sums = np.nansum(z, axis=1)
    if bool((inside & (np.abs(sums - 1.0) < 1e-3)).all()):
        raise CalibrationError(f"{what} look like probabilities (every row in [0, 1] and summing to 1); temperature "
                               "scaling needs the raw logits (log-probabilities work too: log(p))")


def option_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Constrained softmax over the valid options (Eq. 1/2); NaN-padded entries get probability 0."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.where(np.isnan(z), -np.inf, z)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confidence(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Max option probability, kappa in Eq. 2."""
    return option_probs(logits, temperature).max(axis=-1)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true options under temperature scaling."""
    p = option_probs(logits, temperature)
    picked = p[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


TEMPERATURE_BOUNDS = (0.05, 20.0)
MIN_FIT_QUERIES = 20
"""Fewer profiling queries than this leave a fitted temperature mostly noise: runs warn."""


def fit_warning(model: str, temperature: float, n: int) -> str:
    """One line when a fitted temperature should not be trusted (at a bound of the fit, or fitted on
    fewer than MIN_FIT_QUERIES queries); "" otherwise."""
    why = []
    lo, hi = TEMPERATURE_BOUNDS
    if min(abs(temperature - lo) / lo, abs(temperature - hi) / hi) < 1e-3:
        why.append(f"is at the fit's bound (T in [{lo:g}, {hi:g}]: these queries do not identify it)")
    if n < MIN_FIT_QUERIES:
        why.append(f"rests on {n} profiling queries (fewer than {MIN_FIT_QUERIES})")
    return f"the {model} model's temperature {temperature:.3g} " + " and ".join(why) if why else ""


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """Temperature T minimising NLL on a labelled profiling set (Guo et al. 2017). When the model's
    answer is right on every query (or wrong on every one), the NLL falls without end as T goes to
    0 (or to infinity) and no temperature is identified: T = 1 (no scaling)."""
    from scipy.optimize import minimize_scalar

    check_logits(logits)
    z = np.asarray(logits, dtype=np.float64)
    if len(z):
        right = np.nanargmax(np.where(np.isnan(z), -np.inf, z), axis=1) == np.asarray(labels)
        if right.all() or not right.any():
            return 1.0
    res = minimize_scalar(lambda t: nll(logits, labels, t), bounds=bounds, method="bounded",
                          options={"xatol": 1e-4})
    return float(res.x)


def reliability_bins(conf: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, ...]:
    """Per equal-width confidence bin (right-closed, the first also holds 0): (count, mean confidence,
    accuracy), each (bins,), NaN where a bin is empty: a reliability diagram's bars."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, conf, minlength=bins) / count
        acc = np.bincount(which, correct, minlength=bins) / count
    return count, mean_conf, acc


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width confidence bins (Guo et al. 2017): the
    count-weighted mean of |accuracy - mean confidence| over the non-empty bins."""
    count, mean_conf, acc = reliability_bins(conf, correct, bins)
    m = count > 0
    return float((count[m] * np.abs(acc[m] - mean_conf[m])).sum() / max(1.0, count.sum()))


@dataclass(frozen=True, slots=True)
class Calibration:
    """Temperatures for the small and large models; T = 1 means uncalibrated."""

    small_t: float = 1.0
    large_t: float = 1.0

    def small_confidence(self, logits: np.ndarray) -> float:
        return _one_confidence(logits, self.small_t)

    def large_confidence(self, logits: np.ndarray) -> float:
        return _one_confidence(logits, self.large_t)


_CONFIDENCE: dict[tuple[bytes, str, tuple[int, ...], float], float] = {}


def _one_confidence(logits: np.ndarray, temperature: float) -> float:
    """One query's confidence, memoized on its logits' bytes and the temperature: every policy of a
    run asks it of the same trace rows, and numpy's per-call overhead is most of its cost."""
    z = np.asarray(logits)
    key = (z.tobytes(), z.dtype.str, z.shape, temperature)
    hit = _CONFIDENCE.get(key)
    if hit is None:
        hit = float(confidence(z[None, :], temperature)[0])
        if len(_CONFIDENCE) >= 1 << 16:
            _CONFIDENCE.clear()
        _CONFIDENCE[key] = hit
    return hit


def padded_logits(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-query option logits of different lengths into (n, K), NaN-padded."""
    out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


MODELS = ("small", "large")


def model_logits(records: Sequence[QueryRecord], model: str) -> np.ndarray:
    """(n, K) NaN-padded logits of `model` on `records`: the small model's, or the native large
    model's (what calibration fits, in the sim and in real runs alike)."""
    rows = [r.small_logits if model == "small" else r.large_native_logits for r in records]
    if any(x is None for x in rows):
        raise CalibrationError(f"calibration needs the {model} model's logits on every query")
    return padded_logits(rows)  # type: ignore[arg-type]


def fit_calibration(records: Sequence[QueryRecord], cache: Path | None = None) -> Calibration:
    """Temperatures for both models from labelled profiling queries (seed 000 SV-A); the large
    model's from its native logits. With `cache` (a folder), the temperatures an earlier fit on the
    same logits and labels left there, else fitted now and left there."""
    if not records:
        return Calibration(1.0, 1.0)
    labels = np.array([r.answer for r in records])
    small, large = model_logits(records, "small"), model_logits(records, "large")
    check_logits(small, "the small model's logits")
    check_logits(large, "the large model's logits")
    path = None if cache is None else cache / f"temperatures-{_fit_key(small, large, labels)}.json"
    if path is not None and (found := _cached_temperatures(path)) is not None:
        return found
    fitted = Calibration(fit_temperature(small, labels), fit_temperature(large, labels))
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only or full cache costs the next run a fit, nothing else
            write_atomic(path, json.dumps({"format": CACHE_FORMAT, **asdict(fitted)}).encode())
    return fitted


CACHE_FORMAT = "testbed-temperatures-1"
"""Bump the number when `fit_temperature` changes what it computes: temperatures cached before are then not reused."""


def _fit_key(small: np.ndarray, large: np.ndarray, labels: np.ndarray) -> str:
    """A SHA-256 of what the fit reads (and of scipy's version: its optimiser gives the last digits)."""
    from importlib import metadata

    h = hashlib.sha256(repr((CACHE_FORMAT, TEMPERATURE_BOUNDS, metadata.version("scipy"))).encode())
    for a in (small, large, labels):
        arr = np.ascontiguousarray(a, dtype=np.float64)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:32]


def _cached_temperatures(path: Path) -> Calibration | None:
    """The temperatures in a cache file, or None where it is missing, unreadable or not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        temps = [data[k] for k in ("small_t", "large_t")] if data.get("format") == CACHE_FORMAT else []
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError):
        return None
    ok = len(temps) == 2 and all(isinstance(t, float) and np.isfinite(t) and t > 0 for t in temps)
    return Calibration(*temps) if ok else None


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """One model's calibration on one benchmark (or "all"): the temperature it is scaled by, and on
    `split` the accuracy and ECE before and after scaling, over `bins` equal-width bins."""

    model: str
    benchmark: str
    split: str
    n: int
    accuracy: float
    temperature: float
    ece_before: float
    ece_after: float
    bins: int = ECE_BINS
    warning: str = ""  # a fitted temperature at its bound or on too few queries (fit_warning)

    @property
    def ece_drop(self) -> float:
        """Relative fall of the ECE, (before - after) / before (seed 000 Fig. 7: about 0.77)."""
        return (self.ece_before - self.ece_after) / self.ece_before if self.ece_before > 0 else float("nan")


@dataclass(frozen=True)
class CalibrationReport:
    """What a user sees of a run's calibration: where the temperatures came from, a row per model
    and benchmark, and the reliability bins (count, mean confidence, accuracy; before and after
    scaling) per model over every benchmark."""

    calibration: Calibration
    source: str
    rows: tuple[CalibrationRow, ...]
    diagrams: dict[str, dict[str, tuple[list[float], list[float], list[float]]]] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        return [{**asdict(r), "ece_drop": r.ece_drop} for r in self.rows]

    def warnings(self) -> list[str]:
        """One line per fitted temperature not to be trusted."""
        return [r.warning for r in self.rows if r.warning]


def calibration_report(calibration: Calibration, records: Sequence[QueryRecord], split: str, source: str,
                       bins: int = ECE_BINS) -> CalibrationReport:
    """Each model's ECE before and after `calibration` on `records` (the `split` they are), per
    benchmark and over all ("all"), with the reliability bins over all. Records without a model's
    logits are skipped for that model."""
    rows: list[CalibrationRow] = []
    diagrams: dict[str, dict[str, tuple[list[float], list[float], list[float]]]] = {}
    fitted = source.startswith("fitted")
    benches = list(dict.fromkeys(r.query.benchmark for r in records))
    for model in MODELS:
        mine = [r for r in records if (r.small_logits if model == "small" else r.large_native_logits) is not None]
        if not mine:
            continue
        t = calibration.small_t if model == "small" else calibration.large_t
        groups = [("all", mine)] + ([(b, [r for r in mine if r.query.benchmark == b]) for b in benches]
                                    if len(benches) > 1 else [])
        for bench, part in groups:
            if not part:
                continue
            z = model_logits(part, model)
            labels = np.array([r.answer for r in part])
            correct = np.nanargmax(z, axis=1) == labels
            warn = fit_warning(model, t, len(part)) if fitted and bench == "all" else ""
            rows.append(CalibrationRow(model, bench, split, len(part), float(correct.mean()), t,
                                       ece(confidence(z), correct, bins), ece(confidence(z, t), correct, bins), bins,
                                       warn))
            if bench == "all":
                diagrams[model] = {}
                for when, temp in (("before", 1.0), ("after", t)):
                    count, mc, acc = reliability_bins(confidence(z, temp), correct, bins)
                    diagrams[model][when] = (count.tolist(), mc.tolist(), acc.tolist())
    return CalibrationReport(calibration, source, tuple(rows), diagrams)


def save_calibration(path: Path, report: CalibrationReport, meta: dict[str, Any] | None = None) -> None:
    """Write the temperatures and the report as JSON (no pickle): what a scenario's
    `calibration.file` reads back."""
    data = {"format": FILE_FORMAT, "version": FILE_VERSION, "small_t": report.calibration.small_t,
            "large_t": report.calibration.large_t, "source": report.source, "meta": meta or {},
            "rows": report.table()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


def load_calibration(path: Path) -> Calibration:
    """The temperatures of a calibration file `testbed calibrate` wrote; a missing, corrupt or
    foreign file is one CalibrationError."""
    data = read_json(path, CalibrationError, "calibration file")
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise CalibrationError(f"{path}: not a calibration file (written by `testbed calibrate TRACE --out FILE`)")
    if data.get("version") != FILE_VERSION:
        raise CalibrationError(f"{path}: calibration file version {data.get('version')!r}; this testbed reads "
                               f"{FILE_VERSION}")
    temps = []
    for key in ("small_t", "large_t"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise CalibrationError(f"{path}: {key} must be a positive number, got {v!r}")
        temps.append(float(v))
    return Calibration(temps[0], temps[1])


def scenario_calibration(sc: Scenario, profile_split: Sequence[QueryRecord]) -> tuple[Calibration, str]:
    """The temperatures a run uses and where they came from: the scenario's calibration file, or a
    fit on the profiling split."""
    if sc.calibration.file:
        path = sc.resolve_path(sc.calibration.file)
        return load_calibration(path), f"file {path}"
    return fit_calibration(profile_split, cache_dir() / "temperatures"), "fitted on the profiling split"
