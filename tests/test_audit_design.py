"""The audit's shape, enforced: module sizes, complexity, no import cycles, and who may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bncli.options import STYLES

PACKAGE = Path(__file__).resolve().parent.parent / "bncli"
AUDIT_MODULES = sorted(PACKAGE.glob("audit/*.py")) + [PACKAGE / "present" / "audit.py"]
# The audit's arithmetic: it may import numpy, the standard library, these and its own package.
NUMERIC = ("cases", "reference", "judge", "findings", "consistency")
NUMERIC_MAY_IMPORT = {"bncli.errors", "bncli.core", "bncli.numdiff", "bncli.options"}
MAX_LINES = 500
MAX_COMPLEXITY = 15


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function, with relative names resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            # ``from . import x`` imports the module x, where x is one (a package's import of its parents is
            # implicit in every import, so it is no edge)
            named = {f"{module}.{alias.name}" for alias in node.names} if node.module is None else set()
            found.update({m for m in named if _is_module(m)} or {module})
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def bncli_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A chain of imports from ``start`` back to itself, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, chain = stack.pop()
        for after in graph[node]:
            if after == start:
                return [*chain, start]
            if after not in seen:
                seen.add(after)
                stack.append((after, [*chain, after]))
    return None


@pytest.mark.parametrize("path", AUDIT_MODULES, ids=lambda path: module_name(path))
def test_audit_modules_are_under_500_lines(path):
    assert len(path.read_text().splitlines()) < MAX_LINES


@pytest.mark.parametrize("path", AUDIT_MODULES, ids=lambda path: module_name(path))
def test_no_audit_module_is_in_an_import_cycle_function_level_imports_included(path):
    graph = bncli_graph()
    assert cycle_through(graph, module_name(path)) is None


@pytest.mark.parametrize("name", NUMERIC)
def test_the_audit_arithmetic_imports_only_numpy_errors_core_numdiff_options_and_itself(name):
    imported = {m for m in imports(PACKAGE / "audit" / f"{name}.py") if m.split(".")[0] in ("bncli", "rich")}
    assert {m for m in imported if not m.startswith("bncli.audit.")} <= NUMERIC_MAY_IMPORT


def test_only_the_run_imports_the_targets_and_no_audit_module_imports_rich_or_output():
    for path in PACKAGE.rglob("*.py"):
        found = imports(path)
        if "bncli.audit.targets" in found:
            assert module_name(path) == "bncli.audit.run", path
        if path.parent.name == "audit":
            assert not {m for m in found if m.split(".")[0] == "rich" or m in ("bncli.output", "bncli.render")}, path


@pytest.mark.parametrize("style", STYLES)
def test_the_worker_starts_as_a_module(style):
    from bncli.audit.styles import worker_command

    source = (PACKAGE / "audit" / "targets.py").read_text()
    module = worker_command("file.py:f", style, "nc")[0]
    assert '"-m", *styles.worker_command(' in source and module.startswith("bncli.audit.")
    assert "__main__" in (PACKAGE / "audit" / f"{module.rpartition('.')[2]}.py").read_text()


def test_no_audit_function_is_over_complexity_15():
    radon = pytest.importorskip("radon.complexity")
    over = [
        f"{module_name(path)}.{block.name} {block.complexity}"
        for path in AUDIT_MODULES
        for block in radon.cc_visit(path.read_text())
        if block.complexity > MAX_COMPLEXITY
    ]
    assert over == []
