"""The terminal: one progress bar style, one console width and one way to print a note for every
command."""

from __future__ import annotations

from typing import Any


NO_TERMINAL_WIDTH = 250
"""Columns for output to a file or pipe, where nothing wraps: wide enough that no column name is cut."""


def console() -> Any:
    from rich.console import Console

    probe = Console()
    return Console(width=max(140, probe.width) if probe.is_terminal else NO_TERMINAL_WIDTH)


def print_frame(con: Any, frame: Any, title: str, floatfmt: str = "") -> None:
    """A DataFrame as a terminal table (the first column left-aligned, the rest right-aligned; floats
    with `floatfmt` when given, blank for NaN)."""
    from rich.markup import escape
    from rich.table import Table

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else format(v, floatfmt) if floatfmt else str(v)
        return escape(str(v))

    t = Table(title=title, title_justify="left")
    for i, c in enumerate(frame.columns):
        t.add_column(escape(str(c)), justify="left" if i == 0 else "right", no_wrap=i == 0, overflow="fold")
    for row in frame.itertuples(index=False):
        t.add_row(*(cell(v) for v in row))
    con.print(t)


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


def setup_logging(verbosity: int = 0) -> None:
    """Print the testbed's notes (testbed/notes.py) one line each as `note: ...`: all of them (0), none
    (-1, --quiet), and --verbose's `debug: ...` details too (1)."""
    import logging

    from testbed.notes import LOGGER

    class NoteHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            from rich.markup import escape

            text = " ".join(record.getMessage().splitlines()[0].split()) if record.getMessage() else ""
            tag = "[yellow]note:[/yellow]" if record.levelno >= logging.WARNING else "[dim]debug:[/dim]"
            console().print(f"{tag} {escape(text)}", soft_wrap=True, highlight=False)

    log = logging.getLogger(LOGGER)
    for h in [h for h in log.handlers if type(h).__name__ == "NoteHandler"]:
        log.removeHandler(h)
    log.addHandler(NoteHandler())
    log.propagate = False
    log.setLevel(logging.ERROR if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.WARNING)
