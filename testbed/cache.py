"""The on-disk cache shared by runs on this machine: generated media, fitted models keyed by a hash of
their inputs. $TESTBED_CACHE, else ~/.cache/vlm-edge-testbed; deleting it only costs time."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "TESTBED_CACHE"


def cache_dir() -> Path:
    """Where generated media and cached fits are kept between runs."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vlm-edge-testbed")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` whole when the block ends, or is removed if it raises: a
    temporary file of this process's own, then a rename, so a reader (or a second process writing the
    same entry) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)
