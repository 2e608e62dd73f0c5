"""Tests of the bundle that carries the shared volumes to a GPU machine (bench/gpu_bundle.py): it
gives the benchmark the same volumes as the folder, and the benchmark then runs without SimpleITK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.gpu_bundle import write_bundle
from bench.variants import BUNDLED_FILES, VARIANTS, SharedDataMissing, load_bench_data, make_noisy
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import write_volume
from Testing.support.shared_stand_in import write_shared_stand_in

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_bundle_gives_the_same_volumes_as_the_folder(tmp_path: Path) -> None:
    shared = write_shared_stand_in(tmp_path / "shared")
    bundle = write_bundle(shared, tmp_path / "gpu" / "shared.npz")
    from_folder, from_bundle = load_bench_data(shared), load_bench_data(bundle)
    assert np.array_equal(from_bundle.clean.array, from_folder.clean.array) and from_bundle.clean.same_geometry(from_folder.clean)
    assert np.array_equal(from_bundle.mask, from_folder.mask)
    for name in ("rician05", "rician10", "gaussian07", "poisson60"):
        expected = make_noisy(VARIANTS[name], from_folder.clean, shared)
        got = make_noisy(VARIANTS[name], from_bundle.clean, bundle)
        assert np.array_equal(got.array, expected.array) and got.same_geometry(expected), name


def test_a_missing_file_or_a_volume_on_another_grid_is_refused(tmp_path: Path) -> None:
    shared = write_shared_stand_in(tmp_path / "shared")
    (shared / BUNDLED_FILES["rician10"]).unlink()
    with pytest.raises(SharedDataMissing, match="rician10"):
        write_bundle(shared, tmp_path / "shared.npz")
    clean = load_bench_data(shared).clean
    write_volume(Volume(clean.array, (1.0, 1.5, 1.5), clean.origin, clean.direction), shared / BUNDLED_FILES["rician10"])
    with pytest.raises(ValueError, match="grid"):
        write_bundle(shared, tmp_path / "shared.npz")
    with pytest.raises(SharedDataMissing, match="gpu_bundle.py"):
        load_bench_data(tmp_path / "absent.npz")


def test_the_benchmark_runs_from_a_bundle_without_simpleitk(tmp_path: Path) -> None:
    bundle = write_bundle(write_shared_stand_in(tmp_path / "shared"), tmp_path / "shared.npz")
    out = tmp_path / "runs.json"
    arguments = ["--shared", str(bundle), "--variants", "rician05", "poisson60", "--only", "no-such-method", "--json", str(out)]
    script = (
        "import sys; sys.modules['SimpleITK'] = None; sys.modules['nibabel'] = None\n"  # as on the GPU machine: not installed
        "from bench.benchmark_denoise import main\n"
        f"raise SystemExit(main({arguments!r}))\n"
    )
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # the table's arrows and superscripts, whatever the locale
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, encoding="utf-8", env=environment, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {(row["variant"], row["key"]) for row in rows} == {("rician05", "noisy"), ("poisson60", "noisy")}
