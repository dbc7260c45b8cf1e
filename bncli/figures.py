"""The pictures of :mod:`bncli.pictures` drawn with matplotlib, for ``-o NAME.png`` and ``-o NAME.pdf``.

matplotlib is an optional extra (``pip install matplotlib``, or ``pip install '.[plot]'`` in
bncli's clone), imported only by :func:`require_matplotlib` (which the output's validation asks
first) and :func:`draw`. The figure is made directly, without pyplot: no global state, no GUI
backend. The colours are the terminal pictures' own (:data:`bncli.pictures` palettes), so a
file and a terminal read the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO

import numpy as np

from . import canvas, pictures
from .errors import InputError, printable
from .options import FIGURE_FORMATS as FORMATS

_WIDTH_INCHES = 7.5
_DPI = 150
# Show each row or column name on its axis only up to this many; beyond, indices.
_MAX_NAMED_TICKS = 24


def save_figure(items: Sequence[pictures.Picture], stream: BinaryIO, format: str = "png") -> None:
    """Draw pictures one under the other in one figure and write it to ``stream``.

    Parameters
    ----------
    items : sequence of Heatmap, ErrorMap, SweepPlot or AuditGrid
        The same objects the terminal shows.
    stream : binary file
        Written once, at the end.
    format : {"png", "pdf"}

    Raises
    ------
    InputError
        matplotlib is not installed (exit 2 with what to install).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown picture format {format!r}; expected one of {', '.join(FORMATS)}")
    require_matplotlib(format)
    draw(items).savefig(stream, format=format, dpi=_DPI)


def require_matplotlib(format: str) -> None:
    """Raise the InputError that names the extra to install, unless matplotlib can be imported.

    Asked before any work is done (by the output's validation), and again where the figure is made.
    """
    try:
        import matplotlib.figure  # noqa: F401 (the import is the test)
    except ImportError:
        raise InputError(
            f"writing a {format.upper()} picture needs matplotlib: pip install matplotlib "
            "(or pip install '.[plot]' in bncli's clone)"
        ) from None


