"""Error types a user can cause, each rendered by the CLI as one line (exit code 2)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices` to a misspelt `word`, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class TestbedError(Exception):
    """Base class for errors caused by input (files, scenarios, traces), not by bugs."""

    __test__ = False  # keep pytest from collecting this as a test class


class ConfigError(TestbedError):
    """A scenario or profile key that is unknown, mistyped or out of range.

    `path` is the dotted key path (e.g. ``network.up_mbps``) so the message points at the line.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class TraceError(TestbedError):
    """A workload trace, bandwidth trace or profile that is missing, malformed or of a wrong version."""
