"""The terminal: one progress bar style and one console width for every command."""

from __future__ import annotations

from typing import Any


def console() -> Any:
    from rich.console import Console

    return Console(width=max(140, Console().width))


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
