"""The terminal: one progress bar style and one console width for every command."""

from __future__ import annotations

from typing import Any


NO_TERMINAL_WIDTH = 250
"""Columns for output to a file or pipe, where nothing wraps: wide enough that no column name is cut."""


def console() -> Any:
    from rich.console import Console

    probe = Console()
    return Console(width=max(140, probe.width) if probe.is_terminal else NO_TERMINAL_WIDTH)


def progress_bar(con: Any) -> Any:
    """A transient bar: description, bar, done/total and its unit (`add_task(..., unit="queries")`),
    elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("left"),
                    TimeRemainingColumn(), console=con, transient=True)
