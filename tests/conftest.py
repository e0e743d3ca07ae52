"""Shared fixtures: small scenarios and workloads built in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.scenario import REPO_ROOT, Scenario, scenario_from_dict

SCENARIOS = REPO_ROOT / "scenarios"


def make_scenario(data: dict[str, Any] | None = None) -> Scenario:
    """A validated scenario whose relative paths resolve like files in scenarios/."""
    return scenario_from_dict({"name": "test", **(data or {})}, SCENARIOS)


@pytest.fixture
def scenario_factory():
    return make_scenario


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Test videos made with ffmpeg, once per session (see tests/videos.py)."""
    from tests.videos import make_all

    return make_all(tmp_path_factory.mktemp("videos"))
