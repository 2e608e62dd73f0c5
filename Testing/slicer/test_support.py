"""DeepDenoiseLib.slicer.support: what the Slicer module decides without Qt (the minimum Slicer
version, the sample's registration for each Slicer version, the worker's missing packages, the
self-test's skip, Reload forgetting the library), checked against what Slicer's own source takes
(slicer_api_by_version.json) and, where the slicer-core wheel is installed, Slicer's own checksum code."""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import subprocess
import sys
import textwrap
import types

import pytest

from DeepDenoiseLib.core.sample_data import NOISY_CHECKSUM, sample_paths
from DeepDenoiseLib.slicer import support as slicer_support
from Testing.support import REPO, slicer_api_by_version

SLICER_API = slicer_api_by_version()
VERSIONS = sorted(SLICER_API, key=lambda version: tuple(int(part) for part in version.split(".")))


def test_the_minimum_slicer_version_is_checked_at_its_boundary():
    assert slicer_support.MINIMUM_SLICER_VERSION == (5, 6)
    for major, minor in [(5, 6), (5, 8), (5, 13), (6, 0)]:
        assert slicer_support.slicer_version_problem(major, minor) is None
    for major, minor in [(5, 4), (5, 2), (4, 13)]:
        problem = slicer_support.slicer_version_problem(major, minor)
        assert problem.startswith(f"DeepDenoise needs 3D Slicer 5.6 or newer; this is Slicer {major}.{minor}.")
        assert "https://download.slicer.org" in problem and "Extensions Manager" in problem


def test_the_minimum_version_is_one_whose_slicer_api_is_recorded_and_stated_where_users_and_builders_look():
    minimum = slicer_support.minimum_slicer_version_text()
    assert minimum == VERSIONS[0], "record the minimum version's API in slicer_api_by_version.json"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(f"Slicer {minimum} or newer") == 1, "the README states the minimum once"
    assert not re.search(r"Slicer 5\.\d+ or newer", readme.replace(f"Slicer {minimum} or newer", ""))
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert f"find_package(Slicer {minimum} REQUIRED)" in cmake  # a build against an older Slicer stops at configure


def test_every_module_and_library_file_parses_as_the_python_of_the_minimum_slicer():
    """Slicer 5.6 and 5.8 ship Python 3.9: none of the newer syntax that ``ast`` can tell apart (match
    statements, ``except*``, new generic syntax) in what they would run."""
    major, minor = (int(part) for part in SLICER_API[VERSIONS[0]]["python"].split("."))
    for path in [REPO / "DeepDenoise" / "DeepDenoise.py", *sorted((REPO / "DeepDenoiseLib").rglob("*.py"))]:
        ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(major, minor))
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(major, minor))


def test_slicer_module_api_is_slicers_own_or_stand_ins_that_only_report(monkeypatch, caplog):
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: f"translated {text}"
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.Choice, wrapper.WithinRange, wrapper.parameterNodeWrapper = "Choice", "WithinRange", "wrapper"
    monkeypatch.setitem(sys.modules, "slicer", types.ModuleType("slicer"))
    monkeypatch.setitem(sys.modules, "slicer.i18n", i18n)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    tr, choice, within_range, parameter_node_wrapper = slicer_support.slicer_module_api(None)
    assert (tr("x"), choice, within_range, parameter_node_wrapper) == ("translated x", "Choice", "WithinRange", "wrapper")
    # Too old: neither module is imported (Slicer 5.2 lacks both), the problem is logged.
    monkeypatch.setitem(sys.modules, "slicer.i18n", None)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", None)
    problem = slicer_support.slicer_version_problem(5, 2)
    tr, choice, within_range, parameter_node_wrapper = slicer_support.slicer_module_api(problem)
    assert problem in caplog.text
    assert tr("Apply") == "Apply" and parameter_node_wrapper(int) is int
    assert choice(["a", "b"]) == (["a", "b"],) and within_range(0, 1) == (0, 1)


def test_the_sample_checksum_is_the_shipped_files_and_in_the_form_sample_data_takes():
    algorithm, digest = NOISY_CHECKSUM.split(":")
    assert algorithm == "SHA256" and digest == hashlib.sha256(sample_paths().noisy.read_bytes()).hexdigest()
    slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel for slicer.util")
    assert slicer.util.extractAlgoAndDigest(NOISY_CHECKSUM) == (algorithm, digest)
    assert slicer.util.computeChecksum(algorithm, str(sample_paths().noisy)) == digest


def test_the_cached_file_name_is_ours_and_changes_with_the_sample():
    name = slicer_support.sample_file_name(sample_paths().noisy, NOISY_CHECKSUM)
    assert name == f"DeepDenoiseNoisyBrain-{NOISY_CHECKSUM[7:19]}.nii.gz"
    assert slicer_support.sample_file_name("/x/sample.nii.gz", "SHA256:" + "0" * 64) != name


