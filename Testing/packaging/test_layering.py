"""The shape of the library, kept as the restructure left it (issue 13): no import cycle, even through
imports inside functions; no module over 400 lines; every name of the public API importable from
DeepDenoiseLib itself, without loading torch until one is used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import DeepDenoiseLib
from Testing.support import REPO

LIBRARY = REPO / "DeepDenoiseLib"
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each library module and the library modules it imports, wherever the import stands."""
    modules = {module_name(path): path for path in LIBRARY.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("DeepDenoiseLib"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    graph[name].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in modules}
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_library_module_imports_itself_back_through_others() -> None:
    graph = import_graph()
    assert "DeepDenoiseLib.denoise.pipeline" in graph and graph["DeepDenoiseLib.slicer.logic"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_library_module_is_longer_than_four_hundred_lines() -> None:
    lengths = {module_name(path): len(path.read_text(encoding="utf-8").splitlines()) for path in LIBRARY.rglob("*.py")}
    assert {name: length for name, length in lengths.items() if length > MAX_MODULE_LINES} == {}


def test_every_name_of_the_public_api_imports_from_the_package_itself() -> None:
    for name in DeepDenoiseLib.__all__:
        assert getattr(DeepDenoiseLib, name) is not None, name


def test_importing_the_package_loads_no_torch() -> None:
    script = "import sys, DeepDenoiseLib; DeepDenoiseLib.DenoiseConfig; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    assert result.stdout.strip() == "False"
