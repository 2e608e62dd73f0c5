"""The Python package as pip installs it: the wheel built from pyproject.toml holds every module of
every DeepDenoiseLib subpackage and the bundled sample data (a wheel that silently drops a subpackage
is the classic failure of a package split into folders), and its ``deepdenoise`` command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from Testing.support import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel, built offline from a copy of the files git tracks (the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "LICENSE", "DeepDenoiseLib"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in tracked:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("deepdenoise-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_every_module_of_every_subpackage_and_the_sample_data(wheel) -> None:
    library = [
        Path(line)
        for line in subprocess.run(
            ["git", "ls-files", "DeepDenoiseLib"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    ]
    expected = {path.as_posix() for path in library}
    assert {
        "DeepDenoiseLib/slicer/__init__.py",
        "DeepDenoiseLib/denoise/config.py",
        "DeepDenoiseLib/data/mni152_slab_rician05.nii.gz",
        "DeepDenoiseLib/data/priors/noise_conditioned_2p5d.safetensors",  # the default method's pretrained prior
    } <= expected
    missing = sorted(expected - set(wheel.namelist()))
    assert missing == [], f"the wheel lacks {missing}"


def test_the_wheel_installs_the_deepdenoise_command(wheel) -> None:
    (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    assert "deepdenoise = DeepDenoiseLib.cli.commands:main" in wheel.read(entry_points).decode("utf-8")
