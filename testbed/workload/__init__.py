"""Workload generators (the calibrated synthetic workload used until live traces exist)."""

from collections.abc import Sequence

import numpy as np

from testbed.query import QueryRecord


def query_order(records: Sequence[QueryRecord], seed: int) -> list[QueryRecord]:
    """The order queries are submitted in: a seeded shuffle, the same for every policy and for the
    sim and live runs (fidelity replays rely on it)."""
    perm = np.random.default_rng([seed, 1]).permutation(len(records))
    return [records[i] for i in perm]
