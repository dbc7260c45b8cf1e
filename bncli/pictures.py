"""Pictures in the terminal: Jacobian heatmaps, error maps, step sweeps and audit grids.

Each picture is a Rich renderable built from plain numpy arrays: print it on a
console, or record the console and export SVG or HTML. It lays itself out in
the width it is given (``options.max_width``) and adapts to the console's
colours:

- 256 colours or more: cells are blocks of background colour;
- 16 colours: cells are shading characters ``·░▒▓█`` coloured by sign (or by within/beyond the bound);
- no colour (``NO_COLOR``, ``TERM=dumb``, not a terminal): the same shading
  characters, with sign marks where the sign matters, so every picture still reads.

Matrices too large for the width (or taller than :data:`MAX_ROWS` lines) are
shown in blocks, and the caption says so. Marks (``×`` beyond the bound,
``◆`` the worst element, verdict letters) are characters, never only colours.

Rich only: a terminal plotting library was measured and lost (plotext 6.1: 72 ms
import on top of numpy and Rich, unreadable log-axis labels, ANSI strings
instead of renderables). This module is imported only when a picture is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.text import Text

from .render import literal

# A picture is never taller than this many lines of cells; larger matrices are shown in blocks.
MAX_ROWS = 40
# Error over bound (or budget) spans this range of powers of ten on the colour scale; beyond, it is clipped.
LOG_RATIO_RANGE = (-6, 3)
SHADES = "·░▒▓█"
FAIL_MARK = "×"
WORST_MARK = "◆"
DEFAULT_MARK = "◆"
POINT_MARK = "•"
VERDICT_NAMES = {"P": "pass", "I": "inaccurate", "W": "wrong", "M": "missing", "E": "error"}

# ColorBrewer RdBu, from blue (most negative) through near-white (0) to red (most positive).
DIVERGING_COLORS = np.array(
    [
        (5, 48, 97),
        (33, 102, 172),
        (67, 147, 195),
        (146, 197, 222),
        (209, 229, 240),
        (247, 247, 247),
        (253, 219, 199),
        (244, 165, 130),
        (214, 96, 77),
        (178, 24, 43),
        (103, 0, 31),
    ],
    dtype=float,
)
DIVERGING_AT = np.linspace(-1, 1, len(DIVERGING_COLORS))
# Error over bound on a log scale (ColorBrewer RdYlBu): blue far below the bound, pale yellow
# at it, then a jump to orange and red beyond it, so that the bound is a visible edge.
RATIO_COLORS = np.array(
    [(49, 54, 149), (69, 117, 180), (171, 217, 233), (254, 224, 144), (253, 174, 97), (215, 48, 39), (120, 0, 30)],
    dtype=float,
)
RATIO_AT = np.array([-6, -3, -1, 0, 1e-9, 1.5, 3])
NO_VALUE = (110, 110, 110)  # a cell without a measured error (audit: missing, error)
# With 16 colours pale tints all become white: colour says only negative/within, zero, positive/beyond.
_SIXTEEN = np.array([(33, 102, 172), (160, 160, 160), (178, 24, 43)], dtype=np.uint8)
# Marks on coloured cells, as RGB so that no terminal theme turns "black" into a grey.
_BLACK, _WHITE = Color.from_rgb(0, 0, 0), Color.from_rgb(255, 255, 255)
_BOUND_STYLE = "red"
_CURVE_STYLE = "bold cyan"
_DEFAULT_STYLE = "bold yellow"


# ----------------------------------------------------------------------------- colours


def _color_mode(console: Console) -> str:
    """'rgb' (256 colours or more), '16' or 'none': how cells are drawn on this console."""
    if console.no_color or console.color_system is None:
        return "none"
    return "16" if console.color_system == "standard" else "rgb"


def _interpolate(palette: np.ndarray, at: np.ndarray, t: np.ndarray) -> np.ndarray:
    """RGB colours (..., 3) of ``t`` on a palette whose colours sit at the increasing positions ``at``."""
    t = np.clip(np.asarray(t, dtype=float), at[0], at[-1])
    return np.stack([np.interp(t, at, palette[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)


def log_ratio(ratio: np.ndarray) -> np.ndarray:
    """log10 of error over bound, 0 and below mapped to the bottom of the scale, NaN kept."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.log10(ratio), *LOG_RATIO_RANGE)


