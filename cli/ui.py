"""The terminal: one progress bar style and one console width for every command."""

from __future__ import annotations

from typing import Any


def console() -> Any:
    from rich.console import Console

    return Console(width=max(140, Console().width))


def progress_bar(con: Any) -> Any:
    """A transient bar: description, bar, done/total, elapsed time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=con, transient=True)
