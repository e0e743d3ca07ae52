"""The on-disk cache shared by runs on this machine: generated media, fitted models keyed by a hash of
their inputs. $TESTBED_CACHE, else ~/.cache/vlm-edge-testbed; deleting it only costs time."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TESTBED_CACHE"


def cache_dir() -> Path:
    """Where generated media and cached fits are kept between runs."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vlm-edge-testbed")
