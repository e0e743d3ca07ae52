"""Errors a user can cause with bandit files (backbones, agent states, decision logs): each names
the file and what is wrong in one line, so the CLI can print it and exit with code 2."""

from __future__ import annotations

from pathlib import Path

from testbed.errors import TestbedError


class BanditFileError(TestbedError):
    """A bandit file that cannot be used; `path` is the file, `reason` what is wrong."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever numpy or zipfile said
        super().__init__(f"{self.path}: {self.reason}")


class CorruptFileError(BanditFileError):
    """Missing, truncated, unreadable, or not matching its own card (checksum, keys, shapes)."""


class MismatchError(BanditFileError):
    """A readable file made for something else: another agent type, other densities, another
    feature size or backbone, another format version."""
