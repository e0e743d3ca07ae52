"""How every plot draws a policy: one colour, marker and line style per policy name, the same in
every figure, run and scenario, and never shared by two policies in one figure.

A fixed table gives each registry policy its style; within each family of policies that run
together (the video policies of seeds 000 and 002, the stream policies of seed 001, the crop
policies of seed 003) no two share a colour or a marker. A figure that mixes families, or names a
policy the table lacks, gives a clashing policy the first colour and marker no other policy in that
figure has (in a fixed order: no hashing), so its styles are still distinct. Pure data: no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#000000", "#1a237e", "#00695c", "#b8860b", "#ad1457", "#7cb342", "#8b0000", "#5c6bc0",
           "#c49a6c", "#fa8072")
"""Twenty colours: matplotlib's tab10, then ten more that tell apart from them (black, navy, dark
teal, dark goldenrod, crimson, lime, dark red, indigo, tan, salmon)."""
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "p", "h", "d", "8", "H", "1", "2", "3", "4", "+")
"""Twenty marker shapes, filled ones first."""
LINESTYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class Style:
    """A policy's look: colour (hex), marker and line style."""

    color: str
    marker: str
    linestyle: str

    def line(self) -> dict[str, Any]:
        """Keyword arguments for Axes.plot."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}

    def point(self) -> dict[str, Any]:
        """Keyword arguments for Axes.scatter (points have no line style)."""
        return {"color": self.color, "marker": self.marker}


def _family(rows: Iterable[tuple[str, int, str, str]]) -> dict[str, Style]:
    return {name: Style(PALETTE[colour], marker, linestyle) for name, colour, marker, linestyle in rows}


_VIDEO = _family([
    ("device-native", 0, "o", "-"), ("edge-hosted", 1, "s", "-"), ("collaborative", 2, "^", "-"),
    ("quickgrasp", 3, "*", "-"), ("nosharing", 4, "v", "--"), ("uncalibrated", 5, "D", "--"),
    ("oracle", 10, "P", ":"), ("input-aware", 9, "X", "-"), ("quickgrasp-eps", 19, "p", "-."),
    ("quickgrasp-linucb", 18, "h", "-."),
    ("quickgrasp-fixed2", 6, "<", "-."), ("quickgrasp-fixed4", 7, ">", "-."), ("quickgrasp-fixed8", 8, "d", "-."),
    ("quickgrasp-fixed16", 11, "8", "-."), ("quickgrasp-fixed32", 12, "H", "-."),
    ("uncalibrated-fixed2", 13, "1", ":"), ("uncalibrated-fixed4", 14, "2", ":"), ("uncalibrated-fixed8", 15, "3", ":"),
    ("uncalibrated-fixed16", 16, "4", ":"), ("uncalibrated-fixed32", 17, "+", ":"),
])
_STREAM = _family([
    ("svlm-only", 0, "o", "-"), ("lvlm-only", 1, "s", "-"), ("distributed-vlm", 2, "^", "-"),
    ("edgevlm", 3, "*", "-"), ("laecips-like", 4, "v", "-"), ("adas-like", 5, "D", "-"),
    ("edgevlm-ablation-parallel", 9, "P", "-."), ("edgevlm-ablation-crm", 12, "X", "-."),
    ("edgevlm-ablation-crm-ggvr", 15, "p", "-."), ("edgevlm-ablation-crm-ggvr-grvr", 7, "h", "-."),
    ("edgevlm-lcr20", 14, "1", "--"), ("edgevlm-lcr35", 16, "2", "--"), ("edgevlm-lcr50", 19, "3", "--"),
    ("edgevlm-lcr100", 10, "4", "--"),
    ("laecips-like-lcr20", 17, "<", "--"), ("laecips-like-lcr35", 11, ">", "--"), ("laecips-like-lcr50", 6, "d", "--"),
    ("adas-like-lcr20", 13, "8", ":"), ("adas-like-lcr35", 18, "H", ":"), ("adas-like-lcr50", 8, "+", ":"),
])
_CROP = _family([
    ("global-only", 7, "o", "--"), ("full-res", 1, "s", "-"), ("random-crop", 2, "^", ":"),
    ("entropy-crop", 3, "*", "-"),
])
FIXED: dict[str, Style] = {**_VIDEO, **_STREAM, **_CROP}
"""Every registry policy's own style (tests/test_plots.py checks that the registry has no other name)."""

BREAKDOWN_COLOURS = {"t_local_s": "#1f77b4", "t_local_queue_s": "#aec7e8", "t_uplink_s": "#ff7f0e",
                     "t_edge_queue_s": "#98df8a", "t_edge_s": "#2ca02c", "t_downlink_s": "#d62728"}
"""The delay-breakdown parts' colours, the same in every run: device work blue, links orange and red,
edge work green (queues the light shade of their node's colour)."""


def styles_for(names: Iterable[str]) -> dict[str, Style]:
    """A style for each of `names` (one figure's policies), no two sharing a colour or a marker
    while the palette lasts (past 20 policies: no two sharing both). Each keeps its fixed style
    unless a policy before it in the registry's order took that colour or marker; those and the
    names the table lacks (in sorted order, after the known ones) take the first colour and the
    first marker still free, and keep their line style ("-" if unknown). Independent of the order
    `names` come in."""
    unique = list(dict.fromkeys(names))
    order = list(FIXED)
    known = sorted((n for n in unique if n in FIXED), key=order.index)
    unknown = sorted(n for n in unique if n not in FIXED)
    out: dict[str, Style] = {}
    colours: set[str] = set()
    markers: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for name in known + unknown:
        want = FIXED.get(name)
        if want is None or want.color in colours or want.marker in markers:
            free_c = [c for c in PALETTE if c not in colours]
            free_m = [m for m in MARKERS if m not in markers]
            if free_c and free_m:
                want = Style(free_c[0], free_m[0], want.linestyle if want else "-")
            else:  # more policies than colours or markers: a (colour, marker) pair no other has
                k = len(pairs)
                while (PALETTE[k % len(PALETTE)], MARKERS[(k // len(PALETTE)) % len(MARKERS)]) in pairs:
                    k += 1
                want = Style(PALETTE[k % len(PALETTE)], MARKERS[(k // len(PALETTE)) % len(MARKERS)],
                             LINESTYLES[(k // len(PALETTE)) % len(LINESTYLES)])
        out[name] = want
        colours.add(want.color)
        markers.add(want.marker)
        pairs.add((want.color, want.marker))
    return out
