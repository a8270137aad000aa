"""Figures of one line per configuration: styles that stay apart, labels wrapped to fit, a legend
placed by its size (inside the axes, at the right or below), and count axes."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINESTYLES = ("-", "--", ":", "-.")
# A legend with more entries than this, or longer labels, goes outside the axes.
_INSIDE_LEGEND_ENTRIES = 4
_INSIDE_LEGEND_CHARS = 32


def _wrap(label: str, width: int) -> str:
    """`label` on lines of at most `width` characters, broken at spaces (a longer word is cut)."""
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def _styles(count: int) -> list[dict[str, Any]]:
    """Line styles for `count` lines that stay apart: matplotlib's ten colours (tab10), then the
    same colours again with another marker and dash pattern."""
    colours = list(matplotlib.colormaps["tab10"].colors)[: min(count, 10)]
    return [
        {
            "color": colours[i % len(colours)],
            "marker": _MARKERS[(i // len(colours)) % len(_MARKERS)],
            "linestyle": _LINESTYLES[(i // len(colours)) % len(_LINESTYLES)],
        }
        for i in range(count)
    ]


def _count_axis(ax, highest: float, steps: Sequence[float] | None = None) -> None:
    """An x axis of counts from 1 to `highest`: whole-number ticks (each one up to 12, where
    MaxNLocator would tick one point alone at fractions) and room on both sides."""
    pad = max(0.5, 0.04 * (highest - 1))
    ax.set_xlim(1 - pad, highest + pad)
    if highest <= 12:
        ax.set_xticks(np.arange(1, int(highest) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=steps))


def _legend_outside(labels: Sequence[str]) -> bool:
    return (
        len(labels) > _INSIDE_LEGEND_ENTRIES
        or max(len(label) for label in labels) > _INSIDE_LEGEND_CHARS
    )


def _lines_figure(labels: Sequence[str], width: float, height: float) -> tuple[Figure, Any, int]:
    """A one-axes figure for one line per label, sized for `_line_legend`, and the width to wrap
    the labels to."""
    if not _legend_outside(labels):  # short labels: room for a suffix such as " (n=16)"
        fig = Figure(figsize=(width, height), layout="constrained")
        return fig, fig.add_subplot(), _INSIDE_LEGEND_CHARS + 8
    if len(labels) <= 6:  # a column at the right
        fig = Figure(figsize=(width + 3.0, height), layout="constrained")
        return fig, fig.add_subplot(), 30
    wrap = 42  # three columns below, each entry's lines 0.15 inch apart
    rows = math.ceil(len(labels) / 3)
    lines = max(_wrap(label, wrap).count("\n") + 1 for label in labels)
    fig = Figure(figsize=(width + 3.0, height + 0.4 + 0.16 * rows * lines), layout="constrained")
    return fig, fig.add_subplot(), wrap


def _line_legend(ax, labels: Sequence[str]) -> None:
    """The legend of one line per label: inside the axes when it is small, else at the right or,
    for many lines, below."""
    if not _legend_outside(labels):
        ax.legend(fontsize=9)
    elif len(labels) <= 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    else:
        ax.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=3, fontsize=8, borderaxespad=0
        )
