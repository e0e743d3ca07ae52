"""Read a JSON file a user names: a missing or unreadable one is one error of the caller's type."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_json(path: Path, error: Callable[[str], Exception], what: str) -> Any:
    """The parsed JSON of `path`; "`what` not found: PATH" or "PATH: not a readable `what` (why)" as `error`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not a readable {what} ({exc})") from None
