"""bncli audit --shards: a SyncBN-style target on a real gloo process group, one process per shard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_process

from bncli.audit.shards import parse_plans, split
from bncli.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
TARGETS = Path(__file__).resolve().parent / "shard_targets.py"
EXAMPLES = ROOT / "examples"


def audit(target: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_process("audit", f"{TARGETS}:{target}", "-f", "json", *args, timeout=timeout)


def ranks_alive(marker: str) -> list[int]:
    """The pids of shard workers whose command line names ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if "bncli.audit.shard_worker" in command and marker in command and state != "Z":
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------------ plans (no torch needed)


def test_a_plan_that_adds_up_to_the_rows_is_used_exactly():
    assert split((5, 11, 0, 3), 19) == (5, 11, 0, 3)


def test_otherwise_the_sizes_are_proportions_a_zero_stays_zero_and_every_other_shard_keeps_a_row():
    for rows in (3, 10, 16, 64, 4096):
        sizes = split((5, 11, 0, 3), rows)
        assert sum(sizes) == rows and sizes[2] == 0 and all(sizes[i] >= 1 for i in (0, 1, 3))
    assert split((1, 1, 1, 1), 16) == (4, 4, 4, 4)
    assert split((1, 100), 4) == (1, 3)


def test_fewer_rows_than_shards_leaves_the_last_shards_empty():
    assert split((1, 1, 1, 1), 2) == (1, 1, 0, 0)


def test_auto_is_even_uneven_empty_and_one_shard():
    plans = parse_plans("auto")
    assert (1, 1, 1, 1) in plans and (1,) in plans and any(0 in p for p in plans)
    assert any(len(set(p)) > 1 and 0 not in p for p in plans)


@pytest.mark.parametrize("text", ["5,x", "-1,2", "0,0", ""])
def test_a_plan_that_is_not_sizes_is_bad_usage(text):
    with pytest.raises(InputError):
        parse_plans(text)


