"""Reading and writing matrices (bncli.io)."""

from __future__ import annotations

import csv
import io as stdio
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bncli import errors
from bncli.errors import InputError
from bncli.io import careful, fast, files, read, write


def parse(text: str | bytes, **kwargs):
    data = text.encode() if isinstance(text, str) else text
    return read.parse_text(data, "t.csv", **kwargs)


@pytest.mark.parametrize(
    "text, delimiter",
    [
        ("a,b\n1,2\n3,4\n", ","),
        ("a\tb\n1\t2\n3\t4\n", "\t"),
        ("a;b\n1;2\n3;4\n", ";"),
        ("a b\n1   2\n 3 4 \n", "whitespace"),
        ("a, b\n1, 2\n3,   4\n", ","),
    ],
)
def test_delimiters_are_sniffed(text, delimiter):
    m = parse(text)
    assert m.columns == ["a", "b"] and m.has_header
    np.testing.assert_array_equal(m.values, [[1, 2], [3, 4]])


def test_tsv_extension_means_tab(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("a,1\tb\n1\t2\n")  # the header holds a comma: sniffing would pick it
    assert read.read_matrix(str(path)).columns == ["a,1", "b"]


def test_comments_blank_lines_bom_and_crlf():
    m = parse(b"\xef\xbb\xbf# a comment\r\n\r\nx,y\r\n  # indented comment\r\n1,2\r\n\r\n3,4\r\n")
    assert m.columns == ["x", "y"]
    np.testing.assert_array_equal(m.values, [[1, 2], [3, 4]])


def test_header_detection_and_override():
    assert not parse("1,2\n3,4\n").has_header
    assert parse("1,2\n3,4\n").columns == ["0", "1"]
    assert parse("1,x\n3,4\n").has_header
    forced = parse("1,2\n3,4\n5,6\n", header=True)
    assert forced.columns == ["1", "2"] and forced.values.shape == (2, 2)
    with pytest.raises(InputError, match="line 1, column 2: 'x' is not a number"):
        parse("1,x\n3,4\n", header=False)


def test_quoted_header_fields():
    m = parse('"a, first","b ""quoted"""\n1,2\n')
    assert m.columns == ["a, first", 'b "quoted"']


def test_npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6.0).reshape(3, 2))
    m = read.read_matrix(str(path))
    np.testing.assert_array_equal(m.values, [[0, 1], [2, 3], [4, 5]])
    assert m.columns == ["0", "1"] and not m.has_header
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="x.npy"):
        read.read_matrix(str(path))
    np.save(path, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="1-D or 2-D"):
        read.read_matrix(str(path))


