"""What the terminal pictures are drawn with: palettes, colour modes, cells in blocks, rulers,
legends, and the :class:`Picture` base (Rich and numpy; see :mod:`bncli.pictures`).

The palettes are shared with the matplotlib figures (:mod:`bncli.figures`), so a file and a
terminal read the same.
"""

from __future__ import annotations

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
SIXTEEN_COLORS = np.array([(33, 102, 172), (160, 160, 160), (178, 24, 43)], dtype=np.uint8)
# Marks on coloured cells, as RGB so that no terminal theme turns "black" into a grey.
_BLACK, _WHITE = Color.from_rgb(0, 0, 0), Color.from_rgb(255, 255, 255)
BOUND_STYLE = "red"
CURVE_STYLE = "bold cyan"
DEFAULT_STYLE = "bold yellow"


# ----------------------------------------------------------------------------- colours


def color_mode(console: Console) -> str:
    """'rgb' (256 colours or more), '16' or 'none': how cells are drawn on this console."""
    if console.no_color or console.color_system is None:
        return "none"
    return "16" if console.color_system == "standard" else "rgb"


def interpolate(palette: np.ndarray, at: np.ndarray, t: np.ndarray) -> np.ndarray:
    """RGB colours (..., 3) of ``t`` on a palette whose colours sit at the increasing positions ``at``."""
    t = np.clip(np.asarray(t, dtype=float), at[0], at[-1])
    return np.stack([np.interp(t, at, palette[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)


def log_ratio(ratio: np.ndarray) -> np.ndarray:
    """log10 of error over bound, 0 and below mapped to the bottom of the scale, NaN kept."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.log10(ratio), *LOG_RATIO_RANGE)


def ratio_colors(ratio: np.ndarray, mode: str) -> np.ndarray:
    """RGB per error ratio; with 16 colours, where shades carry the size, only within (blue) or beyond (red)."""
    if mode == "16":
        colors = SIXTEEN_COLORS[np.where(ratio > 1, 2, 0)]
    else:
        colors = interpolate(RATIO_COLORS, RATIO_AT, np.nan_to_num(log_ratio(ratio), nan=0.0))
    colors[np.isnan(ratio)] = NO_VALUE
    return colors


def diverging_colors(t: np.ndarray, mode: str) -> np.ndarray:
    """RGB per value t in [−1, 1]; with 16 colours, where shades carry the size, only the sign."""
    if mode == "16":
        return SIXTEEN_COLORS[np.sign(t).astype(int) + 1]
    return interpolate(DIVERGING_COLORS, DIVERGING_AT, t)


def ratio_shades(ratio: np.ndarray) -> np.ndarray:
    """A shading character per error ratio: · < 1e-6 ≤ ░ < 1e-4 ≤ ▒ < 1e-2 ≤ ▓ < 1 (the bound) < █."""
    level = np.searchsorted(np.array([1e-6, 1e-4, 1e-2]), ratio, side="right")
    level[ratio > 1] = 4
    shades = np.array(list(SHADES))[level]
    shades[np.isnan(ratio)] = " "
    return shades


class Styles:
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


def cell_blocks(a: np.ndarray, rows: int, cols: int, fill) -> np.ndarray:
    """``a`` cut into blocks of ``rows`` × ``cols`` (the last ones padded with ``fill``): (R, C, rows·cols)."""
    k, n = a.shape
    big_rows, big_cols = -(-k // rows), -(-n // cols)
    padded = np.full((big_rows * rows, big_cols * cols), fill, dtype=a.dtype)
    padded[:k, :n] = a
    return padded.reshape(big_rows, rows, big_cols, cols).swapaxes(1, 2).reshape(big_rows, big_cols, rows * cols)


def signed_block_peaks(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Each block's element of largest magnitude, with its sign."""
    blocks = cell_blocks(a, rows, cols, 0.0)
    return np.take_along_axis(blocks, np.abs(blocks).argmax(axis=-1)[..., None], axis=-1)[..., 0]


def ruler_labels(given: Sequence[str] | None, starts: range) -> list[str]:
    """The label of each shown row or column: the given one (or the index) of its first element."""
    return [str(i) if given is None else str(given[i]) for i in starts]


def fit_text(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def index_ruler(labels: Sequence[str], cell: int, indent: int) -> Text:
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


def name_header(names: Sequence[str], cell: int, indent: int) -> Text:
    """Column names centred over cells ``cell`` wide (cut with … when longer)."""
    header = Text(" " * indent, style="dim", no_wrap=True, overflow="crop")
    for name in names:
        header.append_text(literal(fit_text(name, cell - 1).center(cell), style="bold"))
    return header


def cell_grid(
    cells: np.ndarray, colors: np.ndarray, styles: Styles, row_labels: Sequence[str], names: bool = False
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


def mark_cells(shades: np.ndarray, marks: np.ndarray, width: int) -> np.ndarray:
    """Cells ``width`` wide: the shade repeated, with a mark (where not blank) in the middle."""
    middle = width // 2
    left = np.char.multiply(shades, middle)
    right = np.char.multiply(shades, width - middle - 1)
    centre = np.where(marks == " ", shades, marks)
    return np.char.add(np.char.add(left, centre), right)


def caption_line(text: str) -> Text:
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


def title_line(title: str) -> Text:
    return literal(title, style="bold")


# ------------------------------------------------------------------------------ legends


def ratio_legend(mode: str, styles: Styles, quantity: str, limit: str) -> list[Text]:
    """The log colour scale of error over bound, 1e-6 … 1e3, with the bound (1) marked ┃."""
    low, high = LOG_RATIO_RANGE
    exponents = np.arange(low, high + 0.25, 0.5)  # a cell (2 characters) per half decade
    ratios = 10.0**exponents
    cells = mark_cells(ratio_shades(ratios), np.full(len(ratios), " "), 2) if mode != "rgb" else ["  "] * len(ratios)
    indent = len(quantity) + 1
    bar = Text(quantity + " ", style="dim", no_wrap=True, overflow="crop")
    for exponent, text, rgb in zip(exponents, cells, ratio_colors(ratios, mode), strict=True):
        bar.append(text, styles(rgb))
        if exponent == 0:  # the cell of 1 still passes; the bound is its right edge
            bar.append("┃", BOUND_STYLE)
    ticks = [" "] * (indent + 2 * len(ratios) + 1)
    for exponent in range(low, high + 1, 3):
        at = indent + 4 * (exponent - low)  # two cells of two characters per decade
        if exponent >= 0:  # right of the ┃; "1" under it
            at += 2 if exponent == 0 else 1
        label = power_label(exponent)
        ticks[at : at + len(label)] = label
    line = Text("".join(ticks), style="dim", no_wrap=True, overflow="crop")
    line.append(f"  ┃ the {limit}", BOUND_STYLE)
    lines = [bar, line]
    if mode != "rgb":
        lines.append(Text(f"shades: · < 1e-6 ≤ ░ < 1e-4 ≤ ▒ < 1e-2 ≤ ▓ ≤ 1 < █  ({quantity})"))
    return lines


def power_label(exponent: int) -> str:
    return "1" if exponent == 0 else f"1e{exponent}"