def test_torch_missing_is_exit_2_naming_the_install():
    code = (
        "import sys; sys.modules['torch'] = None; from bncli.entry import main; "
        f"sys.argv = ['bncli', 'audit', {str(EXAMPLES / 'syncbn_torch.py')!r} + ':syncbn', '--shards', '2,2']; main()"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert ran.returncode == 2
    assert b"pip install torch" in ran.stderr


# ------------------------------------------------------------------ on a process group


@pytest.fixture
def torch_installed():
    pytest.importorskip("torch")


@pytest.mark.extras
def test_a_correct_syncbn_passes_on_uneven_shards_with_an_empty_one(torch_installed):
    ran = run_process("audit", f"{EXAMPLES / 'syncbn_torch.py'}:syncbn", "--shards", "5,11,0,3", "-f", "json")
    report = json.loads(ran.stdout)
    assert ran.returncode == 0, ran.stderr
    assert report["verdict"] == "PASS"
    assert report["plans"] == [{"plan": [5, 11, 0, 3], "verdict": "PASS", "dw_db": ["reduced"]}]
    for case in report["cases"]:
        assert sum(case["plan"]["split"]) == case["shape"][0] and case["plan"]["split"][2] == 0


@pytest.mark.extras
def test_a_plan_that_adds_up_to_the_rows_is_shown_as_used(torch_installed):
    report = audit("correct", "--shards", "4,8,0,4", "--case", "unit", "--dtype", "float64").stdout
    assert json.loads(report)["cases"][0]["plan"]["split"] == [4, 8, 0, 4]


@pytest.mark.extras
def test_equal_counts_is_right_on_even_shards_and_named_wrong_on_uneven_ones(torch_installed):
    ran = audit("equal_counts", "--shards", "auto")
    report = json.loads(ran.stdout)
    assert ran.returncode == 1
    verdicts = {tuple(p["plan"]): p["verdict"] for p in report["plans"]}
    assert verdicts[(1,)] == "PASS" and verdicts[(1, 2, 5)] == "WRONG"
    even = [c for c in report["cases"] if c["plan"]["plan"] == [1, 1, 1, 1] and len(set(c["plan"]["split"])) == 1]
    assert even and all(c["verdict"] == "PASS" for c in even)
    assert any("right on even shards, wrong on uneven ones" in line for line in report["diagnosis"])
    assert not any("all-reduce both" in line for line in report["diagnosis"])


@pytest.mark.extras
def test_a_backward_without_the_all_reduce_is_named(torch_installed):
    ran = audit("no_backward_all_reduce", "--shards", "auto")
    report = json.loads(ran.stdout)
    assert ran.returncode == 1
    assert any("Σdy and Σdy·x̂" in line for line in report["diagnosis"])
    assert not any("right on even shards" in line for line in report["diagnosis"])
    assert {p["verdict"] for p in report["plans"] if p["plan"] == [1]} == {"PASS"}


@pytest.mark.extras
def test_a_batch_norm_of_each_ranks_own_shard_is_named(torch_installed):
    """No all-reduce at all: y is wrong too, so the backward's finding (y right, dx wrong) cannot fire."""
    ran = audit("own_shard_only", "--shards", "2,3")
    report = json.loads(ran.stdout)
    assert ran.returncode == 1
    named = [line for line in report["diagnosis"] if "own shard" in line]
    assert len(named) == 1 and "all-reduce" in named[0], report["diagnosis"]
    assert "plan 2,3" in named[0]


@pytest.mark.extras
def test_a_correct_syncbn_is_not_taken_for_a_batch_norm_of_its_own_shard(torch_installed):
    ran = audit("equal_counts", "--shards", "1,2,5")
    report = json.loads(ran.stdout)
    assert not any("own shard" in line for line in report["diagnosis"]), report["diagnosis"]


@pytest.mark.extras
def test_a_function_that_requires_running_statistics_is_a_usage_error_under_shards(torch_installed):
    ran = audit("requires_running_statistics", "--shards", "2,3")
    assert ran.returncode == 2, ran.stderr.decode()
    lines = ran.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "running_mean, running_var" in lines[0] and "--shards" in lines[0], lines[0]
    assert not ran.stdout


@pytest.mark.extras
def test_dw_db_as_local_sums_pass_and_the_report_says_so(torch_installed):
    ran = audit("local_dw_db", "--shards", "3,1,2", "--case", "unit", "--case", "blood")
    report = json.loads(ran.stdout)
    assert ran.returncode == 0, ran.stdout
    assert report["plans"][0]["dw_db"] == ["local sums"]


@pytest.mark.extras
def test_a_rank_whose_dw_db_disagree_with_the_others_is_named(torch_installed):
    report = json.loads(audit("mixed_dw_db", "--shards", "2,2,2", "--case", "unit").stdout)
    flagged = "rank 1 returned dw, db as local sums while the others returned reduced"
    assert any(flagged in line for line in report["diagnosis"])


@pytest.mark.extras
def test_a_rank_that_raises_is_an_error_naming_it_and_the_next_cases_still_run(torch_installed):
    ran = audit("rank_2_raises", "--shards", "1,1,1", "--case", "unit", "--case", "blood", "--dtype", "float64")
    report = json.loads(ran.stdout)
    assert ran.returncode == 1
    assert [c["verdict"] for c in report["cases"]] == ["ERROR", "ERROR"]
    assert all("rank 2 raised ValueError: rank two refuses" in c["error"] for c in report["cases"])


@pytest.mark.extras
def test_a_rank_that_exits_is_an_error_with_its_last_stderr_line(torch_installed):
    report = json.loads(audit("rank_1_exits", "--shards", "1,1", "--case", "unit", "--dtype", "float64").stdout)
    error = report["cases"][0]["error"]
    assert "rank 1 ended the process (exit status 3)" in error and "goodbye from rank 1" in error


@pytest.mark.extras
def test_ranks_left_waiting_in_a_collective_end_at_the_timeout_all_killed(torch_installed, tmp_path):
    target = tmp_path / "hangs.py"
    target.write_text(TARGETS.read_text())
    started = time.monotonic()
    ran = run_process(
        "audit", f"{target}:rank_1_skips_the_collective", "--shards", "1,1,1", "--case", "unit",
        "--dtype", "float64", "--timeout", "3", "-f", "json", timeout=120,
    )  # fmt: skip
    report = json.loads(ran.stdout)
    assert ran.returncode == 1
    assert "timed out after 3 s: ranks 0, 2 did not return" in report["cases"][0]["error"]
    assert time.monotonic() - started < 60
    assert ranks_alive(str(target)) == []


@pytest.mark.extras
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_no_rank_outlives_an_interrupted_audit(torch_installed, tmp_path, signum):
    target = tmp_path / f"sleeps_{signum}.py"
    target.write_text(TARGETS.read_text())
    process = subprocess.Popen(
        [sys.executable, "-m", "bncli", "audit", f"{target}:sleeps", "--shards", "1,1,1", "-f", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(ranks_alive(str(target))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(ranks_alive(str(target))) == 3
    time.sleep(1.0)  # the ranks are inside the target
    process.send_signal(signum)
    process.communicate(timeout=30)
    assert process.returncode != 0
    time.sleep(0.5)
    assert ranks_alive(str(target)) == []


@pytest.mark.extras
def test_a_port_in_use_does_not_break_the_run(torch_installed):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 29500))  # torch.distributed's default port
        except OSError:
            pass  # in use already: all the better
        taken.listen()
        ran = audit("correct", "--shards", "2,1", "--case", "unit")
    assert ran.returncode == 0, ran.stdout


@pytest.mark.extras
def test_under_torchrun_each_rank_runs_the_worker_and_rank_0_reports(torch_installed):
    ran = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "bncli.audit.shard_worker", f"{TARGETS}:correct", "--shards", "3,1",
            "--case", "unit", "--case", "blood", "--json",
        ],
        capture_output=True, timeout=300, env={**os.environ, "GLOO_SOCKET_IFNAME": "lo"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    report = json.loads(ran.stdout)
    assert report["verdict"] == "PASS"
    assert [c["plan"]["split"] for c in report["cases"] if c["dtype"] == "float64"] == [[12, 4], [8, 2]]


@pytest.mark.extras
def test_the_python_api_takes_a_plan_as_a_list_of_sizes(torch_installed):
    """Found by a hostile run: shards=[3, 0, 5] raised AttributeError ('list' object has no attribute 'strip')."""
    import bncli

    report = bncli.audit(str(ROOT / "examples" / "syncbn_torch.py") + ":syncbn", cases=["unit"], dtypes=["float64"],
                         shards=[3, 0, 5])  # fmt: skip
    assert report.verdict == "PASS"
