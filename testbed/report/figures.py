"""A paper's figure as the comparison measures it (`PaperFigure`), its role, and the figures a run
holds the policies for but cannot measure (`Unmeasurable`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

Role = Literal["fitted", "held-out"]


@dataclass(frozen=True)
class PaperFigure:
    """One figure of seed 000 and how to measure it on per-query result rows.

    `paper` is (value, value) for a point figure, (lo, hi) for a range the paper gives; `role` says
    whether the shipped profile was fitted to it ("fitted") or it is a prediction ("held-out").
    `measure` takes the rows of every policy, with `duration_s` (media duration) and, for
    DeviceNative rows, `decode_s` (its decode time) when `columns` names them."""

    benchmark: str
    label: str
    source: str
    paper: tuple[float, float]
    role: Role
    measure: Callable[[pd.DataFrame], float]
    policies: tuple[str, ...]
    columns: tuple[str, ...] = ()
    generator_input: bool = False
    """Fitted only as an input of the synthetic generator: on a recorded or real workload it is held out."""

    @property
    def is_range(self) -> bool:
        return self.paper[0] != self.paper[1]

    def paper_text(self) -> str:
        lo, hi = self.paper
        if not self.is_range:
            return format(lo, "g")
        if math.isinf(hi):
            return f">= {lo:g}"
        return f"< {hi:g}" if lo == 0 else f"{lo:g}-{hi:g}"

    def error(self, sim: float) -> float:
        """Signed relative error: (sim - paper) / paper for a point; 0 inside a range, else relative to
        the nearer end."""
        lo, hi = self.paper
        if sim < lo:
            return (sim - lo) / abs(lo)
        if sim > hi:
            return (sim - hi) / hi
        return 0.0


class Unmeasurable(ValueError):
    """A figure the rows hold the policies for but cannot measure (the reason is the message):
    the comparison leaves its row out and says why in a note."""
