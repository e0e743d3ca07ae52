"""Where the shipped scenarios, profiles, bandwidth traces, recorded traces, pocket heads and fitted
backbones are: the repository root of a source checkout (scenarios/ and traces/ beside testbed/), or
inside an installed package (testbed/_shipped/, package data read through importlib.resources)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_root() -> Path:
    """The folder holding scenarios/ and traces/: a source checkout's root, else the package data."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "scenarios").is_dir():
        return checkout
    return Path(str(files("testbed").joinpath("_shipped")))


DATA_ROOT = data_root()