@pytest.mark.parametrize("version", VERSIONS)
def test_sample_arguments_fit_each_slicer_versions_sample_data(version):
    accepted = SLICER_API[version]["register_custom_sample_data_source"]
    thumbnail = REPO / "DeepDenoise" / "Resources" / "Icons" / "DeepDenoiseNoisyBrain.png"
    arguments = slicer_support.sample_source_arguments(accepted, sample_paths().noisy, NOISY_CHECKSUM, thumbnail)
    assert set(arguments) <= set(accepted)
    assert arguments["loadFileTypes" if "loadFileTypes" in accepted else "loadFileType"] == "VolumeFile"
    assert not {"loadFileTypes", "loadFileType"} <= set(arguments), "5.8 refuses both at once"
    assert arguments["uris"] == sample_paths().noisy.resolve().as_uri() and arguments["checksums"] == NOISY_CHECKSUM
    with pytest.raises(TypeError, match="does not take checksums"):
        slicer_support.sample_source_arguments([a for a in accepted if a != "checksums"], sample_paths().noisy, NOISY_CHECKSUM, thumbnail)


@pytest.mark.parametrize("version", VERSIONS)
def test_register_sample_calls_each_versions_sample_data_as_it_takes_it(version):
    from Testing.support import slicer_stand_ins

    api = SLICER_API[version]
    sample_data, registered = slicer_stand_ins.stand_in_sample_data(
        api["register_custom_sample_data_source"], api["register_custom_sample_data_category"]
    )
    slicer_support.register_sample(sample_data.SampleDataLogic, "/icons/sample.png", category_title="DeepDenoise")
    assert len(registered) == (2 if api["register_custom_sample_data_category"] else 1)
    assert registered[-1]["checksums"] == NOISY_CHECKSUM and registered[-1]["thumbnailFileName"] == "/icons/sample.png"


def test_missing_worker_packages_are_found_without_importing_them(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\n\n--index-url https://example.org\nnumpy>=1.0\nno-such-distribution-xyz>=1\n")
    assert slicer_support.read_requirements(requirements) == ["numpy>=1.0", "no-such-distribution-xyz>=1"]
    found = {}

    def find_spec(name):
        found[name] = True
        return None if name == "torch" else object()

    monkeypatch.setattr(slicer_support.importlib.util, "find_spec", find_spec)
    assert slicer_support.missing_worker_packages(requirements) == ["torch", "no-such-distribution-xyz>=1"]
    assert found == {"torch": True}
    monkeypatch.setattr(slicer_support.importlib.util, "find_spec", lambda name: object())
    requirements.write_text("numpy\n")
    assert slicer_support.missing_worker_packages(requirements) == []


def test_the_self_test_skips_saying_what_is_missing_and_what_to_do():
    assert slicer_support.self_test_skip_reason([]) is None
    reason = slicer_support.self_test_skip_reason(["torch"])
    assert reason.startswith("Skipped: the background worker needs torch, which is not installed")
    assert "installs nothing" in reason and "Press Apply" in reason
    assert "torch, safetensors>=0.4, which are not installed" in slicer_support.self_test_skip_reason(["torch", "safetensors>=0.4"])


def test_forget_library_modules_removes_the_package_and_all_its_modules_only():
    modules = {
        "DeepDenoiseLib": 1, "DeepDenoiseLib.denoise.config": 2, "DeepDenoiseLib.slicer.superres_panel": 3,
        "DeepDenoiseLibrary": 4, "DeepDenoise": 5, "numpy": 6,
    }  # fmt: skip
    assert slicer_support.forget_library_modules(modules) == [
        "DeepDenoiseLib",
        "DeepDenoiseLib.denoise.config",
        "DeepDenoiseLib.slicer.superres_panel",
    ]
    assert modules == {"DeepDenoiseLibrary": 4, "DeepDenoise": 5, "numpy": 6}


def test_after_forgetting_the_library_an_import_reads_the_edited_files(tmp_path):
    """Developer mode's Reload: edit two library files (one imported by the other), forget, import
    again; both edits are seen, in a fresh Python holding a copy of the library."""
    shutil.copytree(REPO / "DeepDenoiseLib", tmp_path / "DeepDenoiseLib", ignore=shutil.ignore_patterns("data", "__pycache__"))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        sys.dont_write_bytecode = True
        from pathlib import Path
        from DeepDenoiseLib.slicer import support as slicer_support
        import DeepDenoiseLib.slicer.superres_panel as panel
        assert panel.MIN_COARSE_VOXELS == 4 and panel.__file__.startswith({str(tmp_path)!r})
        folder = Path({str(tmp_path)!r}) / "DeepDenoiseLib"
        for name in ("superres/grid.py", "slicer/superres_panel.py"):
            path = folder / name
            path.write_text(path.read_text().replace("MIN_COARSE_VOXELS = 4", "MIN_COARSE_VOXELS = 5") + "\\nEDITED = True\\n")
        forgotten = slicer_support.forget_library_modules()
        assert "DeepDenoiseLib.superres.grid" in forgotten and "DeepDenoiseLib.slicer.superres_panel" in forgotten
        import DeepDenoiseLib.slicer.superres_panel as panel
        import DeepDenoiseLib.superres.grid as grid
        assert grid.MIN_COARSE_VOXELS == 5 and panel.MIN_COARSE_VOXELS == 5 and panel.EDITED and grid.EDITED
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
