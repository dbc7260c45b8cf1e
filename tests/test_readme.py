"""Every command the README shows runs as written, from the repository root, and prints what the README shows.

A README block fenced as ```console holds commands (lines starting with "$ ") each
followed by its output as a person sees it on a terminal 100 columns wide
(stdout and stderr together, colours off). The test runs each command with bash on
a pseudo-terminal of that size, in a scratch folder that looks like the
repository root (sample_data/ and examples/ linked in), and compares the text.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import on_terminal

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
WIDTH = 100
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def console_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, command, expected output) for every command in ```console blocks."""
    examples = []
    lines = text.splitlines()
    inside = False
    for number, line in enumerate(lines, start=1):
        if line.strip() == "```console":
            inside, command, expected, start = True, None, [], number
            continue
        if not inside:
            continue
        if line.strip() == "```" or line.startswith("$ "):
            if command is not None:
                examples.append((start, command, "\n".join(expected)))
            if line.strip() == "```":
                inside = False
                continue
            command, expected, start = line[2:], [], number
        elif command is not None:
            expected.append(line)
    return examples


EXAMPLES = console_blocks(README.read_text(encoding="utf-8"))


def normalized(text: str) -> str:
    """The text as the terminal leaves it: no colours, a carriage return starts its line over."""
    lines = ANSI.sub("", text.replace("\r\n", "\n")).split("\n")
    return "\n".join(line.split("\r")[-1].rstrip() for line in lines).strip("\n")


def run_on_terminal(command: str, cwd: Path) -> str:
    """What ``command`` shows on a WIDTH-column terminal, colours off, with this interpreter's bncli."""
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
        "TERM": "xterm-256color",
        "COLUMNS": str(WIDTH),
        "LINES": "50",
    }
    return on_terminal(["bash", "-c", command], WIDTH, env, cwd=cwd)


@pytest.fixture(scope="module")
def repository_like(tmp_path_factory) -> Path:
    """A scratch folder with the repository's sample data and examples, so commands may write files."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("sample_data", "examples"):
        if (ROOT / name).exists():
            os.symlink(ROOT / name, folder / name)
    return folder


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 10
    assert any(command.startswith("bncli grad --check") for _, command, _ in EXAMPLES)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("line, command, expected", EXAMPLES, ids=[f"README:{line}" for line, _, _ in EXAMPLES])
def test_readme_command_prints_what_the_readme_shows(line, command, expected, repository_like):
    for tool in ("jq", "cc"):
        if f"{tool} " in command and shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    for package in ("torch", "jax"):  # never bncli dependencies: installed by hand
        if f"--style {package} " in command and importlib.util.find_spec(package) is None:
            pytest.skip(f"needs {package}")
    if "--shards" in command and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    shown = normalized(run_on_terminal(command, repository_like))
    assert shown == normalized(expected), f"README line {line}: $ {command}\n--- shown ---\n{shown}"
