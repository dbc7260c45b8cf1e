"""The --dy and --against files read beside the data: pandas' index column and header lines, however
the data was written (issue round 3, "inputs" items 1 and 2), each as bncli run as a real process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_process

X = np.array([[1.5, 10.0], [2.5, 30.0], [-1.0, 20.0], [4.0, 0.0]])
DY = np.array([[1.0, -1.0], [2.0, 0.5], [-3.0, 2.0], [0.25, 1.0]])


def _rows(values: np.ndarray) -> str:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in values)


def _pandas_csv(values: np.ndarray, names: list[str]) -> str:
    """What ``pandas.DataFrame(values, columns=names).to_csv()`` writes: an unnamed index column first."""
    lines = ["," + ",".join(names)]
    lines += [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in enumerate(values)]
    return "\n".join(lines) + "\n"


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def _dx(run) -> np.ndarray:
    assert run.returncode == 0, run.stderr.decode()
    return np.array(json.loads(run.stdout)["dx"])


def _one_line_error(run) -> str:
    stderr = run.stderr.decode()
    assert run.returncode == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("bncli: error: "), stderr
    return stderr


@pytest.fixture
def numpy_data(tmp_path):
    """The data as numpy.savetxt writes it: no header, no index column."""
    return _write(tmp_path, "x.csv", _rows(X))


@pytest.fixture
def expected_dx(tmp_path, numpy_data) -> np.ndarray:
    return _dx(run_process("grad", numpy_data, "--dy", _write(tmp_path, "plain_dy.csv", _rows(DY)), "-f", "json"))


# ------------------------------------------- 1: --index-column drop applies to every matrix input


@pytest.mark.parametrize("names", [["0", "1"], ["a", "b"]], ids=["numbered", "named"])
def test_index_column_drop_drops_the_dy_index_when_the_data_has_none(tmp_path, numpy_data, expected_dx, names):
    dy = _write(tmp_path, "dy.csv", _pandas_csv(DY, names))
    run = run_process("grad", numpy_data, "--dy", dy, "--index-column", "drop", "-f", "json")
    assert np.array_equal(_dx(run), expected_dx)
    stderr = run.stderr.decode()
    assert "pandas" not in stderr and "error" not in stderr
    # pandas' names for unnamed columns, 0 … n−1, are the data's own names: nothing to say
    assert (stderr == "") == (names == ["0", "1"]), stderr


def test_index_column_drop_drops_the_against_index_when_the_data_has_none(tmp_path, numpy_data, expected_dx):
    dy = _write(tmp_path, "plain_dy.csv", _rows(DY))
    against = _write(tmp_path, "dx.csv", _pandas_csv(expected_dx, ["0", "1"]))
    run = run_process("grad", numpy_data, "--dy", dy, "--against", against, "--index-column", "drop", "-f", "json")
    assert run.returncode == 0, run.stderr.decode()
    assert json.loads(run.stdout)["check"]["passed"] is True


def test_index_column_drop_drops_the_dy_index_in_explain_too(tmp_path, numpy_data, expected_dx):
    dy = _write(tmp_path, "dy.csv", _pandas_csv(DY, ["0", "1"]))
    run = run_process("explain", numpy_data, "--dy", dy, "--index-column", "drop", "-c", "1", "-f", "json")
    assert run.returncode == 0, run.stderr.decode()
    assert np.array_equal(json.loads(run.stdout)["dx"], expected_dx[:, 1])


def test_a_dy_index_column_kept_is_one_line_naming_the_file_and_the_fix(tmp_path, numpy_data):
    dy = _write(tmp_path, "dy.csv", _pandas_csv(DY, ["0", "1"]))
    stderr = _one_line_error(run_process("grad", numpy_data, "--dy", dy))
    assert f"--dy {dy}" in stderr and "4×3" in stderr and "4×2" in stderr
    assert "--index-column drop" in stderr


def test_a_dy_of_the_wrong_shape_after_its_index_is_dropped_is_one_line_saying_so(tmp_path, numpy_data):
    wide = np.column_stack([DY, DY[:, 0]])
    dy = _write(tmp_path, "dy.csv", _pandas_csv(wide, ["0", "1", "2"]))
    stderr = _one_line_error(run_process("grad", numpy_data, "--dy", dy, "--index-column", "drop"))
    assert f"--dy {dy}" in stderr and "4×3" in stderr and "4×2" in stderr and "index column" in stderr
    against = _write(tmp_path, "dx.csv", _pandas_csv(wide, ["0", "1", "2"]))
    stderr = _one_line_error(run_process("grad", numpy_data, "--against", against, "--index-column", "drop"))
    assert f"--against {against}" in stderr and "index column" in stderr


def test_a_data_index_column_kept_names_it_when_the_dy_has_none(tmp_path):
    data = _write(tmp_path, "frame.csv", _pandas_csv(X, ["a", "b"]))
    dy = _write(tmp_path, "dy.csv", "a,b\n" + _rows(DY))
    stderr = run_process("grad", data, "--dy", dy).stderr.decode()
    assert stderr.count("error") == 1 and "the data's first column" in stderr and "--index-column drop" in stderr


# ------------------------------------------------ 2: a header line in --dy, honestly read or refused


def test_a_dy_header_over_data_without_one_is_read_as_a_header_and_said_so(tmp_path, numpy_data, expected_dx):
    dy = _write(tmp_path, "dy.csv", "# upstream gradient\ndx_a,dx_b\n" + _rows(DY))
    run = run_process("grad", numpy_data, "--dy", dy, "-f", "json")
    assert np.array_equal(_dx(run), expected_dx)
    stderr = run.stderr.decode()
    assert stderr.count("\n") == 1, stderr
    assert f"--dy {dy}" in stderr and "line 2" in stderr and "header" in stderr and "'dx_a'" in stderr
    assert "position" in stderr


def test_a_dy_without_header_beside_data_with_one_is_matched_by_position_without_a_word(tmp_path, expected_dx):
    data = _write(tmp_path, "x.csv", "a,b\n" + _rows(X))
    dy = _write(tmp_path, "dy.csv", _rows(DY))
    run = run_process("grad", data, "--dy", dy, "-f", "json")
    assert np.array_equal(_dx(run), expected_dx)
    assert run.stderr == b""


def test_a_dy_row_read_as_a_header_that_leaves_a_row_short_is_refused_naming_line_and_column(tmp_path, numpy_data):
    dy = _write(tmp_path, "dy.csv", "1,x\n" + _rows(DY[1:]))
    stderr = _one_line_error(run_process("grad", numpy_data, "--dy", dy))
    assert f"--dy {dy}" in stderr and "3×2" in stderr and "4×2" in stderr
    assert "line 1" in stderr and "column 2" in stderr and "'x'" in stderr and "header" in stderr


def test_a_dy_header_of_numbers_beside_data_with_a_header_is_refused_naming_its_line(tmp_path):
    data = _write(tmp_path, "x.csv", "a,b\n" + _rows(X))
    dy = _write(tmp_path, "dy.csv", "0,1\n" + _rows(DY))  # pandas' to_csv(index=False) of unnamed columns
    stderr = _one_line_error(run_process("grad", data, "--dy", dy))
    assert f"--dy {dy}" in stderr and "5×2" in stderr and "4×2" in stderr
    assert "line 1" in stderr and "header" in stderr and "number" in stderr


def test_a_dy_a_row_short_after_its_index_is_dropped_is_one_line_naming_its_header(tmp_path, numpy_data):
    dy = _write(tmp_path, "dy.csv", _pandas_csv(DY[1:], ["0", "1"]))  # a header of numbers beside the index's ''
    stderr = _one_line_error(run_process("grad", numpy_data, "--dy", dy, "--index-column", "drop"))
    assert f"--dy {dy}" in stderr and "3×2 without its pandas index column" in stderr and "line 1" in stderr
