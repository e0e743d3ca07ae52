"""Command-line input, validated where it enters: typed flag values with their bounds, input and
output paths checked before any work starts, and one line for every mistake.

Each value type is a small callable that argparse applies; it carries what it accepts (`kind`,
`lo`, `hi`, ...) so the tests can generate values it must refuse (tests/test_cli_fuzz.py); shared by
the `testbed` command and the edge server.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `testbed: error: <command>: <what>` on stderr (the form of
every other error), exit code 2."""

    def error(self, message: str) -> NoReturn:
        from testbed.errors import did_you_mean

        tool, _, command = self.prog.partition(" ")
        m = _INVALID_CHOICE.match(message)
        if m:  # a misspelt command or choice: name the closest
            message += did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
        self.exit(2, f"{tool}: error: {command + ': ' if command else ''}{message}\n")


_INVALID_CHOICE = re.compile(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)$")


class Check:
    """An argparse `type=`: converts a string or raises ArgumentTypeError with what is allowed."""

    kind = "text"

    def __call__(self, text: str) -> Any:  # pragma: no cover - overridden
        return text


class Integer(Check):
    kind = "int"

    def __init__(self, lo: int | None = None, hi: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.__name__ = "integer"

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {value}")
        return value

    def describe(self) -> str:
        parts = ([f">= {self.lo}"] if self.lo is not None else []) + ([f"<= {self.hi}"] if self.hi is not None else [])
        return " and ".join(parts) or "an integer"


class Number(Check):
    kind = "float"

    def __init__(self, ge: float | None = None, gt: float | None = None, le: float | None = None) -> None:
        self.ge, self.gt, self.le = ge, gt, le
        self.__name__ = "number"

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt) \
                or (self.le is not None and value > self.le):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {value:g}")
        return value

    def describe(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le)) if b is not None]
        return " and ".join(parts) or "a number"


class InputFile(Check):
    """An existing, readable regular file."""

    kind = "input_file"

    def __init__(self) -> None:
        self.__name__ = "file"

    def __call__(self, text: str) -> str:
        p = Path(text)
        if p.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: is a folder, not a file")
        if not p.is_file():
            raise argparse.ArgumentTypeError(f"{text}: no such file")
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text}: cannot be read")
        return text


class InputDir(Check):
    kind = "input_dir"

    def __init__(self) -> None:
        self.__name__ = "folder"

    def __call__(self, text: str) -> str:
        if not Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"{text}: no such folder")
        return text


class Output(Check):
    """A file or folder this command may create: its nearest existing ancestor must be a writable
    folder (nothing is created here); an existing output file is overwritten, a folder is not."""

    kind = "output"

    def __init__(self, folder: bool = False) -> None:
        self.folder = folder
        self.__name__ = "folder" if folder else "file"

    def __call__(self, text: str) -> str:
        p = Path(text)
        if not text:
            raise argparse.ArgumentTypeError("an empty path")
        if p.exists() and (p.is_dir() != self.folder):
            raise argparse.ArgumentTypeError(f"{text}: exists and is a {'file' if self.folder else 'folder'}")
        parent = p if self.folder else p.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: cannot write in {parent}")
        return text


SEED = Integer(0)
"""A seed: an integer >= 0, as every scenario seed."""
COUNT = Integer(1)
INPUT_FILE = InputFile()
INPUT_DIR = InputDir()
OUTPUT_FILE = Output()
OUTPUT_DIR = Output(folder=True)