def test_unreadable_file(monkeypatch, tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text("1\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(InputError, match="secret.csv: permission denied"):
        read.read_matrix(str(path))


def test_format_delimited_round_trips_and_quotes_headers():
    values = np.array([[0.1, 1e-300, 5e12], [-2.5, 123456789.123456789, 1 / 3]])
    text = write.format_delimited(values, ["a,b", "c", 'd"e'], ",")
    rows = list(csv.reader(stdio.StringIO(text)))
    assert rows[0] == ["a,b", "c", 'd"e']
    np.testing.assert_array_equal(np.array(rows[1:], dtype=float), values)


def test_large_inputs_take_the_fast_path_with_the_same_floats(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((40_000, 8)) * np.logspace(-6, 12, 8) + np.linspace(0, 1e9, 8)
    text = write.format_delimited(values, [f"c{i}" for i in range(8)], ",")
    assert len(text) > read._FAST_READ_BYTES
    data = ("# comment\n" + text).encode()
    fast = read.parse_text(data, "big.csv")
    monkeypatch.setattr(read, "_FAST_READ_BYTES", len(data) + 1)
    careful = read.parse_text(data, "big.csv")
    np.testing.assert_array_equal(fast.values, values)
    np.testing.assert_array_equal(careful.values, values)
    assert fast.columns == careful.columns and fast.has_header
    assert fast.values.strides[0] == fast.values.itemsize  # each column contiguous, as bncli.core wants


def test_large_bad_inputs_get_the_careful_readers_message(monkeypatch):
    lines = ["a,b"] + ["1.5,2.5"] * 200_000
    lines[150_000] = "1.5,oops"
    with pytest.raises(InputError, match="big.csv: line 150001, column 2 \\('b'\\): 'oops' is not a number"):
        read.parse_text("\n".join(lines).encode(), "big.csv")
    lines[150_000] = "1.5,2.5"
    lines.insert(1000, "")  # a blank line: polars would read a row of nulls
    m = read.parse_text("\n".join(lines).encode(), "big.csv")
    assert m.values.shape == (200_000, 2)


@pytest.mark.parametrize("columns, in_pieces", [(list("abcde"), False), (["a", "b", "c", "d", "é"], True)])
def test_large_files_are_read_in_one_call_or_in_pieces(tmp_path, monkeypatch, columns, in_pieces):
    """Plain ASCII goes to polars by the file's path, in one call; other UTF-8 text in pieces."""
    pytest.importorskip("polars")
    monkeypatch.setattr(fast, "PIECE_BYTES", 1 << 16)
    parsed = []
    polars_numbers = fast._polars_numbers

    def recorded(data, *args, **kwargs):
        parsed.append(type(data))
        return polars_numbers(data, *args, **kwargs)

    monkeypatch.setattr(fast, "_polars_numbers", recorded)
    rng = np.random.default_rng(2)
    values = rng.standard_normal((60_000, 5))
    path = tmp_path / "pieces.csv"
    path.write_text("# made by a test\n" + write.format_delimited(values, columns, ",").replace("\n", "\r\n"))
    m = read.read_matrix(str(path))
    np.testing.assert_array_equal(m.values, values)
    assert m.columns == columns
    lines = path.read_text().splitlines()
    lines.insert(40_000, "# a comment in a later piece")
    path.write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(read.read_matrix(str(path)).values, values)
    if in_pieces:
        assert set(parsed) == {bytes} and len(parsed) > 2
    else:
        assert parsed == [str, str]


def test_the_standard_librarys_io_is_not_bncli_io():
    """Absolute imports of io in bncli get the standard library's, even run from inside bncli's
    folder (where bncli/io could be found as "io"): Python has loaded it before it searches paths."""
    import io as stdlib_io
    import subprocess
    import sys

    from bncli import render

    assert render.StringIO is stdlib_io.StringIO and write.stdlib_io is stdlib_io
    folder = Path(read.__file__).parent.parent
    where = subprocess.run(
        [sys.executable, "-c", "import io; print(io.BytesIO.__module__, io.__file__)"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0] == "_io" and not where[1].startswith(str(folder))


def test_large_outputs_round_trip(tmp_path):
    values = np.random.default_rng(1).standard_normal((50_000, 6)) ** 3 * 1e-5
    text = write.format_delimited(values, None, "\t")
    back = np.array([line.split("\t") for line in text.splitlines()], dtype=float)
    np.testing.assert_array_equal(back, values)


def test_large_matrices_in_json_are_the_same_floats():
    values = np.random.default_rng(3).standard_normal((60_000, 5)) ** 5 * 1e-7
    obj = {"columns": ["a", "b"], "eps": 1e-5, "y": values, "nested": {"dx": values[:10]}}
    back = json.loads(write.format_json(obj))
    np.testing.assert_array_equal(np.array(back["y"]), values)
    np.testing.assert_array_equal(np.array(back["nested"]["dx"]), values[:10])
    assert back["columns"] == ["a", "b"] and back["eps"] == 1e-5
    bad = values.copy()
    bad[5, 2] = np.inf
    with pytest.raises(InputError):
        write.format_json({"y": bad})


def test_format_json_refuses_nan():
    with pytest.raises(InputError):
        write.format_json({"y": np.array([np.nan])})


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path, monkeypatch):
    target, other = tmp_path / "out.csv", tmp_path / "run.json"
    target.write_text("old")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    outputs = [
        ("--output", str(target), lambda s: s.write(b"new")),
        ("--save-running", str(other), lambda s: s.write(b"{}")),
    ]
    with pytest.raises(errors.OutputError, match="--output .*disk full"):
        files.write_files_atomically(outputs)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_failed_write_touches_no_file(tmp_path):
    target, other = tmp_path / "out.csv", tmp_path / "run.json"
    other.write_text("old")

    def fails(stream):
        raise OSError(28, "No space left on device")

    outputs = [("--save-running", str(other), lambda s: s.write(b"{}")), ("--output", str(target), fails)]
    with pytest.raises(errors.OutputError, match="--output .*No space left"):
        files.write_files_atomically(outputs)
    assert other.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


# ------------------------------------------------------------------ properties

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8).filter(
    lambda s: s.strip() == s and not s.startswith("#") and careful._number(s) is None
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def written_tables(draw):
    k = draw(st.integers(1, 6))
    n = draw(st.integers(1, 5))
    values = draw(hnp.arrays(np.float64, (k, n), elements=finite))
    header = draw(st.none() | st.lists(names, min_size=n, max_size=n, unique=True))  # duplicates are refused
    delimiter = draw(st.sampled_from([",", "\t", ";"]))
    spacing = draw(st.sampled_from(["", " ", "  "]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return values, header, delimiter, spacing, newline


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(written_tables())
def test_written_tables_read_back_exactly(table):
    values, header, delimiter, spacing, newline = table
    buffer = stdio.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    if header is not None:
        writer.writerow(header)
    lines = [buffer.getvalue()] + [(delimiter + spacing).join(map(repr, row.tolist())) + newline for row in values]
    m = parse("".join(lines), delimiter=delimiter)
    np.testing.assert_array_equal(m.values, values)
    assert m.has_header == (header is not None)
    if header is not None:
        assert m.columns == header


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_garbage_is_an_input_error_or_a_matrix(data):
    try:
        m = read.parse_text(data, "g.csv")
    except InputError as error:
        message = str(error)
        assert message.startswith("g.csv") and "\n" not in message
    else:
        assert m.values.ndim == 2 and np.isfinite(m.values).all() and m.values.size > 0


# ------------------------------------------------- both readers agree (issue 10, #19)

_CELLS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["1.5", "-0", "+.5", "5.", "1.e3", "1E+5", "00.1", " 2", "2 ", "  3.25"]),
    st.sampled_from(["", "x", "1,5", "nan", "inf", "-Infinity", "1e999", "1e-999", "1_0", "0x10", ".", "١"]),
    st.sampled_from(['"1.5"', '"2"', '"3\n4"', '"a""b"', '"1', '2"']),
)
_COMMENTS = st.sampled_from(
    ["# note", "#", "  # indented", '# "quoted', "# a,b;c\td", "# caf\u00e9", "# NUL \x00", "# latin-1 \udce9"]
)


@st.composite
def hostile_tables(draw) -> tuple[bytes, str | None]:
    """Text tables with quoting, comments, blank lines, trailing delimiters and odd encodings,
    and the delimiter to give (None: sniffed)."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    n = draw(st.integers(1, 4))
    lines = []
    if draw(st.booleans()):
        names = draw(
            st.lists(st.sampled_from(["a", "b", "c", '"d,e"', '"f\tg"', '"h\ni"', "a"]), min_size=n, max_size=n)
        )
        lines.append(delimiter.join(names))
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(_COMMENTS | st.sampled_from(["", "   "])))
        cells = draw(st.lists(_CELLS, min_size=n, max_size=n))
        trailing = delimiter if draw(st.integers(0, 7)) == 0 else ""
        lines.append(delimiter.join(cells) + trailing)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(lines) + draw(st.sampled_from(["", newline, newline + newline]))
    data = text.encode("utf-8", "surrogateescape")  # \udce9 becomes the invalid byte 0xe9
    bom = b"\xef\xbb\xbf" if draw(st.integers(0, 5)) == 0 else b""
    return bom + data, draw(st.sampled_from([None, delimiter, ","])) if delimiter != "|" else "|"


def _outcome(data: bytes, delimiter: str | None, reader: str):
    """What a reader makes of ``data``: the matrix, or the error message."""
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as folder:
        patch.setattr(read, "_FAST_READ_BYTES", len(data) + 1 if reader == "careful" else 0)
        patch.setattr(fast, "PIECE_BYTES", 16)  # many pieces, each ending at a line end
        patch.chdir(folder)
        try:
            if reader == "file":  # a file: memory-mapped, or read in pieces
                Path("t.csv").write_bytes(data)
                m = read.read_matrix("t.csv", delimiter=delimiter)
            else:
                m = read.parse_text(data, "t.csv", delimiter=delimiter)
        except InputError as error:
            return str(error)
    return m.values.tolist(), m.columns, m.has_header


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_tables())
def test_the_fast_and_the_careful_reader_agree(table):
    pytest.importorskip("polars")
    data, delimiter = table
    careful = _outcome(data, delimiter, "careful")
    assert _outcome(data, delimiter, "bytes") == careful
    assert _outcome(data, delimiter, "file") == careful


def test_wide_inputs_and_outputs_do_not_go_through_polars(monkeypatch):
    """polars holds ~10 kB per column: a 2 × 10⁶ file took 10 GB. Wide tables take the careful paths."""
    monkeypatch.setattr(read, "_FAST_READ_BYTES", 0)
    monkeypatch.setattr(write, "_FAST_WRITE_ELEMENTS", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("polars was asked to handle a wide table")

    monkeypatch.setattr(fast, "_polars_numbers", refuse)
    monkeypatch.setattr(write, "_write_polars", refuse)
    values = np.random.default_rng(3).standard_normal((2, 5_000))
    text = write.format_delimited(values, None, ",")
    np.testing.assert_array_equal(read.parse_text(text.encode(), "wide.csv").values, values)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_as_files_and_as_stdin(device, monkeypatch):
    with pytest.raises(InputError, match=f"{device}: a character device, not a regular file or a pipe"):
        read.read_matrix(device)
    with open(device, "rb") as stream:
        monkeypatch.setattr("sys.stdin", stdio.TextIOWrapper(stream))
        with pytest.raises(InputError, match="<stdin>: a character device"):
            read.read_stdin()


def test_stdin_from_a_pipe_is_read(monkeypatch):
    import os

    read_end, write_end = os.pipe()
    os.write(write_end, b"a\n1\n2\n")
    os.close(write_end)
    with open(read_end, "rb") as stream:
        monkeypatch.setattr("sys.stdin", stdio.TextIOWrapper(stream))
        assert read.read_stdin() == b"a\n1\n2\n"


def test_quoted_fields_may_span_lines_and_errors_name_the_line_their_cell_starts_on():
    m = parse('"a\nx","b"\n1,"2"\n"3",4  \n')
    assert m.columns == ["a\nx", "b"]
    np.testing.assert_array_equal(m.values, [[1, 2], [3, 4]])
    with pytest.raises(InputError, match=r"t.csv: line 4, column 2 \('b'\): 'x\\ny' is not a number"):
        parse('a,b\n"1\n",2\n3,"x\ny"\n')
    with pytest.raises(InputError, match="t.csv: line 2: .* \\(text after a closing quote\\)"):
        parse('a,b\n"1"x,2\n')
    with pytest.raises(InputError, match="t.csv: line 3: .* \\(a quote opened here is never closed\\)"):
        parse('a,b\n1,2\n"3,4\n5,6\n')


def test_comments_and_blank_lines_inside_quotes_are_data():
    with pytest.raises(InputError, match="line 2, column 1 \\('a'\\): '1\\\\n# not a comment"):
        parse('a,b\n"1\n# not a comment\n\n",2\n3,4\n')


# ------------------------------------------- other programs' results; pandas' index column


def test_careful_reader_takes_nan_and_infinity_only_when_asked():
    data = b'\xef\xbb\xbf"1.5",nan\n-inf,"2"\n'
    with pytest.raises(InputError, match="NaN and infinity are not allowed"):
        read.read_matrix("r.csv", data, delimiter=",", header=False)
    values = careful.parse_careful(data, "r.csv", ",", False, finite=False).values
    assert values[0, 0] == 1.5 and np.isnan(values[0, 1]) and values[1, 0] == -np.inf and values[1, 1] == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (",a\n0,5\n1,6\n2,7\n", True),
        ("i,a\n0,5\n1,6\n2,7\n", False),  # a named column is data
        (",a\n1,5\n2,6\n3,7\n", False),  # not 0 … k−1
        (",a\n0,5\n2,6\n1,7\n", False),
        ('""\n0\n1\n2\n', False),  # one column: nothing would be left
    ],
)
def test_a_pandas_index_column_is_an_unnamed_first_column_of_zero_to_k_minus_one(text, expected):
    matrix = read.read_matrix("p.csv", text.encode(), delimiter=",", header=True)
    assert matrix.has_pandas_index is expected