def _ratio_colors(ratio: np.ndarray, mode: str) -> np.ndarray:
    """RGB per error ratio; with 16 colours, where shades carry the size, only within (blue) or beyond (red)."""
    if mode == "16":
        colors = _SIXTEEN[np.where(ratio > 1, 2, 0)]
    else:
        colors = _interpolate(RATIO_COLORS, RATIO_AT, np.nan_to_num(log_ratio(ratio), nan=0.0))
    colors[np.isnan(ratio)] = NO_VALUE
    return colors


def _diverging_colors(t: np.ndarray, mode: str) -> np.ndarray:
    """RGB per value t in [−1, 1]; with 16 colours, where shades carry the size, only the sign."""
    if mode == "16":
        return _SIXTEEN[np.sign(t).astype(int) + 1]
    return _interpolate(DIVERGING_COLORS, DIVERGING_AT, t)


def _ratio_shades(ratio: np.ndarray) -> np.ndarray:
    """A shading character per error ratio: · < 1e-6 ≤ ░ < 1e-4 ≤ ▒ < 1e-2 ≤ ▓ < 1 (the bound) < █."""
    level = np.searchsorted(np.array([1e-6, 1e-4, 1e-2]), ratio, side="right")
    level[ratio > 1] = 4
    shades = np.array(list(SHADES))[level]
    shades[np.isnan(ratio)] = " "
    return shades


class _Styles:
    """One Rich style per cell colour (cached), drawn as background or foreground by mode."""

    def __init__(self, mode: str):
        self.mode = mode
        self._cache: dict[tuple[int, int, int], Style] = {}

    def __call__(self, rgb) -> Style:
        key = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
        style = self._cache.get(key)
        if style is None:
            color = Color.from_rgb(*key)
            if self.mode == "rgb":
                # Marks are black on light cells and white on dark ones (relative luminance).
                light = 0.2126 * key[0] + 0.7152 * key[1] + 0.0722 * key[2] > 140
                style = Style(bgcolor=color, color=_BLACK if light else _WHITE, bold=True)
            elif self.mode == "16":
                style = Style(color=color)
            else:
                style = Style()
            self._cache[key] = style
        return style


# ----------------------------------------------------------------------------- layout


