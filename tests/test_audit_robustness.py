"""The audit survives whatever a target does: results it cannot read, outputs without end, stray
children, odd timeouts, shadowing modules, broken exceptions, process pools, slow imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import needs_proc

import bncli
from bncli.audit import protocol

TEXTBOOK = """
import numpy as np

def textbook(x, w, b, eps, dy):
    m = x.mean(0); d = x - m; v = (d * d).mean(0); s = d / np.sqrt(v + eps)
    return {"y": w * s + b}
"""

# A parent's own peak memory: bncli run in this wrapper, which prints its peak resident size (KiB) last.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would count the test process's size.
PEAK_WRAPPER = (
    "import runpy, sys\n"
    "sys.argv = ['bncli', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('bncli', run_name='__main__')\n"
    "finally:\n"
    "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "    print(f'peak {status}', file=sys.stderr)\n"
)


def audit(*args, cwd=None, timeout: float = 120, peak: bool = False) -> subprocess.CompletedProcess:
    """``bncli audit ARGS`` as a real process; with ``peak`` bncli's own peak memory ends its stderr.
    Started with -P, as the installed ``bncli`` command is: the current folder is not first on sys.path."""
    start = ["-P", "-c", PEAK_WRAPPER] if peak else ["-P", "-m", "bncli"]
    return subprocess.run(
        [sys.executable, *start, "audit", *map(str, args)], capture_output=True, cwd=cwd, timeout=timeout
    )


def report_of(run: subprocess.CompletedProcess) -> dict:
    assert b"Traceback" not in run.stderr, run.stderr.decode()[-3000:]
    return json.loads(run.stdout)


def errors_of(report: dict) -> dict[str, str]:
    return {case["name"]: case["error"] for case in report["cases"] if case["verdict"] == "ERROR"}


def peak_mib(run: subprocess.CompletedProcess) -> float:
    """The peak that :data:`PEAK_WRAPPER` printed, in MiB."""
    return int(run.stderr.decode().rstrip().rsplit("peak ", 1)[1]) / 1024


def target_file(folder: Path, source: str, name: str = "target.py") -> Path:
    path = folder / name
    path.write_text(TEXTBOOK + textwrap.dedent(source))
    return path


def program(folder: Path, body: str) -> str:
    """A --cmd program: a Python script given the case folder as ``folder`` and its parameters as ``params``."""
    script = folder / "program.py"
    script.write_text("import json, os, sys\nfolder = sys.argv[1]\nparams = json.load(open(folder + '/params.json'))\n")
    with script.open("a") as handle:
        handle.write(textwrap.dedent(body))
    return f"{sys.executable} {script}"


ONE_CASE = ("--case", "unit", "--dtype", "float64", "-f", "json")
TWO_CASES = ("--case", "unit", "--case", "two_rows", "--dtype", "float64", "-f", "json")


# ------------------------------------------------- 3. results bncli cannot unpickle


def test_extra_keys_holding_the_targets_own_objects_are_ignored(tmp_path):
    path = target_file(
        tmp_path,
        """
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Cache:
            mean: object

        class Kept(np.ndarray):
            pass

        def with_cache(x, w, b, eps, dy):
            out = textbook(x, w, b, eps, dy)
            return {"y": out["y"].view(Kept), "cache": Cache(x.mean(0)), Cache(1): "a key of its own class"}
        """,
    )
    run = audit(f"{path}:with_cache", *ONE_CASE, "--timeout", "20", timeout=60)
    report = report_of(run)
    assert report["cases"][0]["quantities"]["y"]["verdict"] == "PASS", report


def test_a_result_of_the_targets_own_class_is_one_error_line(tmp_path):
    path = target_file(
        tmp_path,
        """
        class Layer:
            def __init__(self, x, w, b, eps, dy):
                self.y = textbook(x, w, b, eps, dy)["y"]
        """,
    )
    run = audit(f"{path}:Layer", *TWO_CASES, "--timeout", "20", timeout=60)
    errors = errors_of(report_of(run))
    assert run.returncode == 1 and set(errors) == {"unit", "two_rows"}
    assert "returned a Layer; expected a mapping or a tuple" in errors["unit"] and "\n" not in errors["unit"]


def test_a_reply_that_cannot_be_read_is_a_target_error():
    read, write = os.pipe()
    os.write(write, protocol.HEADER.pack(12) + b"not a reply!")
    os.close(write)
    with open(read, "rb", buffering=0) as stream, pytest.raises(protocol.UnreadableReply):
        protocol.receive_reply(stream, deadline=None, limit=1000)


def test_a_reply_longer_than_its_limit_is_refused_before_it_is_read():
    read, write = os.pipe()
    os.write(write, protocol.HEADER.pack(10**15))
    os.close(write)
    with open(read, "rb", buffering=0) as stream, pytest.raises(protocol.UnreadableReply, match="more than"):
        protocol.receive_reply(stream, deadline=None, limit=1000)


# ------------------------------------------------- 4, 5. outputs that do not end


def test_a_fifo_left_as_an_output_is_an_error_and_the_audit_goes_on(tmp_path):
    cmd = program(tmp_path, "os.mkfifo(folder + '/y.npy')\n")
    start = time.monotonic()
    run = audit("--cmd", cmd, *TWO_CASES, "--timeout", "5", timeout=60)
    errors = errors_of(report_of(run))
    assert time.monotonic() - start < 30
    assert set(errors) == {"unit", "two_rows"} and "y.npy is a FIFO, not a regular file" in errors["unit"]


@needs_proc
@pytest.mark.parametrize(
    "body, message",
    [
        ("os.symlink('/dev/zero', folder + '/y.csv')\n", "y.csv is a character device, not a regular file"),
        (
            "import numpy as np\n"
            "header = {'descr': '<f8', 'fortran_order': False, 'shape': (10**15,)}\n"
            "with open(folder + '/y.npy', 'wb') as f:\n"
            "    np.lib.format.write_array_header_1_0(f, header); f.write(b'0' * 800)\n",
            "y.npy: the header claims 1000000000000000 values; expected at most",
        ),
        ("open(folder + '/dx.npy', 'wb').truncate(10 * 2**30)\n", "dx.npy holds 10737418240 bytes"),
    ],
    ids=["dev-zero", "npy-header", "sparse-10GB"],
)
def test_outputs_are_read_within_the_cases_expected_size(tmp_path, body, message):
    cmd = program(tmp_path, body)
    run = audit("--cmd", cmd, *TWO_CASES, timeout=60, peak=True)
    errors = errors_of(json.loads(run.stdout))
    assert set(errors) == {"unit", "two_rows"} and message in errors["unit"], errors
    assert peak_mib(run) < 300


@needs_proc
def test_a_huge_return_value_is_an_error_without_the_parent_holding_it(tmp_path):
    path = target_file(
        tmp_path,
        """
        def huge(x, w, b, eps, dy):
            return {"y": np.zeros(64 * 2**20)}  # 512 MB
        """,
    )
    run = audit(f"{path}:huge", *ONE_CASE, "--timeout", "60", timeout=120, peak=True)
    errors = errors_of(json.loads(run.stdout))
    assert "y has 67108864 values; expected" in errors["unit"], errors
    assert peak_mib(run) < 300


# ------------------------------------------------- 6. --cmd stderr


@needs_proc
def test_only_the_tail_of_a_programs_stderr_is_kept(tmp_path):
    report = tmp_path / "stderr-kind"
    cmd = program(
        tmp_path,
        f"""
        import stat
        chunk = b"noise " * 10000 + b"\\n"
        for _ in range(5000):
            os.write(2, chunk)  # 300 MB
        kind = os.fstat(2)
        open({str(report)!r}, "w").write(f"{{stat.S_ISREG(kind.st_mode)}} {{kind.st_size}}")
        sys.exit("the last line")
        """,
    )
    run = audit("--cmd", cmd, *ONE_CASE, timeout=120, peak=True)
    errors = errors_of(json.loads(run.stdout))
    assert errors["unit"].endswith("exit status 1: the last line"), errors
    regular, size = report.read_text().split()
    assert not (regular == "True" and int(size) > 2**20), "the program's stderr is kept whole in a file"
    assert peak_mib(run) < 200


# ------------------------------------------------- 7. children of a worker that ends


def test_children_of_a_target_that_exits_end_with_it(tmp_path):
    path = target_file(
        tmp_path,
        """
        import os, subprocess

        def leaves_a_child(x, w, b, eps, dy):
            subprocess.Popen(["sleep", "100"])  # holds bncli's stderr
            os._exit(3)
        """,
    )
    start = time.monotonic()
    run = audit(f"{path}:leaves_a_child", *ONE_CASE, timeout=60)
    assert time.monotonic() - start < 30
    assert "ended the process (exit status 3)" in errors_of(report_of(run))["unit"]


# ------------------------------------------------- 8. a timeout beyond the clock's range


@pytest.mark.parametrize("kind", ["file", "cmd"])
def test_a_timeout_of_1e10_seconds_is_a_timeout_that_never_comes(tmp_path, kind):
    path = target_file(tmp_path, "")
    if kind == "file":
        target = [f"{path}:textbook"]
    else:
        copies_x = "import numpy as np\nnp.save(folder + '/y.npy', np.load(folder + '/x.npy'))\n"
        target = ["--cmd", program(tmp_path, copies_x)]
    run = audit(*target, *ONE_CASE, "--timeout", "1e10", timeout=60)
    report = report_of(run)
    assert report["cases"][0]["verdict"] in ("PASS", "WRONG"), report


def test_a_function_with_a_timeout_of_1e10_seconds_runs():
    namespace: dict = {}
    exec(TEXTBOOK, namespace)
    assert bncli.audit(namespace["textbook"], cases=["unit"], dtypes="float64", timeout=1e10).cases[0].verdict == "PASS"


# ------------------------------------------------- 9. modules in the current folder


def test_modules_in_the_current_folder_do_not_shadow_the_workers(tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    for name in ("random", "typing", "types"):
        (here / f"{name}.py").write_text("raise RuntimeError('the folder shadows the standard library')\n")
    path = target_file(tmp_path, "")
    run = audit(f"{path}:textbook", *ONE_CASE, cwd=here, timeout=60)
    assert report_of(run)["cases"][0]["quantities"]["y"]["verdict"] == "PASS"


# ------------------------------------------------- 10. exceptions that cannot be shown

BROKEN_STR = """
class Broken(Exception):
    def __str__(self):
        raise ValueError("no text")

