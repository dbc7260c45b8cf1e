"""Hostile input, round two (issue 10): the readers' and the numeric core's part.

Each case runs bncli as a real process: bad input gives exit 2 and one line on stderr
(no traceback, no numpy warning, nothing on stdout); good input gives the right numbers
and nothing on stderr.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from conftest import run_process

from bncli import errors
from bncli.io import read


def refused(result, *expected: str) -> str:
    """The one-line error of a run that must exit 2; it must mention every ``expected``."""
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    assert stderr.startswith("bncli: error: ") and stderr.count("\n") == 1, stderr
    for text in expected:
        assert text in stderr, stderr
    return stderr


def succeeded(result) -> str:
    """stdout of a run that must exit 0 and be silent on stderr (no warnings)."""
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    return result.stdout.decode()


def csv_matrix(text: str, skip_header: bool = True) -> np.ndarray:
    return np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1 if skip_header else 0, ndmin=2)


def expected_s(values) -> np.ndarray:
    """s of one column with eps = 0, in exact units (the values scaled to order 1 first)."""
    x = np.asarray(values, dtype=np.float64)
    x = x / np.max(np.abs(x))
    return (x - x.mean()) / x.std()


# ------------------------------------------------------------------- RFC 4180 quoting


def test_a_number_cell_holding_a_quoted_line_end_is_not_a_number():
    result = run_process("forward", "-", input=b'a,b\n1,2\n"3\n4",5\n6,7\n')
    refused(result, "<stdin>: line 3, column 1 ('a'): '3\\n4' is not a number")


def test_a_quoted_header_with_a_line_end_is_a_column_name():
    out = succeeded(run_process("forward", "-", "-f", "json", input=b'"a\nx",b\n1,2\n3,5\n'))
    assert '"columns": ["a\\nx", "b"]' in out


def test_line_numbers_after_a_field_spanning_lines_count_its_lines():
    result = run_process("forward", "-", input=b'"a\nx",b\n1,2\n3,"5\n"\n6,x\n')
    refused(result, "line 6, column 2 ('b'): 'x' is not a number")


def test_an_unclosed_quote_is_an_input_error_naming_its_line():
    refused(run_process("forward", "-", input=b'a,b\n1,2\n"3,5\n'), "<stdin>: line 3:", "never closed")
    long_open = b'"a,b\n' + b"1,2\n" * 50_000  # csv's field limit (128 kB) ends it
    refused(run_process("forward", "-", input=long_open), "<stdin>: line 1:", "never closed")


# ----------------------------------------------------------------- tiny and huge data


@pytest.mark.parametrize("magnitude", [1e-160, 1e-320])  # more magnitudes: tests/test_core.py
def test_tiny_data_with_eps_0_is_normalized_exactly(magnitude):
    values = [1 * magnitude, 2 * magnitude, 4 * magnitude]
    text = "a\n" + "".join(f"{v!r}\n" for v in values)
    out = succeeded(run_process("forward", "-", "--eps", "0", "--only", "s", input=text.encode()))
    np.testing.assert_allclose(csv_matrix(out)[:, 0], expected_s(values), rtol=1e-6 if magnitude < 1e-300 else 1e-14)


def test_gradients_of_tiny_data_with_eps_0_pass_their_check_and_match_the_formula(tmp_path):
    (tmp_path / "x.csv").write_text("a\n1e-160\n2e-160\n4e-160\n")
    (tmp_path / "dy.csv").write_text("a\n1e-150\n2e-150\n-3e-150\n")
    result = run_process("grad", tmp_path / "x.csv", "--dy", tmp_path / "dy.csv", "--eps", "0", "--check")
    assert result.returncode == 0 and result.stderr.decode().startswith("bncli: PASS"), result.stderr.decode()
    out = result.stdout.decode()
    # dx = (w/(kσ))·(k·g − Σg − s·Σ g·s), σ in exact units
    s, g = expected_s([1, 2, 4]), np.array([1e-150, 2e-150, -3e-150])
    sigma = np.std([1.0, 2.0, 4.0]) * 1e-160  # numpy's std of the tiny values themselves underflows
    dx = (3 * g - g.sum() - s * (g @ s)) / (3 * sigma)
    np.testing.assert_allclose(csv_matrix(out)[:, 0], dx, rtol=1e-12)


def test_a_wrong_gradient_of_subnormal_data_fails_the_check(tmp_path):
    """The natural scale w·|g|/σ must not overflow to inf (every error would then be 0: PASS)."""
    (tmp_path / "x.csv").write_text("a\n1e-310\n2e-310\n4e-310\n")
    (tmp_path / "dy.csv").write_text("a\n1e-310\n2e-310\n-4e-310\n")
    s, g = expected_s([1, 2, 4]), np.array([1.0, 2.0, -4.0])  # in units of 1e-310
    right = (3 * g - g.sum() - s * (g @ s)) / (3 * np.std([1.0, 2.0, 4.0]))
    wrong = right + [0.4, 0, 0]
    (tmp_path / "right.csv").write_text("a\n" + "".join(f"{v!r}\n" for v in right.tolist()))
    (tmp_path / "wrong.csv").write_text("a\n" + "".join(f"{v!r}\n" for v in wrong.tolist()))
    common = [tmp_path / "x.csv", "--eps", "0", "--dy", tmp_path / "dy.csv", "--against"]
    assert run_process("grad", *common, tmp_path / "right.csv").returncode == 0
    wrong = run_process("grad", *common, tmp_path / "wrong.csv")
    assert wrong.returncode == 1 and wrong.stderr.decode().startswith("bncli: FAIL"), wrong.stderr.decode()


def test_huge_representable_data_is_normalized():
    out = succeeded(run_process("forward", "-", "--only", "s", input=b"a\n9e307\n-9e307\n0\n"))
    np.testing.assert_allclose(csv_matrix(out)[:, 0], [np.sqrt(1.5), -np.sqrt(1.5), 0], rtol=1e-15)


def test_huge_representable_data_is_normalized_in_float32():
    data = b"a\n1e38\n-3e38\n0\n"
    out = succeeded(run_process("forward", "-", "--dtype", "float32", "--only", "s", input=data))
    np.testing.assert_allclose(csv_matrix(out)[:, 0], expected_s([1e38, -3e38, 0]), rtol=1e-6)


def test_a_variance_beyond_the_float_range_is_named_not_called_zero():
    refused(run_process("forward", "-", "--only", "stats", input=b"a\n9e307\n-9e307\n0\n"), "overflows")


# -------------------------------------------------------------- no numpy warnings


@pytest.fixture
def data_files(tmp_path):
    (tmp_path / "d.csv").write_text("a\n1\n2\n4\n")
    (tmp_path / "far.csv").write_text("a\n-1e308\n2\n4\n")
    (tmp_path / "subnormal.csv").write_text("a\n1e-310\n2e-310\n4e-310\n")
    (tmp_path / "dy.csv").write_text("a\n1.7e308\n1e308\n-1.7e308\n")
    (tmp_path / "r.json").write_text('{"columns": ["a"], "mean": [1e308], "var": [1], "momentum": 0.1, "batches": 1}')
    return tmp_path


@pytest.mark.parametrize(
    "arguments",
    [
        ["grad", "{d}/d.csv", "--dy", "{d}/dy.csv", "-f", "json"],
        ["forward", "{d}/d.csv", "-w", "1e308", "-b", "1e308"],
        ["forward", "{d}/far.csv", "--eval", "--running", "{d}/r.json"],
        ["grad", "{d}/subnormal.csv", "--eps", "0", "--jacobian", "-f", "json"],
    ],
    ids=["dy-1e308", "forward-w-b-1e308", "eval-mean-1e308", "jacobian-of-subnormal-data"],
)
def test_overflow_is_one_line_without_numpy_warnings(data_files, arguments):
    result = run_process(*(a.format(d=data_files) for a in arguments))
    refused(result, "overflows")


def test_a_huge_complex_step_is_refused_before_it_overflows(data_files):
    result = run_process("grad", data_files / "d.csv", "--check", "--method", "complex", "--step", "1e300")
    refused(result, "--step 1e+300", "(0, 1]")


def test_dx_for_dy_near_the_float_range_is_right_though_dw_overflows(data_files):
    """Σ g·s overflows (dw is beyond the range) but dx is ~2e307: it is computed, not called inf."""
    out = succeeded(run_process("grad", data_files / "d.csv", "--dy", data_files / "dy.csv", "--eps", "0"))
    s, g = expected_s([1, 2, 4]), np.array([1.7, 1.0, -1.7])  # in units of 1e308
    dx = 1e308 * ((3 * g - g.sum() - s * (g @ s)) / (3 * np.std([1.0, 2.0, 4.0])))
    np.testing.assert_allclose(csv_matrix(out)[:, 0], dx, rtol=1e-12)


def test_gradients_of_huge_weight_and_bias_are_computed_silently(data_files):
    (data_files / "small_dy.csv").write_text("a\n0.001\n0.002\n-0.004\n")
    arguments = ["-w", "1e308", "-b", "1e308", "--eps", "0", "--dy", data_files / "small_dy.csv"]
    out = succeeded(run_process("grad", data_files / "d.csv", *arguments))
    s = expected_s([1, 2, 4])
    g = np.array([0.001, 0.002, -0.004])
    dx = 1e308 * (3 * g - g.sum() - s * (g @ s)) / (3 * np.std([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(csv_matrix(out)[:, 0], dx, rtol=1e-12)


def test_a_longdouble_npy_beyond_float64_is_an_input_error(tmp_path):
    np.save(tmp_path / "ld.npy", np.array([[1], [2], [np.longdouble(10) ** 400]], dtype=np.longdouble))
    refused(run_process("forward", tmp_path / "ld.npy"), "ld.npy: row 3, column 1", "beyond the float64 range")


# ------------------------------------------------------------------- duplicate names


def test_duplicate_header_names_are_refused():
    result = run_process("grad", "-", "--jacobian", "-f", "json", input=b"a,b,a,b,c\n1,2,3,4,5\n3,5,1,1,1\n")
    refused(result, "<stdin>: duplicate column names: 'a' (columns 1, 3); 'b' (columns 2, 4)")


def test_duplicate_names_are_refused_by_the_fast_reader_too(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("a,a\n" + "1.25,2.5\n3.5,4.75\n" * 70_000)  # over the fast reader's 2 MB
    refused(run_process("forward", path), "duplicate column names: 'a' (columns 1, 2)")


# --------------------------------------------------------------------- .npy files


def test_an_empty_npy_is_not_a_readable_array(tmp_path):
    (tmp_path / "e.npy").write_bytes(b"")
    refused(run_process("forward", tmp_path / "e.npy"), "e.npy: not a readable .npy array")


def test_an_npz_renamed_npy_is_named_an_archive(tmp_path):
    np.savez(tmp_path / "z.npz", a=np.ones(3))
    (tmp_path / "z.npz").rename(tmp_path / "z.npy")
    refused(run_process("forward", tmp_path / "z.npy"), "z.npy: a .npz archive, not a .npy array")


def test_an_npy_header_claiming_more_than_the_file_holds_is_refused(tmp_path):
    header = np.lib.format.header_data_from_array_1_0(np.ones((3, 10)))
    header["shape"] = (30_000_000_000, 10)
    with open(tmp_path / "h.npy", "wb") as stream:
        np.lib.format.write_array_header_1_0(stream, header)
        stream.write(bytes(80))
    refused(run_process("forward", tmp_path / "h.npy"), "h.npy: the header claims 30000000000×10 values")


# ------------------------------------------------------------------- misleading hints


def test_a_tsv_holding_commas_gets_no_decimal_comma_hint(tmp_path):
    (tmp_path / "c.tsv").write_text("a,b\n1,5\n2,4\n")
    stderr = refused(run_process("forward", tmp_path / "c.tsv"), "looks comma-separated")
    assert "decimal" not in stderr


def test_a_bar_delimiter_on_a_comma_file_gets_no_decimal_comma_hint(tmp_path):
    (tmp_path / "c.csv").write_text("a,b\n1,5\n2,4\n")
    stderr = refused(run_process("forward", tmp_path / "c.csv", "-d", "|"), "looks comma-separated")
    assert "decimal" not in stderr


def test_decimal_commas_still_get_their_hint():
    refused(run_process("forward", "-", input=b"a;b\n1,5;2\n3;4\n"), "decimal commas are not supported")


def test_a_tab_inside_a_quoted_header_is_not_the_delimiter():
    out = succeeded(run_process("forward", "-", "-f", "json", input=b'"a\tx",b\n1,2\n2,4\n'))
    assert '"columns": ["a\\tx", "b"]' in out


# ------------------------------------------------------------- both readers agree


@pytest.mark.parametrize(
    "tail, expected",
    [
        (b"3,4,", "line 250003: 3 fields, but the header has 2"),
        (b"# a comment \x00 with NUL\n", "binary data (NUL bytes)"),
        (b"# caf\xe9\n", "is not valid UTF-8"),
        (b'"3\n4",5\n', "line 250003, column 1 ('a'): '3\\n4' is not a number"),
    ],
    ids=["trailing-delimiter", "nul-in-comment", "latin1-in-comment", "quoted-line-end"],
)
def test_the_fast_reader_of_large_files_refuses_what_the_careful_reader_refuses(tmp_path, tail, expected):
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b\n" + b"1.25,2.5\n" * 250_001 + tail)  # over the fast reader's 2 MB
    refused(run_process("forward", path, "--only", "stats"), expected)
    with pytest.raises(errors.InputError, match=re.escape(expected.replace("250003", "3"))):
        read.parse_text(b"a,b\n" + b"1.25,2.5\n" + tail, "small.csv")  # the careful reader


# --------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_at_once(device):
    refused(run_process("forward", device, timeout=30), f"{device}: a character device, not a regular file or a pipe")


def test_a_device_named_npy_is_refused(tmp_path):
    (tmp_path / "zero.npy").symlink_to("/dev/zero")
    refused(run_process("forward", tmp_path / "zero.npy", timeout=30), "a character device")
