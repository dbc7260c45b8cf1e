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
from rich.console import Console
from rich.text import Text

from .canvas import (
    BOUND_STYLE,
    CURVE_STYLE,
    DEFAULT_MARK,
    DEFAULT_STYLE,
    FAIL_MARK,
    MAX_ROWS,
    POINT_MARK,
    SHADES,
    VERDICT_NAMES,
    WORST_MARK,
    Picture,
    Styles,
    caption_line,
    cell_blocks,
    cell_grid,
    color_mode,
    diverging_colors,
    fit_text,
    index_ruler,
    mark_cells,
    name_header,
    power_label,
    ratio_colors,
    ratio_legend,
    ratio_shades,
    ruler_labels,
    signed_block_peaks,
    title_line,
)
from .render import literal

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
    axis_names : (str, str), optional
        What the rows and the columns are (a Jacobian's ``("i: ∂y[i]", "j: ∂x[j]")``), shown
        under the scale and on the drawn figure's axes.

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

    def __init__(
        self,
        matrix,
        title: str,
        row_labels: Sequence[str] | None = None,
        col_labels=None,
        axis_names: tuple[str, str] | None = None,
    ):
        self.matrix = np.asarray(matrix, dtype=float)
        if self.matrix.ndim != 2 or 0 in self.matrix.shape:
            raise ValueError(f"a heatmap needs a non-empty 2-D matrix, got shape {self.matrix.shape}")
        self.title = title
        self.row_labels = row_labels
        self.col_labels = col_labels
        self.axis_names = axis_names

    def layout(self, width: int, colour: bool = True) -> tuple[int, int]:
        """(b, cell): blocks of b × b elements (b = 1: every element) in cells this many characters wide.

        Two characters (about square) when every column fits; in colour one character
        will do (without colour a cell needs two: sign and shade); else blocks.
        """
        rows, cols = self.matrix.shape
        room = width - max(len(label) for label in ruler_labels(self.row_labels, range(rows))) - 1
        if rows <= MAX_ROWS:
            for cell in (2, 1) if colour else (2,):
                if cols * cell <= room:
                    return 1, cell
        return max(-(-rows // MAX_ROWS), -(-cols // max(1, room // 2))), 2

    def _lines(self, console: Console, width: int) -> list[Text]:
        mode = color_mode(console)
        styles = Styles(mode)
        rows, cols = self.matrix.shape
        b, cell = self.layout(width, mode != "none")
        values = self.matrix if b == 1 else signed_block_peaks(self.matrix, b, b)
        peak = float(np.abs(self.matrix).max())
        t = values / peak if peak > 0 else np.zeros_like(values)
        row_labels = ruler_labels(self.row_labels, range(0, rows, b))
        indent = max(len(label) for label in row_labels) + 1
        lines = [title_line(self.title), index_ruler(ruler_labels(self.col_labels, range(0, cols, b)), cell, indent)]
        lines += cell_grid(_signed_cells(t, mode, cell), diverging_colors(t, mode), styles, row_labels)
        lines += _diverging_legend(mode, styles, peak)
        if self.axis_names:
            lines.append(caption_line("rows {}, columns {}".format(*self.axis_names)))
        if b > 1:
            lines.append(
                caption_line(
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


def _diverging_legend(mode: str, styles: Styles, peak: float) -> list[Text]:
    """The colour scale from −peak through 0 to +peak (and without colour, what the shades mean)."""
    if mode == "rgb":
        levels = np.linspace(-1, 1, 21)
    else:  # each shade once, each side of 0
        levels = np.array([-1, -0.6, -0.4, -0.1, 0, 0.1, 0.4, 0.6, 1])
    bar = Text("scale ", style="dim", no_wrap=True, overflow="crop")
    for text, rgb in zip(_signed_cells(levels, mode, 2), diverging_colors(levels, mode), strict=True):
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
        label_width = max(len(label) for label in ruler_labels(self.row_labels, range(k)))
        row_block = -(-k // MAX_ROWS)
        if self.col_labels is not None:
            named = max(2, max(len(str(name)) for name in self.col_labels)) + 2
            if named <= 10 and label_width + 1 + n * named <= width:
                return row_block, 1, named
        fit = max(1, (width - label_width - 1) // 2)
        return row_block, -(-n // fit), 2

    def _lines(self, console: Console, width: int) -> list[Text]:
        mode = color_mode(console)
        styles = Styles(mode)
        k, n = self.ratio.shape
        rb, cb, cell = self.layout(width)
        ratio = cell_blocks(self.ratio, rb, cb, 0.0).max(axis=-1)
        failed = cell_blocks(self.failed, rb, cb, False).any(axis=-1)
        marks = np.where(failed, FAIL_MARK, " ")
        marks[self.worst[0] // rb, self.worst[1] // cb] = WORST_MARK
        shades = ratio_shades(ratio) if mode != "rgb" else np.full(ratio.shape, " ")
        row_labels = ruler_labels(self.row_labels, range(0, k, rb))
        indent = max(len(label) for label in row_labels) + 1
        if cb == 1 and self.col_labels is not None and cell > 2:
            header = name_header([str(name) for name in self.col_labels], cell, indent)
        else:
            header = index_ruler(ruler_labels(self.col_labels, range(0, n, cb)), cell, indent)
        lines = [title_line(self.title), header]
        lines += cell_grid(mark_cells(shades, marks, cell), ratio_colors(ratio, mode), styles, row_labels)
        lines += ratio_legend(mode, styles, "error / bound", "bound")
        lines.append(self._marks_line())
        if rb > 1 or cb > 1:
            lines.append(
                caption_line(
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
        styles = np.full(chars.shape, CURVE_STYLE, dtype=object)
        bound_line = int(dot_row(math.log10(self.bound))) // 4
        clear = codes[bound_line] == 0
        chars[bound_line, clear], styles[bound_line, clear] = "─", BOUND_STYLE
        point_lines, point_columns = dot_row(log_errors) // 4, dot_column(log_steps) // 2
        chars[point_lines, point_columns] = POINT_MARK
        default = self.is_default()
        chars[point_lines[default], point_columns[default]] = DEFAULT_MARK
        styles[point_lines[default], point_columns[default]] = DEFAULT_STYLE

        ticks = {(y_high - e) * per_y: power_label(e) for e in range(y_low, y_high + 1)}
        lines = [title_line(self.title)]
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
        axis_line.stylize(DEFAULT_STYLE, indent + default, indent + default + 1)
        caption = Text("".join(labels).rstrip(), style="dim", no_wrap=True, overflow="crop")
        return [axis_line, caption]

    def _legend(self) -> list[Text]:
        curve = Text(f"{POINT_MARK} max relative error measured at each step / σ   ")
        curve.append(f"── bound {self.bound:.3g}", BOUND_STYLE)
        default = Text(f"{DEFAULT_MARK}▲ default step {self.default_step:.3g}", DEFAULT_STYLE)
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
        mode = color_mode(console)
        styles = Styles(mode)
        cell = max(3, max(len(name) for name in self.quantity_names)) + 2
        label_width = max(
            4, min(max(len(label) for label in self.case_labels), width - 1 - cell * self.ratios.shape[1])
        )
        row_labels = [fit_text(label, label_width) for label in self.case_labels]
        letters = np.where(self.letters == "", " ", self.letters)
        if mode == "rgb":
            cells = mark_cells(np.full(letters.shape, " "), letters, cell)
        else:  # the letter between two shades, cells apart so that the letters stand out
            cells = np.char.center(mark_cells(ratio_shades(self.ratios), letters, 3), cell)
        lines = [title_line(self.title), name_header(self.quantity_names, cell, max(map(len, row_labels)) + 1)]
        lines += cell_grid(cells, ratio_colors(self.ratios, mode), styles, row_labels, names=True)
        lines += ratio_legend(mode, styles, "error / budget", "budget")
        used = sorted(set(self.letters.ravel()) & VERDICT_NAMES.keys(), key=list(VERDICT_NAMES).index)
        key = "   ".join(f"{letter} {VERDICT_NAMES[letter]}" for letter in used)
        if np.isnan(self.ratios).any():
            key += f"   {'grey' if mode == 'rgb' else 'blank'}: no error measured"
        lines.append(Text(key))
        return lines
