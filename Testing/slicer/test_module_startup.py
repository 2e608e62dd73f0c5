"""A fresh Extensions Manager install has no PyTorch (the PyTorch extension installs it on first use)
and may lack the packages of requirements.txt (DeepDenoise installs them on the first Apply): the
module must load, register its sample and list its models without them, and without Slicer's main
process importing torch or SimpleITK at start-up.

Each check runs slicer_startup_probe.py in a Python of its own, with those packages hidden from the
import system as if they were not installed; the DeepDenoiseLib modules to import are read from
DeepDenoise.py's own imports, so that a new import is covered without touching this file."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from DeepDenoiseLib.slicer.support import read_requirements
from Testing.support import REPO

MODULE_PATH = REPO / "DeepDenoise" / "DeepDenoise.py"
REQUIREMENTS = REPO / "DeepDenoise" / "Resources" / "requirements.txt"
# torch: not there before the first Apply, gigabytes once it is; SimpleITK: Slicer's, but heavy and only
# needed when a run reads or writes files; requirements.txt: not there before the first Apply.
HIDDEN = sorted({"torch", "SimpleITK"} | {re.match(r"[A-Za-z0-9._-]+", line).group(0) for line in read_requirements(REQUIREMENTS)})
# Functions of DeepDenoise.py that run while Slicer starts (the module's class and the startupCompleted
# callback): their imports count as start-up imports too.
START_UP_FUNCTIONS = {"__init__", "registerSampleData"}


def start_up_library_imports() -> list[str]:
    """The DeepDenoiseLib modules DeepDenoise.py imports at start-up: its module-level imports (also
    under ``if`` and in class bodies) and those of START_UP_FUNCTIONS of the module and its module class."""
    tree = ast.parse(MODULE_PATH.read_text(encoding="utf-8"))
    names: set[str] = set()

    def visit(node: ast.AST, in_class: str = "") -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if child.name in START_UP_FUNCTIONS and in_class in ("", "DeepDenoise"):
                    visit(child, in_class)
                continue
            if isinstance(child, ast.ClassDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.ImportFrom) and (child.module or "").partition(".")[0] == "DeepDenoiseLib":
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    is_module = (REPO / Path(*submodule.split("."))).with_suffix(".py").is_file()
                    names.add(submodule if is_module else child.module)
            elif isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names if alias.name.partition(".")[0] == "DeepDenoiseLib")
            visit(child, in_class)

    visit(tree)
    return sorted(names)


def probe(*arguments: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "Testing.support.slicer_startup_probe", ",".join(HIDDEN), *arguments],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_start_up_imports_are_read_from_the_module():
    imports = start_up_library_imports()
    assert {
        "DeepDenoiseLib.slicer.support", "DeepDenoiseLib.slicer.logic", "DeepDenoiseLib.slicer.parameter_node",
        "DeepDenoiseLib.slicer.superres_panel", "DeepDenoiseLib.slicer.sequences",
    } <= set(imports)  # fmt: skip
    assert {"torch", "SimpleITK", "scipy", "safetensors"} <= set(HIDDEN)


def test_every_module_of_the_slicer_side_loads_without_torch_or_simpleitk():
    """DeepDenoiseLib.slicer as a whole, not only what the module imports today."""
    modules = sorted(
        f"DeepDenoiseLib.slicer.{path.stem}" for path in (REPO / "DeepDenoiseLib" / "slicer").glob("*.py") if path.stem != "__init__"
    )
    report = probe("libraries", *modules)
    assert report["errors"] == {} and report["attempts"] == [] and report["hidden_loaded"] == []
    assert set(modules) <= set(report["library_modules"])


def test_every_library_module_the_slicer_module_imports_loads_without_torch_or_simpleitk():
    report = probe("libraries", *start_up_library_imports())
    assert report["errors"] == {}
    assert report["attempts"] == [], f"tried to import {sorted(set(report['attempts']))} at start-up"
    assert report["hidden_loaded"] == []
    assert set(start_up_library_imports()) <= set(report["library_modules"])


def test_the_probe_catches_a_module_that_needs_torch():
    """What the Slicer module imported before: superres_panel took one constant from superres, which
    imports torch."""
    report = probe("libraries", "DeepDenoiseLib.superres.pipeline")
    assert "torch" in report["attempts"] and "No module named 'torch'" in report["errors"]["DeepDenoiseLib.superres.pipeline"]


def test_the_module_starts_registers_its_sample_and_lists_models_without_torch():
    pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install slicer-core)")
    report = probe("module")
    assert report["errors"] == {}
    assert report["start_up_attempts"] == [], f"tried to import {sorted(set(report['start_up_attempts']))} at start-up"
    assert report["hidden_loaded"] == []
    assert report["registered"] == ["DeepDenoise", "DeepDenoiseNoisyBrain"] and report["models"] == []
    assert set(start_up_library_imports()) <= set(report["library_modules"])
    # What the first Apply then offers to install: found without importing anything.
    assert report["missing_for_the_worker"][0] == "torch" and len(report["missing_for_the_worker"]) == 1 + len(
        read_requirements(REQUIREMENTS)
    )
