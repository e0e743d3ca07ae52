"""Non-fatal messages: one line each, logged on the "testbed" logger tree with `note` (what a user
should know about a run: a skipped policy, a cached fit, a file cut short). The command line
installs the one handler that prints them as `note: ...` (cli/ui.py); a library caller configures
logging as it likes (with none, Python prints them to stderr)."""

from __future__ import annotations

import logging

LOGGER = "testbed"
log = logging.getLogger(LOGGER)


def note(message: str) -> None:
    """Tell the user `message` (one line), whatever is running."""
    log.warning(message)


def detail(message: str) -> None:
    """A line only --verbose shows."""
    log.debug(message)
