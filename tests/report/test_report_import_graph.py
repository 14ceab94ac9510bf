"""The import graph of ``src/bitvert`` (every ``import``, lazy ones inside functions included) has no cycle
and follows the package order of docs/architecture.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "bitvert"


def layer_order(architecture_md: str) -> list[str]:
    """The packages / top-level modules of the architecture block, top (imported by all) first."""
    block = architecture_md.split("```", 2)[1]
    return [m.group(1) for line in block.splitlines() if (m := re.match(r"\s+(\w+)(?:/|\.py)\s", line))]


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """``{module: {bitvert modules it imports}}``; ``from pkg import name`` points at ``pkg.name`` when that
    is a module, else at ``pkg``."""
    base = package_dir.name
    mods: dict[str, Path] = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path

    def known(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {known(a.name) for a in node.names if a.name.split(".")[0] == base}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == base:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    edges.add(full if full in mods else known(node.module))
        edges.discard(mod)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def layer_violations(graph: dict[str, set[str]], order: list[str]) -> list[str]:
    """Imports of a package below the importer's in ``order`` (the root package and ``__main__`` are
    exempt: ``__main__`` is the entry point)."""
    def layer(mod: str) -> int | None:
        parts = mod.split(".")
        return order.index(parts[1]) if len(parts) > 1 and parts[1] in order else None

    bad = []
    for mod, edges in graph.items():
        lm = layer(mod)
        if lm is None:
            continue
        bad += [f"{mod} -> {e}" for e in sorted(edges) if (le := layer(e)) is not None and le > lm]
    return bad


def test_architecture_lists_every_package() -> None:
    order = layer_order((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert order[:2] == ["errors", "jsonutil"] and order[-2:] == ["report", "cli"]
    on_disk = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    on_disk |= {p.stem for p in SRC.glob("*.py") if not p.stem.startswith("__")}
    assert on_disk == set(order)


def test_no_import_cycle_anywhere_in_bitvert() -> None:
    assert find_cycle(module_graph(SRC)) is None


def test_imports_follow_the_architecture_order() -> None:
    order = layer_order((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert layer_violations(module_graph(SRC), order) == []


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    pkg = tmp_path / "bitvert"
    for sub in ("core", "report"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "report" / "study.py").write_text("from bitvert.report.render import write_report\n")
    (pkg / "report" / "render.py").write_text("def f():\n    from bitvert.report import study\n")
    (pkg / "core" / "bits.py").write_text("import bitvert.report.render\n")
    return pkg


def test_the_checks_catch_a_lazy_cycle_and_an_upward_import(toy: Path) -> None:
    graph = module_graph(toy)
    assert graph["bitvert.report.render"] == {"bitvert.report.study"}
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"bitvert.report.study", "bitvert.report.render"}
    assert layer_violations(graph, ["core", "report"]) == ["bitvert.core.bits -> bitvert.report.render"]
    (toy / "report" / "render.py").write_text("")
    assert find_cycle(module_graph(toy)) is None