def draw(items: Sequence[pictures.Picture]):
    """The matplotlib Figure of ``items``, one under the other.

    Every text that comes from data or targets (titles, names on the axes) is drawn literally:
    mathtext would typeset ``$x^2$`` as math and fail on ``$$``.
    """
    from matplotlib.figure import Figure

    if not items:
        raise ValueError("no picture to draw")
    heights = [_height(item) for item in items]
    figure = Figure(figsize=(_WIDTH_INCHES, sum(heights)), layout="constrained")
    axes = figure.subplots(len(items), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, item in zip(axes, items, strict=True):
        _DRAW[type(item)](figure, ax, item)
    return figure


def _height(item) -> float:
    """Inches of figure height for one picture."""
    if isinstance(item, pictures.AuditGrid):
        return 1.6 + 0.3 * len(item.case_labels)
    if isinstance(item, pictures.SweepPlot):
        return 3.6
    return 5.0


def _colormap(name: str, palette: np.ndarray, at: np.ndarray):
    """The terminal pictures' palette as a matplotlib colormap over [at[0], at[-1]]."""
    from matplotlib.colors import LinearSegmentedColormap

    positions = (at - at[0]) / (at[-1] - at[0])
    return LinearSegmentedColormap.from_list(name, list(zip(positions, palette / 255, strict=True)))


def _ratio_image(figure, ax, log_ratio: np.ndarray, quantity: str, limit: str):
    """log10 error/bound as an image on the pictures' scale, with a colour bar marking the bound."""
    from matplotlib.colors import Normalize

    low, high = canvas.LOG_RATIO_RANGE
    cmap = _colormap("bncli_ratio", canvas.RATIO_COLORS, canvas.RATIO_AT).with_extremes(
        bad=np.array(canvas.NO_VALUE) / 255
    )
    image = ax.imshow(log_ratio, cmap=cmap, norm=Normalize(low, high), interpolation="nearest", aspect="auto")
    bar = figure.colorbar(image, ax=ax, label=quantity, shrink=0.9)
    labels = [f"1 = {limit}" if e == 0 else canvas.power_label(e) for e in range(low, high + 1)]
    bar.set_ticks(range(low, high + 1), labels=labels)
    bar.ax.axhline(0, color="black", linewidth=2)
    return image


def _ticks(ax, axis: str, count: int, labels: Sequence[str] | None) -> None:
    """Integer index ticks; the given labels instead when they are few enough to read."""
    from matplotlib.ticker import MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    if labels is not None and count <= _MAX_NAMED_TICKS:
        target.set_ticks(range(count), labels=[printable(str(label)) for label in labels], parse_math=False)
    else:
        target.set_major_locator(MaxNLocator(integer=True))


def _draw_heatmap(figure, ax, item: pictures.Heatmap) -> None:
    peak = float(np.abs(item.matrix).max()) or 1.0
    cmap = _colormap("bncli_diverging", canvas.DIVERGING_COLORS, canvas.DIVERGING_AT)
    image = ax.imshow(item.matrix, cmap=cmap, vmin=-peak, vmax=peak, interpolation="nearest")
    figure.colorbar(image, ax=ax, shrink=0.9, label="value (white = 0)")
    rows, cols = item.matrix.shape
    _ticks(ax, "y", rows, item.row_labels)
    _ticks(ax, "x", cols, item.col_labels)
    # Indices on both edges of a large matrix; and the label under it keeps its bottom frame off the edge.
    ax.tick_params(axis="x", top=True, labeltop=True, bottom=True, labelbottom=True)
    if item.axis_names:
        row_name, col_name = (printable(name) for name in item.axis_names)
        ax.set_ylabel(row_name, parse_math=False)
        ax.set_xlabel(col_name, parse_math=False)
    ax.set_title(printable(item.title), loc="left", parse_math=False)


def _draw_error_map(figure, ax, item: pictures.ErrorMap) -> None:
    _ratio_image(figure, ax, canvas.log_ratio(item.ratio), "error / bound", "bound")
    rows, cols = np.nonzero(item.failed)
    k, n = item.ratio.shape
    size = max(4.0, min(60.0, 3000.0 / max(k, n)))  # a mark about the size of a cell
    ax.scatter(cols, rows, marker="x", s=size, color="black", linewidths=1, label=f"beyond the bound ({rows.size})")
    worst_row, worst_col = item.worst
    ax.scatter(
        [worst_col], [worst_row], marker="D", s=max(40.0, 2 * size), facecolor="white", edgecolor="black", label="worst"
    )
    _ticks(ax, "y", k, item.row_labels)
    _ticks(ax, "x", n, item.col_labels)
    ax.xaxis.tick_top()
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.02), ncols=2, fontsize=8, frameon=False)
    ax.set_title(printable(item.title), loc="left", parse_math=False)


def _draw_sweep(figure, ax, item: pictures.SweepPlot) -> None:
    measured = item.errors > 0
    ax.loglog(item.steps[measured], item.errors[measured], "o-", color="tab:blue", label="max relative error")
    ax.axhline(item.bound, color="tab:red", linestyle="--", label=f"bound {item.bound:.3g}")
    default = item.is_default() & measured
    ax.axvline(item.default_step, color="goldenrod", linestyle=":")
    ax.loglog(
        item.steps[default],
        item.errors[default],
        "D",
        color="goldenrod",
        markersize=8,
        label=f"default step {item.default_step:.3g}",
    )
    ax.set_xlabel("step / σ")
    ax.set_ylabel("max relative error")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(printable(item.title), loc="left", parse_math=False)


def _draw_audit(figure, ax, item: pictures.AuditGrid) -> None:
    image = _ratio_image(figure, ax, canvas.log_ratio(item.ratios), "error / budget", "budget")
    for (row, col), letter in np.ndenumerate(item.letters):
        value = image.norm(np.nan_to_num(canvas.log_ratio(item.ratios[row, col]), nan=0.0))
        light = sum(image.cmap(value)[:3] * np.array([0.2126, 0.7152, 0.0722])) > 0.55
        ax.text(col, row, letter, ha="center", va="center", fontweight="bold", color="black" if light else "white")
    _ticks(ax, "y", len(item.case_labels), item.case_labels)
    _ticks(ax, "x", len(item.quantity_names), item.quantity_names)
    ax.xaxis.tick_top()
    used = [f"{letter} {name}" for letter, name in canvas.VERDICT_NAMES.items() if letter in item.letters]
    ax.set_xlabel("   ".join(used))
    ax.set_title(printable(item.title), loc="left", parse_math=False)


_DRAW: dict[type, Callable] = {
    pictures.Heatmap: _draw_heatmap,
    pictures.ErrorMap: _draw_error_map,
    pictures.SweepPlot: _draw_sweep,
    pictures.AuditGrid: _draw_audit,
}
