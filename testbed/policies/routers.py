"""The routers policy families carry (`PolicySpec.router`): each warms up on the labelled profiling
split before a run through its own hook, so the sim and real runs prepare every family alike.

- confidence (seed 000): the small model's calibrated confidence; a threshold picked for a target.
- input-aware (seed 002): a classifier on the input signals, trained on the split; then a target.
- min-entropy (seed 003): the crop plan (threshold and share) made on the split's view outcomes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import numpy as np

from testbed.artifacts import ArtifactRows
from testbed.policies.crop import CROP_PLAN, CROP_PLANS, plan_crop
from testbed.policies.base import THRESHOLD, Learned, PolicySpec, Router, RunState, pick_target_threshold
from testbed.query import QueryRecord

if TYPE_CHECKING:
    import pandas as pd

    from testbed.router.inputaware import InputAwareRouter

INPUT_AWARE_ROUTER: Learned[InputAwareRouter] = Learned("input-aware router")
"""input-aware: the classifier trained on the profiling split."""


def _confidence(spec: PolicySpec, knobs: Any, state: RunState, split: Sequence[QueryRecord], density: int,
                seed: int) -> None:
    pick_target_threshold(spec, knobs, state, split, density)


def _input_aware(spec: PolicySpec, knobs: Any, state: RunState, split: Sequence[QueryRecord], density: int,
                 seed: int) -> None:
    from testbed.router.inputaware import fit_router

    INPUT_AWARE_ROUTER.put(state, fit_router(split, seed))
    pick_target_threshold(spec, knobs, state, split, density)


def _input_aware_score(state: RunState, records: Sequence[QueryRecord]) -> Any:
    from testbed.router.inputaware import record_features

    router = INPUT_AWARE_ROUTER.get(state)
    assert router is not None
    return router.scores(record_features(records)) if records else np.zeros(0)


def _min_entropy(spec: PolicySpec, knobs: Any, state: RunState, split: Sequence[QueryRecord], density: int,
                 seed: int) -> None:
    CROP_PLAN.put(state, plan_crop(knobs, split, seed))


def _routing_row(policy: str, state: RunState, mine: pd.DataFrame) -> dict[str, Any] | None:
    """A threshold picked for a target: the target, the threshold, the local share and accuracy it gave
    on the profiling split it was picked on, and what it reached on the test split (the policy's rows)."""
    pick = THRESHOLD.get(state)
    if pick is None:
        return None
    return {"policy": policy, "target": pick.target, "goal": pick.goal, "tau_route": pick.tau,
            "profile_queries": pick.n, "profile_local_share": pick.profile_share,
            "profile_accuracy": pick.profile_accuracy, "test_queries": int(len(mine)),
            "test_local_share": float((mine.served_by == "local").mean()) if len(mine) else float("nan"),
            "test_accuracy": float(mine.correct.mean()) if len(mine) else float("nan")}


ROUTING = ArtifactRows("routing", _routing_row)
"""Thresholds picked for a target (routing.csv, testbed/report/routing.py)."""

CONFIDENCE = Router("confidence", _confidence, artifacts=(ROUTING,))
INPUT_AWARE = Router("input-aware", _input_aware, _input_aware_score, needs_profile=True, signals=True,
                     artifacts=(ROUTING,))
MIN_ENTROPY = Router("min-entropy", _min_entropy, views=True, artifacts=(CROP_PLANS,))
