"""Tests of the demo (DeepDenoiseLib.cli.demo, figure, sample_data): on the bundled sample, with a tiny
model and a 3 s budget, it writes the denoised volume, the residual and a comparison PNG and
returns PSNR/SSIM figures. Quality is not judged here (see test_pipeline.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cli.demo import run_demo
from DeepDenoiseLib.core.figure import save_comparison_figure
from DeepDenoiseLib.core.sample_data import sample_paths
from DeepDenoiseLib.core.volume_io import read_volume
from Testing.support.phantoms import single_thread, tiny_config  # noqa: F401

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(image[..., :3].std()) > 0.01  # not a blank canvas


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("demo") / "results"  # created by the demo
    config = tiny_config(
        "blindspot",
        training={"budget_seconds": 3.0, "steps_per_epoch": 20, "max_epochs": 2},
        model={"depth": 1, "base_channels": 4},
    )
    summary = run_demo(output_dir, config)
    return output_dir, summary


def test_demo_writes_its_three_files(demo_run) -> None:
    output_dir, summary = demo_run
    assert sorted(p.name for p in output_dir.iterdir()) == ["comparison.png", "denoised.nii.gz", "residual.nii.gz"]
    assert_png(output_dir / "comparison.png")
    assert summary["figure"] == str(output_dir / "comparison.png")
    noisy = read_volume(sample_paths().noisy)
    for name in ("denoised.nii.gz", "residual.nii.gz"):
        written = read_volume(output_dir / name)
        assert written.array.shape == noisy.array.shape and written.array.dtype == np.float32
        np.testing.assert_allclose(written.spacing, noisy.spacing, rtol=1e-6)
        np.testing.assert_allclose(written.origin, noisy.origin, rtol=1e-6, atol=1e-6)
    residual = read_volume(output_dir / "residual.nii.gz").array
    denoised = read_volume(output_dir / "denoised.nii.gz").array
    np.testing.assert_allclose(residual, noisy.array - denoised, atol=1e-5)


def test_demo_returns_finite_psnr_and_ssim(demo_run, capsys) -> None:
    _, summary = demo_run
    for key in ("psnr_noisy", "psnr_denoised", "ssim_noisy", "ssim_denoised"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
    assert 0 < summary["psnr_noisy"] < 60 and 0 < summary["psnr_denoised"] < 60
    assert -1 <= summary["ssim_noisy"] <= 1 and -1 <= summary["ssim_denoised"] <= 1
    assert summary["method"] == "blindspot" and summary["training_steps"] > 0
    assert summary["training_seconds"] <= 3.0 + 2.0  # the budget, or fewer steps


def test_bundled_sample_is_complete() -> None:
    paths = sample_paths()
    noisy, clean, mask = (read_volume(p) for p in (paths.noisy, paths.clean, paths.mask))
    assert noisy.array.shape == clean.array.shape == mask.array.shape
    assert noisy.same_geometry(clean)
    assert 0 < np.count_nonzero(mask.array) < mask.array.size
    assert 0.0 <= clean.array.min() and clean.array.max() <= 1.0


def test_missing_sample_gives_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    import DeepDenoiseLib.core.sample_data as sample_data

    monkeypatch.setattr(sample_data, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="reinstall"):
        sample_data.sample_paths()


def test_comparison_figure_of_a_small_volume(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = rng.random((6, 20, 24)).astype(np.float32)
    path = save_comparison_figure(noisy, noisy * 0.5, tmp_path / "figure.png", title="test")
    assert path == tmp_path / "figure.png"
    assert_png(path)
    # identical volumes (zero residual) still make a figure
    assert_png(save_comparison_figure(noisy, noisy, tmp_path / "same.png"))


def test_demo_from_the_command_line(tmp_path: Path, capsys) -> None:
    from DeepDenoiseLib.cli import commands as cli

    config_path = tmp_path / "tiny.json"
    tiny_config("n2v", model={"depth": 1, "base_channels": 4}, training={"steps_per_epoch": 2, "max_epochs": 1}).save(config_path)
    output_dir = tmp_path / "out"
    code = cli.main(["demo", "--output-dir", str(output_dir), "--config", str(config_path), "--progress", "none"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert {"denoised.nii.gz", "residual.nii.gz", "comparison.png"} <= {p.name for p in output_dir.iterdir()}
    assert "PSNR dB" in captured.out and "noisy" in captured.out and "denoised" in captured.out
