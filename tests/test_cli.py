"""The command line, through typer's CliRunner and a few real processes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import run_process

from bncli import __version__, core
from bncli.io import read

SAMPLE = read.sample_path()
SAMPLE_DY = read.sample_path(read.SAMPLE_DY_NAME)


def test_version(bncli):
    run = bncli("--version")
    assert run.code == 0 and run.stdout.strip() == f"bncli {__version__}"


def test_every_command_is_documented(bncli):
    run = bncli("--help")
    for command in ("forward", "grad"):
        assert command in run.stdout
        help_text = bncli(command, "--help").stdout
        for option in ("--format", "--output", "--eps", "--weight", "--bias", "--dtype", "--eval", "--running"):
            assert option in help_text


# --------------------------------------------------------------------- sources


def test_file_stdin_dash_and_pipe_give_the_same_csv(bncli, data_csv):
    by_file = bncli("forward", data_csv)
    by_dash = bncli("forward", "-", input=data_csv.read_text())
    by_pipe = bncli("forward", input=data_csv.read_text())
    assert by_file.code == 0 and by_file.stdout
    assert by_file.stdout == by_dash.stdout == by_pipe.stdout


def test_no_file_on_a_terminal_uses_the_sample_and_says_so(bncli, terminal_stdin):
    run = bncli("forward", "-f", "json")
    assert run.code == 0
    assert "sample" in run.stderr and "blood.csv" in run.stderr
    assert run.json["columns"] == ["RBC", "WBC", "PLT", "Hb"]


def test_the_sample_passes_its_own_check(bncli, terminal_stdin):
    run = bncli("grad", "--check", "-f", "table")
    assert run.code == 0, run
    for quantity in ("dx", "dw", "db"):
        assert any(line.split()[:1] == [quantity] and "PASS" in line for line in run.stdout.splitlines())
    assert "PASS:" in run.stdout and "FAIL" not in run.stdout


def test_the_sample_passes_its_check_with_the_jacobian(bncli, terminal_stdin):
    run = bncli("grad", "--check", "--jacobian", "-f", "json")
    assert run.code == 0
    check = run.json["check"]
    assert check["passed"] and set(check["results"]) == {"dx", "dw", "db", "jacobian"}
    assert set(run.json["jacobian"]) == {"RBC", "WBC", "PLT", "Hb"}


# --------------------------------------------------------------------- formats


def test_csv_values_are_exactly_the_json_floats(bncli, data_csv):
    as_csv = bncli("forward", data_csv).matrix()
    as_json = np.array(bncli("forward", data_csv, "-f", "json").json["y"])
    np.testing.assert_array_equal(as_csv, as_json)
    expected = core.forward(read.read_matrix(str(data_csv)).values).y
    np.testing.assert_array_equal(as_csv, expected)  # full round-trip precision


def test_header_in_iff_header_out(bncli, tmp_path):
    with_header = bncli("forward", input="a,b\n1,2\n3,5\n").stdout.splitlines()
    without = bncli("forward", input="1,2\n3,5\n").stdout.splitlines()
    assert with_header[0] == "a,b" and len(with_header) == 3
    assert len(without) == 2 and float(without[0].split(",")[0]) < 0
    forced = bncli("forward", "--header", input="1,2\n3,5\n4,4\n").stdout.splitlines()
    assert forced[0] == "1,2" and len(forced) == 3


def test_tsv_and_json_outputs(bncli, data_csv):
    tsv = bncli("forward", data_csv, "-f", "tsv").stdout.splitlines()
    assert tsv[0] == "a\tb\tc" and len(tsv[1].split("\t")) == 3
    doc = bncli("forward", data_csv, "-f", "json").json
    assert {"columns", "eps", "weight", "bias", "mean", "var", "std", "s", "y"} <= set(doc)
    assert np.array(doc["y"]).shape == (4, 3) and len(doc["mean"]) == 3


def test_forward_only_and_stats(bncli, data_csv):
    s = bncli("forward", data_csv, "--only", "s", "-w", "2", "-b", "1").matrix()
    y = bncli("forward", data_csv, "--only", "y", "-w", "2", "-b", "1").matrix()
    np.testing.assert_allclose(y, 2 * s + 1, rtol=1e-15)
    stats = bncli("forward", data_csv, "--only", "stats", "-w", "1,2,3").stdout.splitlines()
    assert stats[0] == "statistic,a,b,c"
    assert [line.split(",")[0] for line in stats[1:]] == ["mean", "var", "std", "weight", "bias"]
    assert stats[4] == "weight,1.0,2.0,3.0"


def test_grad_json_and_only(bncli, data_csv, tmp_path):
    dy = tmp_path / "dy.csv"
    dy.write_text("a,b,c\n1,0,0\n0,1,0\n0,0,1\n1,1,1\n")
    doc = bncli("grad", data_csv, "--dy", dy, "-f", "json").json
    assert {"columns", "eps", "weight", "bias", "dy", "dx", "dw", "db"} <= set(doc)
    assert doc["dy"][0] == [1.0, 0.0, 0.0]
    dw = bncli("grad", data_csv, "--dy", dy, "--only", "dw").stdout.splitlines()
    assert dw[0] == "a,b,c" and [float(v) for v in dw[1].split(",")] == doc["dw"]
    db = bncli("grad", data_csv, "--dy", dy, "--only", "db").stdout.splitlines()
    assert [float(v) for v in db[1].split(",")] == [2.0, 2.0, 2.0]
    dx = bncli("grad", data_csv, "--dy", dy).matrix()
    np.testing.assert_array_equal(dx, np.array(doc["dx"]))


def test_default_dy_is_seeded_and_reported(bncli, data_csv):
    a = bncli("grad", data_csv, "-f", "json", "--seed", "3").json
    b = bncli("grad", data_csv, "-f", "json", "--seed", "3").json
    c = bncli("grad", data_csv, "-f", "json").json
    assert a["dy"] == b["dy"] != c["dy"]
    table = bncli("grad", data_csv, "-f", "table", "--seed", "3").stdout
    assert "seed 3" in table


def test_jacobian_csv_for_one_column(bncli, data_csv):
    run = bncli("grad", data_csv, "--jacobian", "-c", "b", "--only", "jacobian")
    lines = run.stdout.splitlines()
    assert lines[0] == "b[0],b[1],b[2],b[3]"
    jac = run.matrix()
    np.testing.assert_array_equal(jac, jac.T)
    by_index = bncli("grad", data_csv, "--jacobian", "-c", "1", "--only", "jacobian").matrix()
    np.testing.assert_array_equal(jac, by_index)
    several = bncli("grad", data_csv, "--jacobian", "--only", "jacobian")
    assert several.code == 2 and "--column" in several.stderr and not several.stdout


def test_tables_summarise_large_matrices_unless_full(bncli, tmp_path):
    path = tmp_path / "big.csv"
    rng = np.random.default_rng(0)
    np.savetxt(path, rng.standard_normal((60, 30)), delimiter=",")
    summary = bncli("forward", path, "-f", "table").stdout
    assert "⋮" in summary and "…" in summary and "--full" in summary
    full = bncli("forward", path, "-f", "table", "--full").stdout
    assert "⋮" not in full and len(full.splitlines()) > 60


@pytest.mark.parametrize("width", ["80", "140"])
def test_check_table_fits_the_terminal_without_cutting_values(bncli, width):
    run = bncli("grad", SAMPLE, "--check", "-f", "table", env={"COLUMNS": width})
    check_table = run.stdout[
        run.stdout.index("gradient check") : run.stdout.index("PASS:")
    ]  # the verdict is one long line
    assert all(len(line) <= int(width) for line in check_table.splitlines())
    assert "…" not in check_table and "PASS" in check_table


def test_table_shows_header_markup_and_control_characters_literally(bncli):
    run = bncli("forward", "-f", "table", input='"[bold]x[/]",[link=http://e.x]y,"z\x1b[31m"\n1,2,3\n4,5,7\n')
    assert run.code == 0
    assert "[bold]x[/]" in run.stdout and "[link=http://e.x]y" in run.stdout
    assert "\x1b" not in run.stdout and "\\x1b[31m" in run.stdout


def test_npy_and_delimiter_options(bncli, tmp_path, data_csv):
    values = read.read_matrix(str(data_csv)).values
    npy = tmp_path / "x.npy"
    np.save(npy, values)
    from_npy = bncli("forward", npy).stdout.splitlines()
    assert from_npy[0].count(",") == 2 and len(from_npy) == 4  # no header: .npy has none
    np.testing.assert_array_equal(bncli("forward", npy).matrix(skip_header=False), bncli("forward", data_csv).matrix())
    semicolons = tmp_path / "x.txt"
    semicolons.write_text(data_csv.read_text().replace(",", ";"))
    for delimiter in (";", "semicolon"):
        assert bncli("forward", semicolons, "-d", delimiter).stdout == bncli("forward", data_csv).stdout
    assert bncli("forward", data_csv, "-d", "x").code == 2


def test_precision_sets_table_digits(bncli, data_csv):
    three = bncli("forward", data_csv, "-f", "table", "-p", "3").stdout
    nine = bncli("forward", data_csv, "-f", "table", "-p", "9").stdout
    assert "-1.19200357" in nine and "-1.19" in three.split() and "-1.19200357" not in three


# ---------------------------------------------------------------------- output


def test_output_file_follows_the_extension_and_is_atomic(bncli, data_csv, tmp_path):
    target = tmp_path / "out.json"
    run = bncli("forward", data_csv, "-o", target)
    assert run.code == 0 and run.stdout == ""
    assert json.loads(target.read_text())["columns"] == ["a", "b", "c"]
    target.write_text("precious")
    failed = bncli("forward", data_csv, "-o", target, "--eps", "-1")
    assert failed.code == 2 and target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "out.json"]


def test_output_to_a_device_writes_through_it(bncli, data_csv):
    before = os.stat(os.devnull)
    assert bncli("forward", data_csv, "-o", os.devnull).code == 0
    after = os.stat(os.devnull)
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)


def test_output_to_a_named_pipe_is_streamed(bncli, data_csv, tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    assert bncli("forward", data_csv, "-o", fifo).code == 0
    reader.join(timeout=30)
    assert received and received[0].startswith("a,b,c\n")
    assert fifo.exists() and not fifo.is_file()


def test_output_keeps_the_mode_of_an_existing_file(bncli, data_csv, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("")
    os.chmod(target, 0o640)
    assert bncli("forward", data_csv, "-o", target).code == 0
    assert (os.stat(target).st_mode & 0o777) == 0o640
    assert target.read_text().startswith("a,b,c\n")


# ----------------------------------------------------------------------- check


def test_check_against_a_correct_user_gradient_passes(bncli, tmp_path):
    data = read.read_matrix(str(SAMPLE))
    dy = read.read_matrix(str(SAMPLE_DY)).values
    grads = core.backward(dy, core.forward(data.values))
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"dx": grads.dx.tolist(), "dw": grads.dw.tolist(), "db": grads.db.tolist()}))
    run = bncli("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", mine, "-f", "json")
    assert run.code == 0, run
    assert set(run.json["check"]["results"]) == {"dx", "dw", "db"}
    csv_dx = tmp_path / "dx.csv"
    np.savetxt(csv_dx, grads.dx, delimiter=",")
    assert bncli("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", csv_dx).code == 0


def test_check_against_a_wrong_user_gradient_fails_and_points_at_it(bncli, tmp_path):
    data = read.read_matrix(str(SAMPLE))
    dy = read.read_matrix(str(SAMPLE_DY)).values
    dx = core.backward(dy, core.forward(data.values)).dx
    dx[4, 2] *= 1.001
    mine = tmp_path / "mine.csv"
    np.savetxt(mine, dx, delimiter=",", header="RBC,WBC,PLT,Hb", comments="")
    run = bncli("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", mine, "-f", "json")
    assert run.code == 1
    worst = run.json["check"]["results"]["dx"]["worst"]
    assert worst == {"row": 4, "column": "PLT"}
    table = bncli("grad", SAMPLE, "--dy", SAMPLE_DY, "--against", mine, "-f", "table")
    assert table.code == 1 and "FAIL" in table.stdout and "PLT row 4" in table.stdout


def test_check_against_the_wrong_shape_is_an_input_error(bncli, tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"dw": [1.0, 2.0]}))
    run = bncli("grad", SAMPLE, "--against", mine)
    assert run.code == 2 and "dw" in run.stderr and not run.stdout


def test_check_verdict_goes_to_stderr_in_csv_mode(bncli):
    run = bncli("grad", SAMPLE, "--check")
    assert run.code == 0 and "PASS" in run.stderr and "PASS" not in run.stdout
    assert run.matrix().shape == (10, 4)


def test_check_json_keys(bncli):
    check = bncli("grad", SAMPLE, "--check", "--sweep", "--method", "complex", "-f", "json").json["check"]
    assert {"method", "step", "rtol", "passed", "results", "sweep"} <= set(check)
    assert check["method"] == "complex" and check["rtol"] is None and check["noise_multiple"] == 8
    assert all({"noise", "error_over_noise"} <= set(result) for result in check["results"].values())
    for result in check["results"].values():
        assert {"max_abs_error", "max_rel_error", "worst", "passed"} <= set(result)
        assert set(result["worst"]) >= {"row", "column"}
    assert check["results"]["dw"]["worst"]["row"] is None
    assert [p["step"] for p in check["sweep"] if not p["default"]] == [10.0**-e for e in range(1, 13)]


def test_float32_check_passes(bncli):
    for method in ("central", "complex"):
        run = bncli("grad", SAMPLE, "--check", "--dtype", "float32", "--method", method, "-f", "json")
        assert run.code == 0, run
        assert run.json["check"]["rtol"] is None and run.json["check"]["passed"]


def test_fast_check(bncli):
    run = bncli("grad", SAMPLE, "--fast", "--probes", "4", "--jacobian", "-f", "json")
    assert run.code == 0
    assert run.json["check"]["probes"] == 4
    assert run.json["check"]["results"]["dx"]["worst"]["row"] is None


def test_large_checks_switch_to_probes_and_say_so(bncli, monkeypatch):
    from bncli import commands

    monkeypatch.setattr(commands, "FULL_CHECK_LIMIT", 100)
    run = bncli("grad", SAMPLE, "--check", "-f", "json")
    assert run.code == 0 and run.json["check"]["probes"] == commands.DEFAULT_PROBES
    assert "random directional derivatives instead (--fast;" in run.stderr


def test_progress_bar_goes_to_a_terminal_stderr_only(monkeypatch, capsys):
    import io as stdio
    import sys

    from bncli.render import ProgressBar

    class Terminal(stdio.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(ProgressBar, "DELAY", 0.0)
    with ProgressBar("gradient check") as progress:
        for done in range(1, 4):
            progress(done, 3)
    assert "gradient check" in terminal.getvalue()
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(sys, "stderr", stdio.StringIO())  # not a terminal: no bar at all
    with ProgressBar("gradient check") as progress:
        assert progress is None


# ----------------------------------------------------------------- processes


def test_real_process_pipe_and_exit_codes(data_csv):
    piped = run_process("forward", input=data_csv.read_bytes())
    by_file = run_process("forward", data_csv)
    assert piped.returncode == by_file.returncode == 0
    assert piped.stdout == by_file.stdout and piped.stderr == b""
    bad = run_process("forward", input=b"a,b\n1,x\n")
    assert bad.returncode == 2 and bad.stdout == b""
    assert bad.stderr.decode().strip() == "bncli: error: <stdin>: line 2, column 2 ('b'): 'x' is not a number"


def test_real_process_usage_errors_are_one_line():
    run = run_process("forward", "--no-such-option")
    assert run.returncode == 2 and run.stdout == b""
    lines = run.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "--no-such-option" in lines[0]


def test_real_process_check_failure_exits_1(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("1,2,3,4\n" * 10)
    run = run_process("grad", SAMPLE, "--against", wrong)
    assert run.returncode == 1 and b"FAIL" in run.stderr


def test_real_process_head_closes_the_pipe_quietly(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "big.csv"
    np.savetxt(path, np.random.default_rng(0).standard_normal((200_000, 4)), delimiter=",")
    pipeline = subprocess.run(
        f"'{sys.executable}' -m bncli forward '{path}' | head -n 2",
        shell=True,
        capture_output=True,
        timeout=120,
    )
    assert len(pipeline.stdout.splitlines()) == 2
    assert pipeline.stderr == b""


@pytest.mark.parametrize("args", [["--version"], ["forward", "--help"]])
def test_python_dash_m(args):
    run = run_process(*args)
    assert run.returncode == 0 and run.stdout


def test_the_command_line_and_the_entry_point_share_signals_without_importing_each_other():
    import ast
    from pathlib import Path

    import bncli.cli
    import bncli.entry

    cli_sources = Path(bncli.cli.__file__).parent.glob("*.py")
    for source in cli_sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "entry" not in [node.module, *(alias.name for alias in node.names)], source.name
    entry_imports = [
        (node.module, [alias.name for alias in node.names])
        for node in ast.walk(ast.parse(Path(bncli.entry.__file__).read_text()))
        if isinstance(node, ast.ImportFrom)
    ]
    assert ("cli", ["main"]) in entry_imports  # the entry point starts the command line, lazily


# ---------------------------------------------- every command's input options reach its request

_EVERY_INPUT_OPTION = [
    *("x.csv", "-d", ";", "--no-header", "--index-column", "drop", "--eps", "0.5", "-w", "2", "-b", "1,3"),
    *("--dtype", "float32", "--running", "r.json", "--eval"),
]


@pytest.mark.parametrize(
    ("command", "extra", "expected"),
    [
        ("forward", ["--save-running", "s.json", "--momentum", "0.25"], {"save_running": "s.json", "momentum": 0.25}),
        ("grad", ["--save-running", "s.json", "--momentum", "0.25"], {"save_running": "s.json", "momentum": 0.25}),
        ("explain", [], {}),
    ],
)
def test_every_input_option_a_command_declares_reaches_its_request(bncli, monkeypatch, command, extra, expected):
    import importlib

    from bncli.options import InputOptions

    module = importlib.import_module(f"bncli.cli.{command}")
    requests = []
    monkeypatch.setattr(module, f"_{command}", lambda request, outputs: requests.append(request) or 0)
    run = bncli(command, *_EVERY_INPUT_OPTION, *extra)
    assert run.code == 0, run
    common = dict(file="x.csv", delimiter=";", header=False, index_column="drop", eps=0.5, weight="2", bias="1,3")
    common |= dict(dtype="float32", running="r.json", eval=True)
    assert requests[0].inputs == InputOptions(**common, **expected)
