"""The routers policy families carry (`PolicySpec.router`): each warms up on the labelled profiling
split before a run through its own hook, so the sim and real runs prepare every family alike.

- confidence (seed 000): the small model's calibrated confidence; a threshold picked for a target.
- input-aware (seed 002): a classifier on the input signals, trained on the split; then a target.
- min-entropy (seed 003): the crop plan (threshold and share) made on the split's view outcomes.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import numpy as np

from testbed.policies.base import PolicySpec, Router, RunState, pick_target_threshold
from testbed.query import QueryRecord


def _confidence(spec: PolicySpec, knobs: Any, state: RunState, split: Sequence[QueryRecord], density: int,
                seed: int) -> None:
    pick_target_threshold(spec, knobs, state, split, density)


def _input_aware(spec: PolicySpec, knobs: Any, state: RunState, split: Sequence[QueryRecord], density: int,
                 seed: int) -> None:
    from testbed.router.inputaware import fit_router

    state.router = fit_router(split, seed)
    pick_target_threshold(spec, knobs, state, split, density)


def _input_aware_score(state: RunState, records: Sequence[QueryRecord]) -> Any:
    from testbed.router.inputaware import record_features

    assert state.router is not None
    return state.router.scores(record_features(records)) if records else np.zeros(0)


def _min_entropy(spec: PolicySpec, knobs: Any, state: RunState, split: Sequence[QueryRecord], density: int,
                 seed: int) -> None:
    from testbed.policies.crop import plan_crop

    state.crop = plan_crop(knobs, split, seed)


CONFIDENCE = Router("confidence", _confidence)
INPUT_AWARE = Router("input-aware", _input_aware, _input_aware_score, needs_profile=True, signals=True)
MIN_ENTROPY = Router("min-entropy", _min_entropy, views=True)
