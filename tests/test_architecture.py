"""bncli's shape, enforced: module sizes, complexity, no import cycles, who may import what, and the
README's Design list, which must be the code's own import graph."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bncli"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 500
MAX_COMPLEXITY = 15
# Parts that compute: numpy and each other only.
NUMERIC = ("core", "powers", "numdiff", "gradcheck", "explain", "audit")
NUMERIC_MAY_IMPORT = {"errors", "options", *NUMERIC}
FOREIGN_FORBIDDEN_IN_NUMERIC = ("rich", "typer", "click", "polars", "matplotlib")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
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
            # ``from . import x`` imports the module x where x is one (a package's import of its
            # parents is implicit in every import, so it is no edge)
            named = {f"{module}.{alias.name}" for alias in node.names} if node.module is None else set()
            found.update({m for m in named if _is_module(m)} or {module})
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@cache
def module_graph() -> dict[str, frozenset[str]]:
    modules = {module_name(path): path for path in MODULES}
    return {name: frozenset(m for m in imports(path) if m in modules and m != name) for name, path in modules.items()}


def part(module: str) -> str:
    """The part of bncli a module belongs to, as the README's Design list names them."""
    names = module.split(".")[1:] or ["bncli"]
    if names[0] == "audit" and len(names) > 1:
        calling = ("targets", "worker", "styles", "protocol", "cmd", "interface", "processes", "shards")
        adapters = {"run": "audit.run", "shard_worker": "audit.run"} | dict.fromkeys(calling, "audit.targets")
        return adapters.get(names[1], "audit")
    return "audit.run" if names == ["audit"] else names[0]  # bncli.audit is bncli.audit(), the driver's


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, imported in module_graph().items():
        graph.setdefault(part(module), set()).update(part(m) for m in imported if part(m) != part(module))
    return graph


def cycle_through(graph, start: str) -> list[str] | None:
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


def readme_design() -> dict[str, set[str]]:
    """The README's Design list: ``part ──► a, b, c`` lines, a wrapped list continuing below."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Design", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    design: dict[str, set[str]] = {}
    for line in block.splitlines():
        match = re.match(r"(\S+)\s+──►((?: [\w.]+,)* [\w.]+)?(?:\s{2,}|$)", line)
        if match:
            design[match.group(1)] = {name.strip() for name in (match.group(2) or "").split(",") if name.strip()}
    return design


def ids(path: Path) -> str:
    return module_name(path)


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_every_module_is_under_500_lines(path):
    assert len(path.read_text().splitlines()) < MAX_LINES


def test_no_function_is_over_complexity_15():
    radon = pytest.importorskip("radon.complexity")
    over = [
        f"{module_name(path)}:{block.fullname} {block.complexity}"
        for path in MODULES
        for block in radon.cc_visit(path.read_text())
        if block.complexity > MAX_COMPLEXITY
    ]
    assert over == []


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_no_module_is_in_an_import_cycle_function_level_imports_included(path):
    assert cycle_through(module_graph(), module_name(path)) is None


@pytest.mark.parametrize("path", [p for p in MODULES if part(module_name(p)) in NUMERIC], ids=ids)
def test_numeric_parts_import_numpy_and_each_other_only(path):
    imported = imports(path)
    assert {part(m) for m in imported if m.startswith("bncli.")} <= NUMERIC_MAY_IMPORT
    assert not {m.split(".")[0] for m in imported} & set(FOREIGN_FORBIDDEN_IN_NUMERIC)


def test_only_the_audits_driver_imports_its_targets():
    importers = {
        m for m, imported in module_graph().items() if {"bncli.audit.targets", "bncli.audit.worker"} & imported
    }
    assert {part(m) for m in importers} <= {"audit.run", "audit.targets"}


def test_the_readme_design_is_the_code_import_graph():
    actual = {name: imported for name, imported in part_graph().items() if name not in ("__main__", "bncli")}
    assert readme_design() == actual


@pytest.mark.parametrize("style", ["native", "cs231n", "torch", "jax"])
def test_the_worker_of_every_style_starts_as_a_module(style):
    from bncli.audit.styles import worker_command

    source = (PACKAGE / "audit" / "targets.py").read_text()
    module = worker_command("file.py:f", style, "nc")[0]
    assert '"-m", *styles.worker_command(' in source and module.startswith("bncli.audit.")
    assert "__main__" in (PACKAGE / "audit" / f"{module.rpartition('.')[2]}.py").read_text()