def raises_broken(x, w, b, eps, dy):
    raise Broken("the reason")
"""


def test_an_exception_with_a_broken_str_keeps_its_reason(tmp_path):
    path = target_file(tmp_path, BROKEN_STR)
    run = audit(f"{path}:raises_broken", *ONE_CASE, timeout=60)
    assert "raised Broken: the reason" in errors_of(report_of(run))["unit"]


def test_an_exception_with_a_broken_str_keeps_its_reason_in_process():
    namespace: dict = {}
    exec(TEXTBOOK + BROKEN_STR, namespace)
    report = bncli.audit(namespace["raises_broken"], cases=["unit"], dtypes="float64")
    assert "raised Broken: the reason" in report.cases[0].error


# ------------------------------------------------- 11. process pools


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_target_using_a_process_pool_passes(tmp_path, method):
    path = target_file(
        tmp_path,
        f"""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _pool = None

        def _moments(column):
            return column.mean(), column.var()

        def pooled(x, w, b, eps, dy):
            global _pool
            if _pool is None:
                _pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context({method!r}))
            m, v = map(np.array, zip(*_pool.map(_moments, list(x.T))))
            return {{"y": w * (x - m) / np.sqrt(v + eps) + b}}
        """,
        name="pooled_bn.py",
    )
    run = audit(f"{path}:pooled", *ONE_CASE, "--timeout", "30", timeout=120)
    assert report_of(run)["cases"][0]["quantities"]["y"]["verdict"] == "PASS"


# ------------------------------------------------- 12. torch's own messages


def test_an_object_numpy_cannot_convert_keeps_its_message(tmp_path):
    path = target_file(
        tmp_path,
        """
        class OnDevice:
            def __array__(self, dtype=None, copy=None):
                raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")

        def on_device(x, w, b, eps, dy):
            return {"y": OnDevice()}
        """,
    )
    run = audit(f"{path}:on_device", *ONE_CASE, timeout=60)
    assert "y is not an array: can't convert cuda:0 device type tensor to numpy" in errors_of(report_of(run))["unit"]


def test_a_torch_tensor_that_needs_detach_keeps_torchs_message(tmp_path):
    pytest.importorskip("torch")
    path = target_file(
        tmp_path,
        """
        import torch

        def attached(x, w, b, eps, dy):
            return {"y": torch.from_numpy(textbook(x, w, b, eps, dy)["y"]).requires_grad_(True) * 1}
        """,
    )
    run = audit(f"{path}:attached", *ONE_CASE, timeout=120)
    assert "Use tensor.detach().numpy() instead" in errors_of(report_of(run))["unit"]


# ------------------------------------------------- 13. slow imports


def test_an_import_slower_than_the_timeout_is_named_as_the_import(tmp_path):
    path = target_file(tmp_path, "import time\ntime.sleep(30)\n")
    start = time.monotonic()
    run = audit(f"{path}:textbook", *ONE_CASE, "--timeout", "1", timeout=60)
    assert time.monotonic() - start < 20
    assert run.returncode == 2
    assert "importing it took longer than --timeout 1 s" in run.stderr.decode()


# ------------------------------------------------- 23. the in-place note


def test_the_in_place_note_is_given_once(tmp_path):
    path = target_file(
        tmp_path,
        """
        def in_place(x, w, b, eps, dy):
            x -= x.mean(0)
            return textbook(x, w, b, eps, dy)
        """,
    )
    run = audit(f"{path}:in_place", "--case", "unit", "--case", "two_rows", "--case", "blood", "-f", "json")
    notes = [line for line in report_of(run)["diagnosis"] if "in place" in line]
    assert len(notes) == 1 and "first seen on unit/float64" in notes[0], notes


def test_a_slow_import_of_a_restarted_worker_is_named_and_the_audit_goes_on(tmp_path):
    marker = tmp_path / "imported-once"
    path = target_file(
        tmp_path,
        f"""
        import os, time
        if os.path.exists({str(marker)!r}):
            time.sleep(30)  # every import after the first is slow
        open({str(marker)!r}, "w").close()

        def exits(x, w, b, eps, dy):
            os._exit(0)
        """,
    )
    start = time.monotonic()
    run = audit(f"{path}:exits", *TWO_CASES, "--timeout", "2", timeout=60)
    errors = errors_of(report_of(run))
    assert time.monotonic() - start < 20
    assert "ended the process (exit status 0)" in errors["unit"]
    assert errors["two_rows"].endswith("importing it again took longer than --timeout 2 s")


def test_a_worker_whose_thread_holds_the_interpreter_times_out(tmp_path):
    path = target_file(
        tmp_path,
        """
        import re, threading

        def hold_the_interpreter():
            re.match(r"(a+)+$", "a" * 64 + "b")

        def then_holds(x, w, b, eps, dy):
            threading.Thread(target=hold_the_interpreter, daemon=True).start()
            return textbook(x, w, b, eps, dy)
        """,
    )
    start = time.monotonic()
    run = audit(f"{path}:then_holds", *TWO_CASES, "--timeout", "2", timeout=60)
    assert time.monotonic() - start < 30
    assert errors_of(report_of(run)) == {
        name: f"case {name} (float64): timed out after 2 s" for name in ("unit", "two_rows")
    }
