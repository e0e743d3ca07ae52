"""Energy per query from a result row and a hardware profile's power model (seed 002).

The device's energy of one query is the sum of its stage energies:

  energy_j = sum over the query's local stages of (active watts of its kind x its seconds)   compute
           + idle watts x (delay - the local stages' seconds, at least 0)                     idle
           + tx J/byte x bytes up + rx J/byte x bytes down                                    radio

and the edge's energy for it, `edge_energy_j`, is the sum over its edge stages of active watts x
seconds (an edge serves many devices, so its idle draw is not any one query's). Stage kinds are the
second part of a stage key (``local.infer.small.a16`` is an `infer` on the device). Rows of the sim
and of real runs carry the same stage keys, so both are costed the same way; real runs use the
power model of the scenario's profile (an assumption unless it was measured on that machine).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from collections.abc import Mapping

import pandas as pd

from testbed.profiles import HardwareProfile

ENERGY_COLUMNS = ("energy_j", "energy_compute_j", "energy_idle_j", "energy_radio_j", "edge_energy_j")


@dataclass(frozen=True, slots=True)
class QueryEnergy:
    """One query's device energy (compute + idle + radio) and the edge's energy for it, in joules."""

    compute_j: float
    idle_j: float
    radio_j: float
    edge_j: float

    @property
    def device_j(self) -> float:
        return self.compute_j + self.idle_j + self.radio_j


@functools.lru_cache(maxsize=4096)
def stage_kind(key: str) -> tuple[str, str]:
    """(site, kind) of a stage key, e.g. ("local", "infer") of ``local.infer.small.a16`` (memoized: every
    row books the same few keys)."""
    site, _, rest = key.partition(".")
    return site, rest.partition(".")[0]


def query_energy(stages: Mapping[str, float], delay_s: float, bytes_up: int, bytes_down: int,
                 profile: HardwareProfile) -> QueryEnergy:
    """The energy of one query whose stages took `stages` seconds (stage key -> seconds)."""
    local, edge = profile.power("local"), profile.power("edge")
    radio = profile.radio_or_default()
    compute = busy = edge_j = 0.0
    for key, seconds in stages.items():
        site, kind = stage_kind(key)
        if site == "local":
            compute += local.watts(kind) * seconds
            busy += seconds
        elif site == "edge":
            edge_j += edge.watts(kind) * seconds
    idle = local.idle_w * max(0.0, delay_s - busy)
    return QueryEnergy(compute, idle, radio.tx_j_per_byte * bytes_up + radio.rx_j_per_byte * bytes_down, edge_j)


def add_energy(queries: pd.DataFrame, profile: HardwareProfile) -> pd.DataFrame:
    """`queries` with ENERGY_COLUMNS added from each row's stage_s, delay_s, bytes_up and bytes_down."""
    if queries.empty or "stage_s" not in queries:
        return queries
    rows = [query_energy(dict(s), d, u, w, profile) for s, d, u, w in
            zip(queries.stage_s, queries.delay_s, queries.bytes_up, queries.bytes_down)]
    out = queries.copy()
    out["energy_j"] = [e.device_j for e in rows]
    out["energy_compute_j"] = [e.compute_j for e in rows]
    out["energy_idle_j"] = [e.idle_j for e in rows]
    out["energy_radio_j"] = [e.radio_j for e in rows]
    out["edge_energy_j"] = [e.edge_j for e in rows]
    return out
