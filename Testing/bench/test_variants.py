"""Tests of the benchmark's noisy variants (seeded, matching their noise definitions), the Anscombe
helpers its BM4D baseline uses, and the benchmark command on a tiny stand-in for the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.anscombe import anscombe_forward, anscombe_inverse, estimate_gain
from bench.benchmark_denoise import main as benchmark_main
from bench.variants import (
    GAUSSIAN_SEED,
    HELD_OUT_VARIANTS,
    POISSON_SEED,
    RICIAN_SEED,
    TUNING_VARIANTS,
    VARIANTS,
    SharedDataMissing,
    centre_crop,
    load_bench_data,
    make_noisy,
    poisson_gain,
    variant_truth,
)
from DeepDenoiseLib.core.noise_simulation import add_rician_noise
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import write_volume
from Testing.support.shared_stand_in import write_shared_stand_in


def _clean(shape: tuple[int, int, int] = (24, 28, 32)) -> Volume:
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    ball = np.clip(1.2 - np.sqrt(k**2 + j**2 + i**2), 0.0, 1.0)
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return Volume(ball.astype(np.float32), spacing=(1.5, 1.0, 2.0), origin=(10.0, -5.0, 3.0), direction=direction)


def test_gaussian_variant_is_seeded_clean_plus_sigma_times_normal(tmp_path: Path) -> None:
    clean = _clean()
    variant = VARIANTS["gaussian07"]
    noisy = make_noisy(variant, clean, tmp_path)
    again = make_noisy(variant, clean, tmp_path)
    assert np.array_equal(noisy.array, again.array) and noisy.same_geometry(clean)
    normal = np.random.default_rng(GAUSSIAN_SEED).standard_normal(clean.array.shape)
    expected = (clean.array.astype(np.float64) + 0.07 * normal).astype(np.float32)
    assert np.array_equal(noisy.array, expected)
    assert np.std(noisy.array - clean.array) == pytest.approx(0.07, rel=0.05)


def test_poisson_variant_is_seeded_photon_counts_with_peak_60() -> None:
    clean = _clean()
    variant = VARIANTS["poisson60"]
    noisy = make_noisy(variant, clean, Path("unused"))
    assert np.array_equal(noisy.array, make_noisy(variant, clean, Path("unused")).array)
    gain = poisson_gain(variant, clean.array)
    assert gain == pytest.approx(float(clean.array.max()) / 60.0)
    counts = noisy.array.astype(np.float64) / gain
    assert np.allclose(counts, np.round(counts), atol=1e-3)  # whole photons, scaled back to intensities
    expected = np.random.default_rng(POISSON_SEED).poisson(clean.array.astype(np.float64) / gain) * gain
    assert np.allclose(noisy.array, expected, rtol=1e-6, atol=1e-7)
    bright = clean.array > 0.5 * clean.array.max()
    assert np.mean(noisy.array[bright] - clean.array[bright]) == pytest.approx(0.0, abs=0.01)
    assert np.var(counts[bright] - clean.array[bright] / gain) == pytest.approx(np.mean(clean.array[bright] / gain), rel=0.1)


def test_rician_variants_are_the_shared_files_and_missing_data_says_what_to_do(tmp_path: Path) -> None:
    clean = _clean()
    with pytest.raises(SharedDataMissing, match="--shared"):
        load_bench_data(tmp_path)
    with pytest.raises(SharedDataMissing, match="rician05"):
        make_noisy(VARIANTS["rician05"], clean, tmp_path)
    shared = add_rician_noise(clean.array, 0.05, seed=1234)
    write_volume(clean.with_array(shared), tmp_path / "mni152_t1_128_rician05.nii.gz")
    assert np.array_equal(make_noisy(VARIANTS["rician05"], clean, tmp_path).array, shared)


def test_held_out_variants_are_generated_and_the_coarser_one_scores_on_a_resampled_truth(tmp_path: Path) -> None:
    shared = write_shared_stand_in(tmp_path)
    data = load_bench_data(shared)
    assert set(HELD_OUT_VARIANTS).isdisjoint(TUNING_VARIANTS) and TUNING_VARIANTS == ["rician05", "rician10", "gaussian07", "poisson60"]
    rician = make_noisy(VARIANTS["rician07"], data.clean, Path("unused"))  # generated: no shared file needed
    assert np.array_equal(rician.array, add_rician_noise(data.clean.array, 0.07, seed=RICIAN_SEED))
    coarse = VARIANTS["rician05_2mm"]
    truth = variant_truth(coarse, data)
    assert truth.clean.array.shape == (15, 15, 15) and truth.clean.spacing == (2.0, 2.0, 2.0) and truth.mask.shape == (15, 15, 15)
    assert truth.mask.dtype == bool and 0 < truth.mask.mean() < 1
    assert make_noisy(coarse, truth.clean, Path("unused")).array.shape == (15, 15, 15)
    assert variant_truth(VARIANTS["gaussian04"], data) is data


def test_centre_crop_keeps_every_voxel_where_it_was_in_the_world() -> None:
    volume = _clean()
    cropped = centre_crop(volume, 16)
    assert cropped.array.shape == (16, 16, 16)
    start_kji = np.array([4, 6, 8])
    assert np.array_equal(cropped.array, volume.array[4:20, 6:22, 8:24])

    def world(v: Volume, ijk: np.ndarray) -> np.ndarray:
        return np.asarray(v.origin) + v.direction @ (ijk * np.asarray(v.spacing))

    assert np.allclose(world(cropped, np.zeros(3)), world(volume, start_kji[::-1].astype(float)))
    assert centre_crop(volume, 64).array.shape == volume.array.shape


def test_anscombe_inverse_is_unbiased_and_the_gain_estimate_finds_the_photon_size() -> None:
    rng = np.random.default_rng(0)
    for photons in (1.0, 3.0, 10.0, 50.0):
        counts = rng.poisson(photons, 200_000).astype(np.float64)
        mean_transformed = np.mean(anscombe_forward(counts * 0.02, gain=0.02))
        assert anscombe_inverse(np.array([mean_transformed]), gain=0.02)[0] == pytest.approx(photons * 0.02, rel=0.03)
    assert np.std(anscombe_forward(rng.poisson(30.0, 100_000) * 0.5, gain=0.5)) == pytest.approx(1.0, abs=0.03)
    clean = 0.2 + 0.8 * _clean((32, 32, 32)).array.astype(np.float64)
    noisy = rng.poisson(clean / 0.01) * 0.01
    assert estimate_gain(noisy) == pytest.approx(0.01, rel=0.05)


def test_benchmark_prints_a_column_per_variant_and_writes_every_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shared = write_shared_stand_in(tmp_path)
    out = tmp_path / "runs.json"
    code = benchmark_main(["--shared", str(shared), "--variants", "rician05", "gaussian07", "--only", "slicer", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "| method | Rician 5 %: PSNR dB / SSIM / time | Gaussian 7 %: PSNR dB / SSIM / time | runs |" in table
    assert "| noisy input |" in table and "| Slicer CurvatureAnisotropicDiffusion, defaults |" in table
    assert "NL-means" not in table and "DeepDenoise" not in table
    saved = json.loads(out.read_text())
    methods = {(row["variant"], row["key"]) for row in saved["rows"]}
    assert methods == {(v, k) for v in ("rician05", "gaussian07") for k in ("noisy", "slicer-cad")}
    noisy_row = next(row for row in saved["rows"] if row["key"] == "noisy" and row["variant"] == "gaussian07")
    slicer_row = next(row for row in saved["rows"] if row["key"] == "slicer-cad" and row["variant"] == "gaussian07")
    assert slicer_row["psnr"] > noisy_row["psnr"]


def test_missing_packages_and_a_broken_careamics_environment_leave_rows_out_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dipy" else real_find_spec(name, *a))
    not_a_venv = tmp_path / "someone-elses-folder"
    not_a_venv.mkdir()
    shared = write_shared_stand_in(tmp_path)
    arguments = ["--shared", str(shared), "--variants", "rician05", "--only", "slicer", "dipy", "careamics"]
    code = benchmark_main(arguments + ["--careamics-venv", str(not_a_venv), "--json", str(tmp_path / "runs.json")])
    assert code == 0
    table = capsys.readouterr().out
    assert "| Slicer CurvatureAnisotropicDiffusion, defaults |" in table
    assert "| dipy" not in table and "| CAREamics" not in table
    assert "(rician05): dipy not installed (pip install '.[bench]')" in table
    assert "is not a working CAREamics 0.3.5 environment" in table
    assert not any(not_a_venv.iterdir())  # a folder that is not ours is never touched


def test_benchmark_without_the_shared_data_exits_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert benchmark_main(["--shared", str(tmp_path / "nowhere"), "--only", "slicer", "--json", str(tmp_path / "x.json")]) == 2
    assert "pass its location with --shared" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
