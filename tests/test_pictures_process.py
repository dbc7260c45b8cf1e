"""--plot and picture files as a user makes them: real processes, exit codes, whole files."""

from __future__ import annotations

import html
import sys

import numpy as np
import pytest
from conftest import audit_process, on_terminal, run_process

from bncli.io import read

SAMPLE = read.sample_path()
SAMPLE_DY = read.sample_path(read.SAMPLE_DY_NAME)


def test_the_audit_grid_is_drawn_with_plot(tmp_path):
    run = audit_process("bncli", "--case", "unit", "--plot", "-f", "table")
    assert run.returncode == 0 and b"error / budget" in run.stdout
    svg = tmp_path / "audit.svg"
    assert audit_process("bncli", "--case", "unit", "--plot", "-o", svg).returncode == 0
    assert svg.read_text().lstrip().startswith("<svg")


def test_grad_plot_draws_the_jacobian_and_the_error_map():
    run = run_process("grad", SAMPLE, "--jacobian", "-c", "Hb", "--check", "--plot", "-f", "table")
    text = run.stdout.decode()
    assert run.returncode == 0 and "∂y/∂x of column Hb" in text and "error over the bound" in text
    sweep = run_process("grad", SAMPLE, "--sweep", "--plot", "-f", "table").stdout.decode()
    assert "against the step" in sweep


def test_plot_is_refused_where_pictures_cannot_go(tmp_path):
    assert b"--plot" in run_process("grad", SAMPLE, "--jacobian", "--plot", "-f", "json").stderr
    assert run_process("grad", SAMPLE, "--plot", "-f", "table").returncode == 2  # nothing to draw
    assert run_process("forward", SAMPLE, "-o", tmp_path / "y.svg").returncode == 0  # the table view, no pictures


def test_picture_files_are_whole_and_atomic(tmp_path):
    svg, html = tmp_path / "j.svg", tmp_path / "j.html"
    assert run_process("grad", SAMPLE, "--jacobian", "-c", "Hb", "--plot", "-o", svg).returncode == 0
    assert svg.read_text().lstrip().startswith("<svg") and svg.read_text().rstrip().endswith("</svg>")
    assert run_process("grad", SAMPLE, "--jacobian", "-c", "Hb", "--plot", "-o", html).returncode == 0
    assert "<html" in html.read_text().lower()
    png = tmp_path / "j.png"
    run = run_process("grad", SAMPLE, "--jacobian", "-c", "Hb", "-o", png)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert run.returncode == 2 and b"pip install matplotlib" in run.stderr and not png.exists()
    else:
        assert run.returncode == 0 and png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_pictures_fit_a_dumb_terminal_and_label_their_scale(tmp_path):
    data = tmp_path / "r40.csv"
    np.savetxt(data, np.random.default_rng(0).standard_normal((40, 3)) * 1e6, delimiter=",", header="a,b,c")
    argv = [sys.executable, "-m", "bncli", "grad", data, "--only", "jacobian", "-c", "1", "--plot"]
    shown = on_terminal(argv, 40, {"TERM": "dumb"})
    picture = shown[shown.index("∂y/∂x") :].splitlines()
    assert all(len(line) <= 40 for line in picture), picture
    ticks = next(line for line in picture if line.strip().startswith("-"))
    assert len(ticks.split()) == 3, ticks  # low, 0, high: never glued


def _frame_lines(dark: np.ndarray, share: float) -> np.ndarray:
    """Indices of the rows of ``dark`` (a boolean image) dark over more than ``share`` of their length."""
    return np.flatnonzero(dark.mean(axis=1) > share)


def test_the_jacobian_png_has_a_frame_on_all_four_sides_clear_of_the_edges(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    png = tmp_path / "jacobian.png"
    run = run_process("grad", SAMPLE, "--only", "jacobian", "-c", "Hb", "--plot", "-o", png)
    assert run.returncode == 0, run.stderr.decode()
    pixels = matplotlib.image.imread(png)[..., :3]
    dark = pixels.max(axis=2) < 0.35  # the frame's black, not the colours of the cells
    height, width = dark.shape
    horizontal, vertical = _frame_lines(dark, 0.4), _frame_lines(dark.T, 0.4)
    margin = 15  # pixels, 0.1 inch at the picture's 150 dpi: the frame is not lost at the picture's edge
    assert horizontal.size and vertical.size, "no frame found"
    assert horizontal.max() - horizontal.min() > height / 2, horizontal  # top and bottom
    assert vertical.max() - vertical.min() > width / 3, vertical  # left and right
    assert margin <= horizontal.min() and horizontal.max() < height - margin, (horizontal, height)
    assert margin <= vertical.min() and vertical.max() < width - margin, (vertical, width)


def test_the_jacobian_picture_names_its_axes_in_the_terminal_and_in_svg(tmp_path):
    svg = tmp_path / "jacobian.svg"
    assert run_process("grad", SAMPLE, "--only", "jacobian", "-c", "Hb", "--plot", "-o", svg).returncode == 0
    table = run_process("grad", SAMPLE, "--only", "jacobian", "-c", "Hb", "--plot", "-f", "table").stdout.decode()
    for shown in (table, html.unescape(svg.read_text()).replace("\xa0", " ")):
        assert "rows i: ∂y[i]" in shown and "columns j: ∂x[j]" in shown