def _blocks(a: np.ndarray, rows: int, cols: int, fill) -> np.ndarray:
    """``a`` cut into blocks of ``rows`` × ``cols`` (the last ones padded with ``fill``): (R, C, rows·cols)."""
    k, n = a.shape
    big_rows, big_cols = -(-k // rows), -(-n // cols)
    padded = np.full((big_rows * rows, big_cols * cols), fill, dtype=a.dtype)
    padded[:k, :n] = a
    return padded.reshape(big_rows, rows, big_cols, cols).swapaxes(1, 2).reshape(big_rows, big_cols, rows * cols)


def _signed_block_peaks(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Each block's element of largest magnitude, with its sign."""
    blocks = _blocks(a, rows, cols, 0.0)
    return np.take_along_axis(blocks, np.abs(blocks).argmax(axis=-1)[..., None], axis=-1)[..., 0]


def _labels(given: Sequence[str] | None, starts: range) -> list[str]:
    """The label of each shown row or column: the given one (or the index) of its first element."""
    return [str(i) if given is None else str(given[i]) for i in starts]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _index_ruler(labels: Sequence[str], cell: int, indent: int) -> Text:
    """Column labels above cells ``cell`` wide: every 1st, 5th, 10th, … so that none touch."""
    widest = max(len(label) for label in labels)
    stride = next(s for s in (1, 5, 10, 50, 100, 500, 1000) if s * cell >= widest + 1 or s >= len(labels))
    line = [" "] * (indent + len(labels) * cell + widest)
    for position in range(0, len(labels), stride):
        start = indent + position * cell
        line[start : start + len(labels[position])] = labels[position]
    ruler = literal("".join(line).rstrip(), style="dim")  # labels may be data: shown literally
    ruler.no_wrap, ruler.overflow = True, "crop"
    return ruler


def _name_header(names: Sequence[str], cell: int, indent: int) -> Text:
    """Column names centred over cells ``cell`` wide (cut with … when longer)."""
    header = Text(" " * indent, style="dim", no_wrap=True, overflow="crop")
    for name in names:
        header.append_text(literal(_fit(name, cell - 1).center(cell), style="bold"))
    return header


def _grid(
    cells: np.ndarray, colors: np.ndarray, styles: _Styles, row_labels: Sequence[str], names: bool = False
) -> list[Text]:
    """One line per row: its label (indices right-aligned, ``names`` left-aligned), then the coloured cells."""
    label_width = max(len(label) for label in row_labels)
    lines = []
    for label, texts, rgbs in zip(row_labels, cells, colors, strict=True):
        line = literal((label.ljust if names else label.rjust)(label_width) + " ", style="dim")
        for text, rgb in zip(texts, rgbs, strict=True):
            line.append(text, styles(rgb))
        line.no_wrap, line.overflow = True, "crop"
        lines.append(line)
    return lines


def _mark_cells(shades: np.ndarray, marks: np.ndarray, width: int) -> np.ndarray:
    """Cells ``width`` wide: the shade repeated, with a mark (where not blank) in the middle."""
    middle = width // 2
    left = np.char.multiply(shades, middle)
    right = np.char.multiply(shades, width - middle - 1)
    centre = np.where(marks == " ", shades, marks)
    return np.char.add(np.char.add(left, centre), right)


def _caption(text: str) -> Text:
    return Text(text, style="dim italic")


class Picture:
    """A renderable whose lines are laid out for the width it is given."""

    def _lines(self, console: Console, width: int) -> list[Text]:
        raise NotImplementedError

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self._lines(console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max(line.cell_len for line in self._lines(console, options.max_width))
        return Measurement(min(widest, options.max_width), min(widest, options.max_width))


def _title(title: str) -> Text:
    return literal(title, style="bold")


# ------------------------------------------------------------------------------ legends


def _ratio_legend(mode: str, styles: _Styles, quantity: str, limit: str) -> list[Text]:
    """The log colour scale of error over bound, 1e-6 … 1e3, with the bound (1) marked ┃."""
    low, high = LOG_RATIO_RANGE
    exponents = np.arange(low, high + 0.25, 0.5)  # a cell (2 characters) per half decade
    ratios = 10.0**exponents
    cells = _mark_cells(_ratio_shades(ratios), np.full(len(ratios), " "), 2) if mode != "rgb" else ["  "] * len(ratios)
    indent = len(quantity) + 1
    bar = Text(quantity + " ", style="dim", no_wrap=True, overflow="crop")
    for exponent, text, rgb in zip(exponents, cells, _ratio_colors(ratios, mode), strict=True):
        bar.append(text, styles(rgb))
        if exponent == 0:  # the cell of 1 still passes; the bound is its right edge
            bar.append("┃", _BOUND_STYLE)
    ticks = [" "] * (indent + 2 * len(ratios) + 1)
    for exponent in range(low, high + 1, 3):
        at = indent + 4 * (exponent - low)  # two cells of two characters per decade
        if exponent >= 0:  # right of the ┃; "1" under it
            at += 2 if exponent == 0 else 1
        label = power_label(exponent)
        ticks[at : at + len(label)] = label
    line = Text("".join(ticks), style="dim", no_wrap=True, overflow="crop")
    line.append(f"  ┃ the {limit}", _BOUND_STYLE)
    lines = [bar, line]
    if mode != "rgb":
        lines.append(Text(f"shades: · < 1e-6 ≤ ░ < 1e-4 ≤ ▒ < 1e-2 ≤ ▓ ≤ 1 < █  ({quantity})"))
    return lines


def power_label(exponent: int) -> str:
    return "1" if exponent == 0 else f"1e{exponent}"


# -------------------------------------------------------------------------------- heatmap


class Heatmap(Picture):
    """A matrix (a Jacobian) in diverging colours symmetric around 0, with its scale.

    Parameters
    ----------
    matrix : array_like, shape (k, m)
        Real values; colour is ``value / max|value|``: blue below 0, white at 0, red above.
    title : str
    row_labels, col_labels : sequence of str, optional
        Default: the 0-based indices.

    Notes
    -----
    Each element is a cell two characters wide and one line high (about square),
    or one character wide in colour when two do not fit. When the matrix is still
    too wide, or taller than :data:`MAX_ROWS`, it is shown in square blocks of
    b × b elements, each cell being the element of largest magnitude in its block,
    with its sign (the caption says so): the diagonal and the signs of a Jacobian
    stay visible. Without colour each cell is a sign (+ or −) and a shade of
    ``|value| / max``.
    """

    def __init__(self, matrix, title: str, row_labels: Sequence[str] | None = None, col_labels=None):
        self.matrix = np.asarray(matrix, dtype=float)
        if self.matrix.ndim != 2 or 0 in self.matrix.shape:
            raise ValueError(f"a heatmap needs a non-empty 2-D matrix, got shape {self.matrix.shape}")
        self.title = title
        self.row_labels = row_labels
        self.col_labels = col_labels

    def layout(self, width: int, colour: bool = True) -> tuple[int, int]:
        """(b, cell): blocks of b × b elements (b = 1: every element) in cells this many characters wide.

        Two characters (about square) when every column fits; in colour one character
        will do (without colour a cell needs two: sign and shade); else blocks.
        """
        rows, cols = self.matrix.shape
        room = width - max(len(label) for label in _labels(self.row_labels, range(rows))) - 1
        if rows <= MAX_ROWS:
            for cell in (2, 1) if colour else (2,):
                if cols * cell <= room:
                    return 1, cell
        return max(-(-rows // MAX_ROWS), -(-cols // max(1, room // 2))), 2

    def _lines(self, console: Console, width: int) -> list[Text]:
        mode = _color_mode(console)
        styles = _Styles(mode)
        rows, cols = self.matrix.shape
        b, cell = self.layout(width, mode != "none")
        values = self.matrix if b == 1 else _signed_block_peaks(self.matrix, b, b)
        peak = float(np.abs(self.matrix).max())
        t = values / peak if peak > 0 else np.zeros_like(values)
        row_labels = _labels(self.row_labels, range(0, rows, b))
        indent = max(len(label) for label in row_labels) + 1
        lines = [_title(self.title), _index_ruler(_labels(self.col_labels, range(0, cols, b)), cell, indent)]
        lines += _grid(_signed_cells(t, mode, cell), _diverging_colors(t, mode), styles, row_labels)
        lines += _diverging_legend(mode, styles, peak)
        if b > 1:
            lines.append(
                _caption(
                    f"{rows} × {cols} shown in blocks of {b} × {b}: each cell is the element of largest "
                    "magnitude in its block, with its sign"
                )
            )
        return lines


def _signed_cells(t: np.ndarray, mode: str, cell: int) -> np.ndarray:
    """Cells for values t in [−1, 1]: blank (colour is all), or sign and shade of |t| (the sign only if room)."""
    if mode == "rgb":
        return np.full(t.shape, " " * cell)
    level = np.searchsorted(np.array([0.05, 0.25, 0.5, 0.75]), np.abs(t), side="right")
    shades = np.array(list(SHADES))[level]
    if cell == 1:  # 16 colours, where the colour carries the sign
        return shades
    return np.char.add(np.where(level == 0, " ", np.where(t > 0, "+", "−")), shades)


def _diverging_legend(mode: str, styles: _Styles, peak: float) -> list[Text]:
    """The colour scale from −peak through 0 to +peak (and without colour, what the shades mean)."""
    if mode == "rgb":
        levels = np.linspace(-1, 1, 21)
    else:  # each shade once, each side of 0
        levels = np.array([-1, -0.6, -0.4, -0.1, 0, 0.1, 0.4, 0.6, 1])
    bar = Text("scale ", style="dim", no_wrap=True, overflow="crop")
    for text, rgb in zip(_signed_cells(levels, mode, 2), _diverging_colors(levels, mode), strict=True):
        bar.append(text, styles(rgb))
    low, high = f"{-peak:.3g}", f"{peak:.3g}"
    ticks = " " * 6 + low + "0".center(max(3, 2 * len(levels) - len(low) - len(high))) + high  # never glued
    lines = [bar, Text(ticks, style="dim", no_wrap=True, overflow="crop")]
    if mode != "rgb":
        sign = "+/− (red/blue)" if mode == "16" else "+/−"
        lines.append(Text(f"{sign} sign, shade of |value| / {peak:.3g}: ░ ≥ 5%  ▒ ≥ 25%  ▓ ≥ 50%  █ ≥ 75%  · less"))
    return lines


# ------------------------------------------------------------------------------- error map


class ErrorMap(Picture):
    """Every element's error over its bound, on a log colour scale, failures and the worst marked.

    Parameters
    ----------
    ratio : array_like, shape (k, n)
        |checked − numerical| / (natural scale · rtol): above 1 the element fails.
        NaN counts as failing, beyond any bound.
    failed_mask : array_like of bool, shape (k, n), optional
        Default ``ratio > 1``.
    worst : (row, column), optional
        Default: the element of largest ratio.
    row_labels, col_labels : sequence of str, optional
        Default: the indices. Column names are shown above their columns when they fit.
    title : str

    Notes
    -----
    Colours run from 1e-6 to 1e3 times the bound (clipped beyond), with a visible
    edge at 1. Failing elements are marked ``×`` and the worst ``◆``. Inputs with
    more than :data:`MAX_ROWS` rows or more columns than fit are shown in blocks,
    each cell the largest error in its block, marked if any element in it fails.
    """

    def __init__(
        self,
        ratio,
        failed_mask=None,
        worst: tuple[int, int] | None = None,
        row_labels: Sequence[str] | None = None,
        col_labels: Sequence[str] | None = None,
        title: str = "error over the bound",
    ):
        ratio = np.asarray(ratio, dtype=float)
        if ratio.ndim != 2 or 0 in ratio.shape:
            raise ValueError(f"an error map needs a non-empty 2-D array, got shape {ratio.shape}")
        self.ratio = np.where(np.isnan(ratio), np.inf, ratio)
        self.failed = self.ratio > 1 if failed_mask is None else np.asarray(failed_mask, dtype=bool)
        self.worst = np.unravel_index(np.argmax(self.ratio), ratio.shape) if worst is None else worst
        self.worst = (int(self.worst[0]), int(self.worst[1]))
        self.row_labels = row_labels
        self.col_labels = col_labels
        self.title = title

    def layout(self, width: int) -> tuple[int, int, int]:
        """(rows per block, columns per block, cell width) at this width."""
        k, n = self.ratio.shape
        label_width = max(len(label) for label in _labels(self.row_labels, range(k)))
        row_block = -(-k // MAX_ROWS)
        if self.col_labels is not None:
            named = max(2, max(len(str(name)) for name in self.col_labels)) + 2
            if named <= 10 and label_width + 1 + n * named <= width:
                return row_block, 1, named
        fit = max(1, (width - label_width - 1) // 2)
        return row_block, -(-n // fit), 2

    def _lines(self, console: Console, width: int) -> list[Text]:
        mode = _color_mode(console)
        styles = _Styles(mode)
        k, n = self.ratio.shape
        rb, cb, cell = self.layout(width)
        ratio = _blocks(self.ratio, rb, cb, 0.0).max(axis=-1)
        failed = _blocks(self.failed, rb, cb, False).any(axis=-1)
        marks = np.where(failed, FAIL_MARK, " ")
        marks[self.worst[0] // rb, self.worst[1] // cb] = WORST_MARK
        shades = _ratio_shades(ratio) if mode != "rgb" else np.full(ratio.shape, " ")
        row_labels = _labels(self.row_labels, range(0, k, rb))
        indent = max(len(label) for label in row_labels) + 1
        if cb == 1 and self.col_labels is not None and cell > 2:
            header = _name_header([str(name) for name in self.col_labels], cell, indent)
        else:
            header = _index_ruler(_labels(self.col_labels, range(0, n, cb)), cell, indent)
        lines = [_title(self.title), header]
        lines += _grid(_mark_cells(shades, marks, cell), _ratio_colors(ratio, mode), styles, row_labels)
        lines += _ratio_legend(mode, styles, "error / bound", "bound")
        lines.append(self._marks_line())
        if rb > 1 or cb > 1:
            lines.append(
                _caption(
                    f"{k} × {n} shown in blocks of {rb} row{'s' * (rb > 1)} × {cb} column{'s' * (cb > 1)}: "
                    "each cell is the largest error in its block, marked if any element in it fails"
                )
            )
        return lines

    def _marks_line(self) -> Text:
        count, total = int(self.failed.sum()), self.failed.size
        row, col = self.worst
        column = str(col) if self.col_labels is None else str(self.col_labels[col])
        line = Text(no_wrap=False)
        line.append(f"{FAIL_MARK} beyond the bound: {count} of {total}   ")
        line.append(f"{WORST_MARK} worst: row {row}, column ")
        line.append_text(literal(column))
        line.append(f", {self.ratio[row, col]:.3g} × the bound")
        return line


# ---------------------------------------------------------------------------- sweep plot

# Braille dot (column, row) within a character, as bits of U+2800 + code.
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]])


class SweepPlot(Picture):
    """The error of the numerical derivative against its step, on log–log axes in braille.

    Parameters
    ----------
    steps, errors : array_like, shape (p,)
        Each step (relative to σ) and the max relative error measured with it.
        Errors of 0 are drawn at the bottom of the plot.
    bound : float
        The pass bound (rtol), drawn as a horizontal line.
    default_step : float
        Marked ◆ on the curve (when it is one of ``steps``) and ▲ on the step axis.
    title : str

    Notes
    -----
    Central differences err by truncation (≈ h², right of the V) and by
    rounding (≈ ε/h, left of it). Each power of ten takes a whole number of
    characters and lines, so that the tick labels sit exactly on their lines.
    """

    def __init__(self, steps, errors, bound: float, default_step: float, title: str = "error against step"):
        steps, errors = np.asarray(steps, dtype=float), np.asarray(errors, dtype=float)
        if steps.ndim != 1 or steps.size == 0 or steps.shape != errors.shape:
            raise ValueError("a sweep needs as many errors as steps, at least one")
        order = np.argsort(steps)
        self.steps, self.errors = steps[order], errors[order]
        self.bound = float(bound)
        self.default_step = float(default_step)
        self.title = title

    def _ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Powers of ten spanned by the step axis and by the error axis (which includes the bound)."""
        x = np.log10(np.append(self.steps, self.default_step))
        y = np.log10(np.append(self.errors[self.errors > 0], self.bound))
        return _decades(x), _decades(y)

    def _lines(self, console: Console, width: int) -> list[Text]:
        (x_low, x_high), (y_low, y_high) = self._ranges()
        label_width = max(len(power_label(e)) for e in range(y_low, y_high + 1))
        indent = label_width + 2
        # Characters per decade of step (room is left right of the plot for half the last label)
        # and lines per decade of error (about 12 lines in all).
        per_x = max(1, min(8, (width - indent - 3) // (x_high - x_low)))
        per_y = max(1, 12 // (y_high - y_low))
        columns, rows = (x_high - x_low) * per_x + 1, (y_high - y_low) * per_y + 1

        def dot_column(log_step):  # braille dots are 2 wide and 4 high per character
            return np.clip(np.floor((np.asarray(log_step) - x_low) * per_x * 2 + 0.5), 0, 2 * columns - 1).astype(int)

        def dot_row(log_error):  # 0 at the top
            return np.clip(np.floor((y_high - np.asarray(log_error)) * per_y * 4 + 2), 0, 4 * rows - 1).astype(int)

        log_steps = np.log10(self.steps)
        with np.errstate(divide="ignore"):
            log_errors = np.maximum(np.log10(self.errors), y_low)
        # The curve: straight in log–log between measured points, sampled finely enough to leave no gaps.
        xs = np.linspace(log_steps[0], log_steps[-1], 64 * columns)
        dots = np.zeros((4 * rows, 2 * columns), dtype=bool)
        dots[dot_row(np.interp(xs, log_steps, log_errors)), dot_column(xs)] = True
        codes = (dots.reshape(rows, 4, columns, 2) * _BRAILLE_BITS[None, :, None, :]).sum(axis=(1, 3))
        chars = np.where(codes > 0, np.vectorize(chr)(0x2800 + codes), " ").astype(object)
        styles = np.full(chars.shape, _CURVE_STYLE, dtype=object)
        bound_line = int(dot_row(math.log10(self.bound))) // 4
        clear = codes[bound_line] == 0
        chars[bound_line, clear], styles[bound_line, clear] = "─", _BOUND_STYLE
        point_lines, point_columns = dot_row(log_errors) // 4, dot_column(log_steps) // 2
        chars[point_lines, point_columns] = POINT_MARK
        default = self.is_default()
        chars[point_lines[default], point_columns[default]] = DEFAULT_MARK
        styles[point_lines[default], point_columns[default]] = _DEFAULT_STYLE

        ticks = {(y_high - e) * per_y: power_label(e) for e in range(y_low, y_high + 1)}
        lines = [_title(self.title)]
        for r in range(rows):
            line = Text(ticks.get(r, "").rjust(label_width) + (" ┤" if r in ticks else " │"), style="dim")
            for char, style in zip(chars[r], styles[r], strict=True):
                line.append(char, style)
            line.no_wrap, line.overflow = True, "crop"
            lines.append(line)
        default_column = int(dot_column(math.log10(self.default_step))) // 2
        lines += self._step_axis(width, label_width, per_x, x_low, x_high, default_column)
        lines += self._legend()
        return lines

    def is_default(self) -> np.ndarray:
        return np.isclose(self.steps, self.default_step, rtol=1e-9, atol=0)

    def _step_axis(self, width: int, label_width: int, per_x: int, low: int, high: int, default: int) -> list[Text]:
        """The step axis: a tick per power of ten, ▲ at the default step, and labels that do not touch."""
        indent = label_width + 2
        axis = list(" " * label_width + " └" + "─" * ((high - low) * per_x + 1))
        labels = [" "] * width
        widest = max(len(power_label(e)) for e in (low, high))
        stride = next(s for s in range(1, high - low + 2) if s * per_x >= widest + 1 or s > high - low)
        for e in range(low, high + 1):
            at = indent + (e - low) * per_x
            axis[at] = "┬"
            if (high - e) % stride == 0:
                text = power_label(e)
                start = max(0, min(at - len(text) // 2, width - len(text)))
                labels[start : start + len(text)] = text
        axis[indent + default] = "▲"
        axis_line = Text("".join(axis), style="dim", no_wrap=True, overflow="crop")
        axis_line.stylize(_DEFAULT_STYLE, indent + default, indent + default + 1)
        caption = Text("".join(labels).rstrip(), style="dim", no_wrap=True, overflow="crop")
        return [axis_line, caption]

    def _legend(self) -> list[Text]:
        curve = Text(f"{POINT_MARK} max relative error measured at each step / σ   ")
        curve.append(f"── bound {self.bound:.3g}", _BOUND_STYLE)
        default = Text(f"{DEFAULT_MARK}▲ default step {self.default_step:.3g}", _DEFAULT_STYLE)
        at_default = self.errors[self.is_default()]
        if at_default.size:
            default.append(f": error {at_default[0]:.3g}")
        return [curve, default]


def _decades(logs: np.ndarray) -> tuple[int, int]:
    """The powers of ten around these log10 values, at least one decade apart."""
    low = math.floor(logs.min())
    return low, max(math.ceil(logs.max()), low + 1)


# ----------------------------------------------------------------------------- audit grid


class AuditGrid(Picture):
    """Cases × quantities of an audit, coloured by error over budget, the verdict letter in each cell.

    Parameters
    ----------
    case_labels : sequence of str, length c
    quantity_names : sequence of str, length q
    ratios : array_like, shape (c, q)
        max error / budget; NaN where none was measured (missing, error), drawn grey.
    verdict_letters : array_like of str, shape (c, q)
        P, I, W, M or E (see :data:`VERDICT_NAMES`); "" for a blank cell.
    title : str
    """

    def __init__(self, case_labels, quantity_names, ratios, verdict_letters, title: str = "audit"):
        self.case_labels = [str(label) for label in case_labels]
        self.quantity_names = [str(name) for name in quantity_names]
        self.ratios = np.asarray(ratios, dtype=float)
        self.letters = np.asarray(verdict_letters, dtype=str)
        shape = (len(self.case_labels), len(self.quantity_names))
        if self.ratios.shape != shape or self.letters.shape != shape or 0 in shape:
            raise ValueError(f"an audit grid needs ratios and letters of shape {shape} (cases × quantities)")
        self.title = title

    def _lines(self, console: Console, width: int) -> list[Text]:
        mode = _color_mode(console)
        styles = _Styles(mode)
        cell = max(3, max(len(name) for name in self.quantity_names)) + 2
        label_width = max(
            4, min(max(len(label) for label in self.case_labels), width - 1 - cell * self.ratios.shape[1])
        )
        row_labels = [_fit(label, label_width) for label in self.case_labels]
        letters = np.where(self.letters == "", " ", self.letters)
        if mode == "rgb":
            cells = _mark_cells(np.full(letters.shape, " "), letters, cell)
        else:  # the letter between two shades, cells apart so that the letters stand out
            cells = np.char.center(_mark_cells(_ratio_shades(self.ratios), letters, 3), cell)
        lines = [_title(self.title), _name_header(self.quantity_names, cell, max(map(len, row_labels)) + 1)]
        lines += _grid(cells, _ratio_colors(self.ratios, mode), styles, row_labels, names=True)
        lines += _ratio_legend(mode, styles, "error / budget", "budget")
        used = sorted(set(self.letters.ravel()) & VERDICT_NAMES.keys(), key=list(VERDICT_NAMES).index)
        key = "   ".join(f"{letter} {VERDICT_NAMES[letter]}" for letter in used)
        if np.isnan(self.ratios).any():
            key += f"   {'grey' if mode == 'rgb' else 'blank'}: no error measured"
        lines.append(Text(key))
        return lines
