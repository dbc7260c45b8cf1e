"""Pictures (issue 12): rendering at fixed widths, with and without colour, and the matplotlib files."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_process
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from bncli import canvas, core, errors, figures, pictures
from bncli.io import read

WIDTHS = (80, 140)
COLOR_SYSTEMS = ("truecolor", "256", "standard", None)  # None: no colour at all


def console(width: int, color_system: str | None = "truecolor") -> Console:
    if color_system is None:
        return Console(file=io.StringIO(), width=width, color_system="truecolor", no_color=True, record=True)
    return Console(file=io.StringIO(), width=width, color_system=color_system, record=True)


def text_of(picture, width: int, color_system: str | None = "truecolor") -> list[str]:
    out = console(width, color_system)
    out.print(picture)
    return out.export_text().splitlines()


def cell_styles(picture, width: int, color_system: str = "truecolor") -> list[list[tuple[str, object]]]:
    """Each rendered line as (text, style) segments."""
    out = console(width, color_system)
    return [[(s.text, s.style) for s in line] for line in out.render_lines(picture, out.options, pad=False)]


def grid_lines(lines: list[str], first_label: str = "0") -> list[str]:
    """The lines of cells: from the one that starts with the first row label to the legend."""
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_label] and i > 1)
    end = next(i for i, line in enumerate(lines) if i > start and not line.lstrip()[:1].isdigit())
    return lines[start:end]


def blood_jacobian(column: int = 3) -> np.ndarray:
    x = read.read_matrix(str(read.sample_path())).values
    return core.jacobian(core.forward(x), column)


def v_shaped_sweep():
    """Steps 1e-1 … 1e-12 with errors 10^(|e + 6| − 10): exact powers of ten, least at 1e-6."""
    exponents = np.arange(-12, 0)
    return 10.0**exponents, 10.0 ** (np.abs(exponents + 6) - 10.0), exponents


def audit_example():
    cases = ["tiny batch k=2/float64", "constant column/float64", "large offset 1e8/float64"]
    ratios = np.array([[1e-5, 1e-3, 0.2, 1e-6], [1e-4, 1e-2, 0.5, np.nan], [1e-5, 40.0, 3.0, 1e-4]])
    letters = np.array([["P", "P", "P", "P"], ["P", "P", "P", "M"], ["P", "W", "I", "P"]])
    return pictures.AuditGrid(cases, ["y", "dx", "dw", "db"], ratios, letters, "audit of mybn.py:batchnorm")


def every_picture():
    rng = np.random.default_rng(1)
    steps, errors, _ = v_shaped_sweep()
    large = 10 ** rng.uniform(-8, -4, size=(1000, 50))
    large[:, 17] = 10.0
    return [
        pictures.Heatmap(blood_jacobian(), "∂y/∂x of Hb"),
        pictures.Heatmap(core.jacobian(core.forward(rng.normal(size=(100, 1))), 0), "k = 100"),
        pictures.ErrorMap(10 ** rng.uniform(-7, 1, size=(10, 4)), col_labels=["RBC", "WBC", "PLT", "Hb"]),
        pictures.ErrorMap(large, title="1000 × 50"),
        pictures.SweepPlot(steps, errors, 1e-6, 1e-6, "sweep"),
        audit_example(),
    ]


# --------------------------------------------------------------------------- every picture


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("color_system", COLOR_SYSTEMS)
def test_no_line_is_wider_than_the_console(width, color_system):
    for picture in every_picture():
        lines = text_of(picture, width, color_system)
        assert max(cell_len(line) for line in lines) <= width, type(picture).__name__


def test_a_picture_fits_in_a_table_cell():
    table = Table("picture")
    table.add_row(pictures.Heatmap(blood_jacobian(), "∂y/∂x of Hb"))
    lines = text_of(table, 80)
    assert max(cell_len(line) for line in lines) <= 80
    assert any("∂y/∂x of Hb" in line for line in lines)


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_color_or_a_dumb_terminal_gives_shading_and_no_colour_codes(monkeypatch, env):
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True).print(pictures.Heatmap([[1.0, -0.3], [-0.6, 0.02]], "m"))
    assert "\x1b[38;2" not in out.getvalue() and "\x1b[48;2" not in out.getvalue()
    assert "+█−▒" in out.getvalue()


# ------------------------------------------------------------------------------- heatmap


def test_heatmap_has_title_indices_every_row_and_a_scale_with_values():
    jacobian = blood_jacobian()
    lines = text_of(pictures.Heatmap(jacobian, "∂y/∂x of Hb"), 80)
    assert lines[0] == "∂y/∂x of Hb"
    assert lines[1].split() == [str(i) for i in range(10)]
    rows = grid_lines(lines)
    assert [line.split()[0] for line in rows] == [str(i) for i in range(10)]
    peak = np.abs(jacobian).max()
    scale = lines[lines.index(rows[-1]) + 2].split()
    assert scale == [f"{-peak:.3g}", "0", f"{peak:.3g}"]
    assert not any("blocks" in line for line in lines)


def test_heatmap_colours_are_diverging_red_above_zero_blue_below_white_at_zero():
    matrix = np.array([[2.0, -2.0, 0.0]])
    line = next(line for line in cell_styles(pictures.Heatmap(matrix, "m"), 80) if line[0][0].startswith("0"))
    cells = [style.bgcolor.get_truecolor() for text, style in line[1:] if style and style.bgcolor]
    (r1, g1, b1), (r2, g2, b2), (r3, g3, b3) = cells
    assert r1 > 2 * max(g1, b1) and b2 > 2 * max(r2, g2) and min(r3, g3, b3) > 240


def test_heatmap_without_colour_shows_sign_and_shade_of_each_element():
    lines = text_of(pictures.Heatmap([[1.0, -0.3], [-0.6, 0.02]], "m"), 80, None)
    assert grid_lines(lines) == ["0 +█−▒", "1 −▓ ·"]
    assert any("+/− sign" in line and "▓ ≥ 50%" in line for line in lines)
    assert "−█−▓−▒−░ ·+░+▒+▓+█" in "\n".join(lines)


def test_heatmap_of_k_40_is_shown_whole_in_80_columns_with_colour():
    matrix = core.jacobian(core.forward(np.random.default_rng(2).normal(size=(40, 1))), 0)
    lines = text_of(pictures.Heatmap(matrix, "k = 40"), 80)
    assert len(grid_lines(lines)) == 40 and not any("blocks" in line for line in lines)
    # Without colour a cell needs two characters: blocks at 80 columns, whole at 140.
    assert any("blocks of 2 × 2" in line for line in text_of(pictures.Heatmap(matrix, "k = 40"), 80, None))
    assert not any("blocks" in line for line in text_of(pictures.Heatmap(matrix, "k = 40"), 140, None))


def test_large_heatmap_is_shown_in_blocks_of_signed_peaks_and_says_so():
    matrix = core.jacobian(core.forward(np.random.default_rng(3).normal(size=(100, 1))), 0)
    heatmap = pictures.Heatmap(matrix, "k = 100")
    assert heatmap.layout(80) == (3, 2)
    lines = text_of(heatmap, 80)
    assert len(grid_lines(lines)) == 34
    caption = " ".join(" ".join(lines[-2:]).split())
    assert "100 × 100 shown in blocks of 3 × 3" in caption and "largest magnitude" in caption


def test_signed_block_peaks_against_a_loop():
    a = np.random.default_rng(4).normal(size=(7, 11))
    peaks = canvas.signed_block_peaks(a, 3, 4)
    expected = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            block = a[3 * i : 3 * i + 3, 4 * j : 4 * j + 4].ravel()
            expected[i, j] = block[np.argmax(np.abs(block))]
    np.testing.assert_array_equal(peaks, expected)


# ----------------------------------------------------------------------------- error map


def failing_error_map():
    ratio = np.full((10, 4), 1e-5)
    ratio[3, 3], ratio[7, 3] = 2400.0, 3.0
    return pictures.ErrorMap(ratio, col_labels=["RBC", "WBC", "PLT", "Hb"], title="dx")


@pytest.mark.parametrize("color_system", ["truecolor", None])
def test_error_map_marks_failing_elements_and_the_worst(color_system):
    lines = text_of(failing_error_map(), 80, color_system)
    assert lines[1].split() == ["RBC", "WBC", "PLT", "Hb"]
    rows = grid_lines(lines)
    assert len(rows) == 10
    assert [i for i, line in enumerate(rows) if "◆" in line] == [3]
    assert [i for i, line in enumerate(rows) if "×" in line] == [7]
    assert rows[7].index("×") == rows[3].index("◆") in range(lines[1].index("Hb"), lines[1].index("Hb") + 2)
    text = "\n".join(lines)
    assert "beyond the bound: 2 of 40" in text and "worst: row 3, column Hb, 2.4e+03 × the bound" in text
    assert "1e-6" in text and "1e3" in text and "┃ the bound" in text


def test_error_map_without_colour_shades_by_decade_and_marks_the_bound():
    ratio = np.array([[1e-7, 1e-5, 1e-3, 0.5, 1.0, 5.0]])
    lines = text_of(pictures.ErrorMap(ratio), 80, None)
    assert grid_lines(lines) == ["0 ··░░▒▒▓▓▓▓█◆"]
    assert any(line.startswith("shades: · < 1e-6 ≤ ░") for line in lines)


def test_error_map_colours_jump_at_the_bound():
    below, at, above = canvas.ratio_colors(np.array([1e-6, 1.0, 1.0001]), "rgb")
    assert below[2] > below[0] and at[0] > 200 and at[1] > 200 and above[0] > 200 and above[1] < at[1] - 40


def test_nan_counts_as_failing_and_worst():
    error_map = pictures.ErrorMap(np.array([[1e-3, np.nan], [2.0, 1e-4]]))
    assert error_map.worst == (0, 1)
    np.testing.assert_array_equal(error_map.failed, [[False, True], [True, False]])


@pytest.mark.parametrize(("width", "columns_per_block"), [(80, 2), (140, 1)])
def test_large_error_map_is_downsampled_with_a_note(width, columns_per_block):
    ratio = np.full((1000, 50), 1e-6)
    ratio[:, 17] = 10.0
    ratio[400, 17] = 900.0
    lines = text_of(pictures.ErrorMap(ratio), width)
    rows = grid_lines(lines)
    assert len(rows) == 40 and rows[16].split()[0] == "400"
    assert "◆" in rows[16] and sum("×" in line for line in rows) == 39
    column_word = "columns" if columns_per_block > 1 else "column"
    assert f"1000 × 50 shown in blocks of 25 rows × {columns_per_block} {column_word}" in " ".join(
        " ".join(lines[-2:]).split()
    )


# ----------------------------------------------------------------------------- sweep plot


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("color_system", ["truecolor", None])
def test_sweep_points_sit_on_their_decades_with_the_bound_and_the_default_marked(width, color_system):
    steps, errors, exponents = v_shaped_sweep()
    lines = text_of(pictures.SweepPlot(steps, errors, 1e-6, 1e-6, "sweep"), width, color_system)
    axis = next(line for line in lines if "└" in line)
    labels_line = lines[lines.index(axis) + 1]
    plot = lines[1 : lines.index(axis)]
    by_label = {line.split("┤")[0].strip(): line for line in plot if "┤" in line}
    assert set(by_label) == {f"1e{e}" for e in range(-10, -3)}
    for e, error in zip(exponents, errors, strict=True):
        column = axis.index("▲") if e == -6 else [i for i, c in enumerate(axis) if c in "┬▲"][e + 12]
        assert by_label[f"1e{round(np.log10(error))}"][column] == ("◆" if e == -6 else "•")
    assert "─" in by_label["1e-6"]
    assert labels_line.split()[-1] == "1e-1" and set(labels_line.split()) <= {f"1e{e}" for e in range(-12, 0)}
    legend = " ".join(lines[lines.index(labels_line) + 1 :])
    assert "bound 1e-06" in legend and "default step 1e-06: error 1e-10" in legend


def test_sweep_with_zero_errors_and_one_point_still_draws():
    lines = text_of(pictures.SweepPlot([1e-20, 1e-3], [0.0, 1e-7], 1e-10, 1e-20, "complex"), 80)
    assert any("◆" in line for line in lines) and any("▲" in line for line in lines)
    assert text_of(pictures.SweepPlot([1e-5], [1e-9], 1e-6, 1e-5), 80)


# ----------------------------------------------------------------------------- audit grid


@pytest.mark.parametrize("color_system", ["truecolor", None])
def test_audit_grid_has_a_verdict_letter_per_cell_and_a_key(color_system):
    lines = text_of(audit_example(), 80, color_system)
    assert lines[1].split() == ["y", "dx", "dw", "db"]
    rows = lines[2:5]
    assert [[c for c in line if c in "PIWME"] for line in rows] == [list("PPPP"), list("PPPM"), list("PWIP")]
    assert rows[0].startswith("tiny batch k=2/float64")
    key = lines[-1]
    assert "P pass" in key and "W wrong" in key and "M missing" in key
    assert ("grey" if color_system else "blank") + ": no error measured" in key


def test_audit_grid_colours_wrong_red_and_pass_blue():
    line = next(line for line in cell_styles(audit_example(), 80) if line[0][0].startswith("large offset"))
    colours = {text.strip(): style.bgcolor.get_truecolor() for text, style in line[1:] if text.strip()}
    assert colours["W"][0] > 150 > colours["W"][2]
    tiny = next(line for line in cell_styles(audit_example(), 80) if line[0][0].startswith("tiny"))
    r, g, b = next(style.bgcolor.get_truecolor() for text, style in tiny[1:] if text.strip() == "P")
    assert b > r


def test_audit_grid_cuts_long_case_names_to_fit():
    grid = pictures.AuditGrid(["x" * 200], ["y"], [[1e-3]], [["P"]])
    lines = text_of(grid, 80)
    assert lines[2].startswith("x" * 10) and "…" in lines[2] and cell_len(lines[2]) <= 80


# --------------------------------------------------------------------------- files, cost


@pytest.mark.extras
def test_png_and_pdf_are_valid_files():
    pytest.importorskip("matplotlib")
    steps, errors, _ = v_shaped_sweep()
    items = [
        pictures.Heatmap(blood_jacobian(), "∂y/∂x of Hb"),
        failing_error_map(),
        pictures.SweepPlot(steps, errors, 1e-6, 1e-6),
        audit_example(),
    ]
    png, pdf = io.BytesIO(), io.BytesIO()
    figures.save_figure(items, png, "png")
    figures.save_figure(items[:1], pdf, "pdf")
    assert png.getvalue().startswith(b"\x89PNG\r\n\x1a\n") and len(png.getvalue()) > 10_000
    assert pdf.getvalue().startswith(b"%PDF-") and pdf.getvalue().rstrip().endswith(b"%%EOF")


def test_missing_matplotlib_is_an_input_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    clone = r"pip install matplotlib \(or pip install '\.\[plot\]' in bncli's clone\)"
    with pytest.raises(errors.InputError, match=rf"PNG picture needs matplotlib: {clone}"):
        figures.save_figure([failing_error_map()], io.BytesIO(), "png")


def test_pictures_and_matplotlib_are_not_imported_at_start_up():
    probe = "import sys, bncli.cli; print(sorted({'bncli.pictures', 'bncli.figures', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    probe = "import sys, bncli.pictures, bncli.figures; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_labels_from_data_are_shown_literally():
    lines = text_of(
        pictures.ErrorMap(np.ones((2, 60)), col_labels=["\x1b[31mred"] * 60, row_labels=["[b]x[/b]", "y"]), 80
    )
    text = "\n".join(lines)
    assert "\x1b" not in text and "\\x1b[31mred" in text and "[b]x[/b]" in text


# ----------------------------------------------------- text from data, in every file (issue 21)

# Headers that matplotlib would read as mathtext ($…$), or reject ($$), and that XML cannot carry.
MATH_HEADERS = ("$$", "$x^2$", "a$b", r"\$")
UNRENDERABLE = ("a\ufffeb", "c\u2028d", "e\u2029f", "g\uffffh", "\x00z")


def hostile_csv(tmp_path, headers) -> str:
    path = tmp_path / "hostile.csv"
    rows = "1,2,3,4\n4,5,7,1\n2,1,0,3\n5,3,1,2\n"
    path.write_text(",".join(h.replace('"', '""').join('""') for h in headers) + "\n" + rows, encoding="utf-8")
    return str(path)


def pdf_fonts(data: bytes) -> set[bytes]:
    import re

    return set(re.findall(rb"/BaseFont /(?:[A-Z]{6}\+)?([A-Za-z0-9_-]+)", data))  # less the subset's tag


@pytest.mark.parametrize("fmt", ["png", "pdf"])
@pytest.mark.parametrize("command", [["grad", "--check"], ["grad", "--only", "jacobian", "-c", "0"]])
def test_headers_with_dollars_are_drawn_literally_in_png_and_pdf(tmp_path, fmt, command):
    pytest.importorskip("matplotlib")
    data = hostile_csv(tmp_path, MATH_HEADERS)
    out = tmp_path / f"x.{fmt}"
    run = run_process(*command, data, "--plot", "-o", out)
    assert run.returncode in (0, 1) and b"internal error" not in run.stderr, run
    assert out.read_bytes()[:4] in (b"\x89PNG", b"%PDF")


def test_a_header_in_dollars_is_not_typeset_as_math(tmp_path):
    """Mathtext draws $x^2$ in an italic math font; drawn literally it needs only the text font."""
    pytest.importorskip("matplotlib")
    fonts = []
    for header in ("$x^2$", "x^2"):
        out = tmp_path / "x.pdf"
        run = run_process("grad", "--check", hostile_csv(tmp_path, [header, "b", "c", "d"]), "--plot", "-o", out)
        assert run.returncode == 0, run
        fonts.append(pdf_fonts(out.read_bytes()))
    assert fonts[0] == fonts[1] and fonts[0], fonts


def test_the_draw_sets_every_text_from_data_literal():
    """Every title and tick label made from data is drawn with mathtext off, whatever it holds."""
    pytest.importorskip("matplotlib")
    from matplotlib.text import Text as MplText

    names = ["$a$", "$$", "b"]
    items = [
        pictures.Heatmap(np.eye(3), "$J$ of $$", names, names),
        pictures.ErrorMap(np.ones((3, 3)), row_labels=names, col_labels=names, title="$$ map"),
        pictures.AuditGrid(names, ["y", "$dx$"], np.ones((3, 2)), np.full((3, 2), "P"), title="audit of $$"),
    ]
    figure = figures.draw(items)
    figure.draw_without_rendering()
    dollars = [t for t in figure.findobj(MplText) if "$" in t.get_text() and "mathdefault" not in t.get_text()]
    assert len(dollars) >= 3 + 3 + 3 + 3 and not [t.get_text() for t in dollars if t.get_parse_math()]


@pytest.mark.parametrize("fmt", ["svg", "html"])
def test_svg_and_html_are_well_formed_whatever_the_headers_hold(tmp_path, fmt):
    import xml.etree.ElementTree as ElementTree

    headers = ["<&>\"']]>", *UNRENDERABLE[:3]]
    out = tmp_path / f"x.{fmt}"
    run = run_process("grad", "--check", hostile_csv(tmp_path, headers), "--plot", "-o", out)
    assert run.returncode == 0, run
    text = out.read_text(encoding="utf-8")
    assert not {"\ufffe", "\u2028", "\u2029"} & set(text)
    if fmt == "svg":
        ElementTree.fromstring(text)
    else:
        assert balanced_html(text)
    assert "\\ufffe" in text and "\\u2028" in text


def balanced_html(text: str) -> bool:
    """Every element but the void ones (meta, br…) closed in order, and the data free of stray markup."""
    from html.parser import HTMLParser

    class Checker(HTMLParser):
        void = {"meta", "br", "hr", "img", "link", "input"}

        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.open, self.broken = [], False

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.open.append(tag)

        def handle_endtag(self, tag):
            self.broken |= not self.open or self.open.pop() != tag

    checker = Checker()
    checker.feed(text)
    checker.close()
    return not checker.broken and not checker.open


def test_printable_escapes_noncharacters_and_line_separators():
    for header in UNRENDERABLE:
        shown = errors.printable(header)
        assert shown.isprintable() and len(shown.splitlines()) == 1, shown
    assert errors.printable("naïve Σ ∂y/∂x 🙂") == "naïve Σ ∂y/∂x 🙂"


def test_a_line_separator_in_a_header_does_not_split_the_table_line(tmp_path):
    run = run_process("grad", "--check", hostile_csv(tmp_path, UNRENDERABLE[:4]), "-f", "table")
    text = run.stdout.decode()
    assert run.returncode == 0 and not {"\ufffe", "\u2028", "\u2029", "\uffff"} & set(text), run
    assert "\\u2028" in text and "\\ufffe" in text


# ------------------------------------------------------ a missing matplotlib, refused at once


def without_matplotlib(tmp_path) -> dict:
    """An environment in which ``import matplotlib`` fails as if it were not installed."""
    hidden = tmp_path / "hide"
    (hidden / "matplotlib").mkdir(parents=True)
    (hidden / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    return {"PYTHONPATH": str(hidden)}


@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_a_png_without_matplotlib_is_refused_before_the_work(tmp_path, fmt):
    marker = tmp_path / "called"
    target = tmp_path / "target.py"
    target.write_text(
        "import pathlib\n"
        "from bncli import core\n"
        "def batchnorm(x, w, b, eps, dy):\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    raise RuntimeError('must not run')\n"
    )
    env = without_matplotlib(tmp_path)
    audit = run_process("audit", f"{target}:batchnorm", "--case", "unit", "-o", tmp_path / f"a.{fmt}", env=env)
    grad = run_process("grad", "--check", "-o", tmp_path / f"g.{fmt}", env=env)
    for run in (audit, grad):
        lines = run.stderr.decode().strip().splitlines()
        assert run.returncode == 2 and "needs matplotlib" in lines[-1], run
        assert not any("PASS" in line or "FAIL" in line for line in lines), lines
    assert not marker.exists() and not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pdf"))


def test_the_jacobian_figure_labels_both_axes_as_the_jacobian_table_names_them():
    pytest.importorskip("matplotlib")
    import bncli
    from bncli.present.grad import grad_document

    document = grad_document(bncli.grad(read.read_matrix(str(read.sample_path())).values, jacobian=[3]))
    (part,) = [part for part in document.parts if part.name == "jacobian"]
    figure = figures.draw([make() for make in part.pictures])
    heatmap = figure.axes[0]
    assert "∂y[i]" in heatmap.get_ylabel() and "∂x[j]" in heatmap.get_xlabel()
    assert all(spine.get_visible() for spine in heatmap.spines.values())
