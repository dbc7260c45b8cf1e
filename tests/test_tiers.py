"""The test tiers: tests that start real processes are marked slow by conftest.py, the rest are not."""

from __future__ import annotations

import subprocess

import pytest
from conftest import _spawns_processes, run_process


def _through_a_helper():
    return run_process("--version")


def _in_a_lambda():
    return list(map(lambda argv: subprocess.run(argv), [["true"]]))


def _in_process(bncli):
    return bncli("--version")


@pytest.mark.parametrize(
    "function, spawns",
    [(_through_a_helper, True), (_in_a_lambda, True), (_in_process, False), (run_process, True)],
    ids=["helper", "lambda", "in-process", "run_process"],
)
def test_a_process_is_found_through_helpers_and_lambdas(function, spawns):
    assert _spawns_processes(function.__code__, function.__globals__, set()) is spawns


@pytest.mark.parametrize(
    "name, slow",
    [
        ("test_errors.py::test_bad_input[missing file]", True),  # run_process
        ("test_hostile_output.py::test_a_closed_pipe_ends_with_141", True),  # a shell pipeline
        ("test_hostile_output.py::test_columns_0_on_a_terminal_still_shows_the_table", True),  # a pseudo-terminal
        ("test_errors.py::test_empty_stdin", False),  # CliRunner
        ("test_errors.py::test_no_garbage_makes_a_traceback", False),  # Hypothesis around CliRunner
    ],
)
def test_real_process_tests_are_marked_slow(request, name, slow):
    items = {item.nodeid.removeprefix("tests/"): item for item in request.session.items}
    if name not in items:
        pytest.skip(f"{name} is not collected in this run")
    assert (items[name].get_closest_marker("slow") is not None) is slow
