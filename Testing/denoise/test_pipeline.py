"""Tests of the end-to-end run (DeepDenoiseLib.denoise.pipeline): geometry kept exactly, residuals, input
refusals, constant volumes, cancellation leaving no files, and denoising quality on a phantom."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.core.metrics import psnr
from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.files import denoise_file
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

ROTATION = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
    [[1.0, 0.0, 0.0], [0.0, math.cos(0.3), -math.sin(0.3)], [0.0, math.sin(0.3), math.cos(0.3)]]
)


def phantom_volume(shape=(8, 24, 28), dtype=np.float32, seed: int = 0) -> Volume:
    _, noisy = noisy_phantom(shape, sigma=0.1, seed=seed)
    array = noisy.astype(dtype) if np.issubdtype(dtype, np.floating) else np.rint(noisy * 1000).astype(dtype)
    return Volume(array, spacing=(0.9, 0.8, 2.5), origin=(12.5, -7.25, 3.0), direction=ROTATION, metadata={"source_path": "x.nii"})


@pytest.mark.parametrize(
    "method, sections, dtype",
    [
        ("r2r", {}, np.float32),  # the default method, from the pretrained prior
        ("blindspot", {}, np.int16),  # its noise estimate, fusion and Rician correction
        ("n2v2", {"model": {"dimensions": "3d"}, "training": {"patch_size": 8}}, np.float64),
    ],
)
def test_denoise_volume_keeps_the_geometry_and_returns_input_minus_output(method, sections, dtype, monkeypatch) -> None:
    # Four training steps: what the network returns, which the self-check may judge no better than the
    # input and replace by it (the self-check has its own tests: test_r2r.py, test_settings_sweep.py).
    monkeypatch.setattr("DeepDenoiseLib.denoise.pipeline._self_check_failure", lambda *args: None)
    volume = phantom_volume(dtype=dtype)
    original = volume.array.copy()
    result = denoise_volume(volume, tiny_config(method, **sections))
    for output in (result.denoised, result.residual):
        assert output.array.shape == volume.array.shape
        assert output.array.dtype == np.float32
        assert output.spacing == volume.spacing and output.origin == volume.origin
        assert np.array_equal(output.direction, volume.direction)
        assert output.same_geometry(volume)
        assert np.all(np.isfinite(output.array))
    assert np.array_equal(volume.array, original)  # the input is left untouched
    expected_residual = volume.array.astype(np.float32) - result.denoised.array
    np.testing.assert_array_equal(result.residual.array, expected_residual)
    assert not np.array_equal(result.denoised.array, volume.array.astype(np.float32))
    assert result.uncertainty is None
    summary = result.summary
    assert summary["method"] == method and summary["shape_kji"] == list(volume.array.shape)
    assert summary["training_steps"] == 4 and summary["stopped_by"] == "epochs" and summary["device"] == "cpu"
    assert summary["residual_std"] == pytest.approx(float(np.std(result.residual.array)), rel=1e-5)
    assert result.history is not None and result.history.steps == 4


def test_tta_returns_an_uncertainty_volume_on_the_same_grid() -> None:
    volume = phantom_volume()
    result = denoise_volume(volume, tiny_config("n2v", prediction={"tta": True}))
    assert result.uncertainty is not None and result.uncertainty.same_geometry(volume)
    assert result.uncertainty.array.dtype == np.float32 and np.all(result.uncertainty.array >= 0)


@pytest.mark.parametrize("value", [0.0, 42.5])
def test_constant_volume_is_returned_unchanged_with_a_warning(value: float) -> None:
    volume = Volume(np.full((4, 16, 16), value, dtype=np.float32), spacing=(1.0, 1.0, 3.0), direction=ROTATION)
    result = denoise_volume(volume, tiny_config("n2v"))
    assert np.array_equal(result.denoised.array, volume.array)
    assert result.denoised.array is not volume.array
    assert not result.residual.array.any()
    assert result.denoised.same_geometry(volume) and result.residual.same_geometry(volume)
    assert result.summary["training_steps"] == 0
    assert any("returned unchanged" in w for w in result.summary["warnings"])


def label_map() -> Volume:
    array = np.zeros((6, 20, 20), dtype=np.int16)
    array[1:5, 4:16, 4:16] = 1
    array[2:4, 8:12, 8:12] = 3
    return Volume(array)


def test_label_map_is_refused_unless_allowed() -> None:
    with pytest.raises(InputError, match="label map"):
        denoise_volume(label_map(), tiny_config("n2v"))
    config = DenoiseConfig.from_dict(dict(tiny_config("n2v").to_dict(), allow_label_map=True))
    result = denoise_volume(label_map(), config)
    assert result.denoised.array.shape == (6, 20, 20) and result.denoised.array.dtype == np.float32
    assert any("label map" in w for w in result.summary["warnings"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_input_is_refused(bad: float) -> None:
    array = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    array[2, 3, 4] = bad
    with pytest.raises(InputError, match="NaN" if np.isnan(bad) else "infinite"):
        denoise_volume(Volume(array), tiny_config("n2v"))


def test_other_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError):
        denoise_volume(Volume(np.random.default_rng(0).random((4, 16, 16)), spacing=(1.0, 0.0, 1.0)), tiny_config("n2v"))
    with pytest.raises(InputError, match="4D"):
        denoise_volume(Volume(np.random.default_rng(0).random((2, 4, 16, 16))), tiny_config("n2v"))


@pytest.mark.parametrize("method, shape", [("n2v", (4, 3, 40)), ("blindspot", (4, 40, 3)), ("n2v", (4, 2, 40))])
def test_volume_too_small_for_the_network_gives_a_clear_error(method: str, shape: tuple) -> None:
    volume = Volume(np.random.default_rng(0).random(shape).astype(np.float32))
    with pytest.raises(ValueError, match="too small for this network") as error:
        denoise_volume(volume, tiny_config(method, model={"depth": 2}))
    assert "set model.depth to 1 (the deepest that fits" in str(error.value)


# --- files -----------------------------------------------------------------------------------------


@pytest.fixture()
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "noisy.nii.gz"
    write_volume(phantom_volume(), path)
    return path


def folder_contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_denoise_file_writes_outputs_and_reports_stages(input_file: Path) -> None:
    folder = input_file.parent
    events: list[ProgressEvent] = []
    summary = denoise_file(input_file, folder / "out.nii.gz", tiny_config("n2v"), residual_path=folder / "res.nrrd", progress=events.append)
    assert folder_contents(folder) == ["noisy.nii.gz", "out.nii.gz", "res.nrrd"]
    assert summary["output"] == str(folder / "out.nii.gz")
    written, original = read_volume(folder / "out.nii.gz"), read_volume(input_file)
    assert written.array.dtype == np.float32 and written.array.shape == original.array.shape
    np.testing.assert_allclose(written.spacing, original.spacing, rtol=1e-6)
    stages = [e.stage for e in events]
    first = {stage: stages.index(stage) for stage in dict.fromkeys(stages)}
    assert list(first) == ["loading", "training", "predicting", "writing", "done"]
    assert all(stages[i] == "done" for i in range(first["done"], len(stages)))
    assert events[-1].summary["output"] == summary["output"]


@pytest.mark.parametrize("cancel_at", ["training", "predicting", "end of predicting"])
def test_cancelled_run_leaves_no_file_behind(input_file: Path, cancel_at: str) -> None:
    """Cancelled from the progress callback during training, during prediction, or just after its
    last slice (before anything is written): no output, residual or temporary file is left."""
    folder = input_file.parent
    token = CancelToken()
    stages: list[str] = []

    def progress(event: ProgressEvent) -> None:
        stages.append(event.stage)
        if event.stage == cancel_at or (cancel_at == "end of predicting" and event.stage == "predicting" and event.fraction >= 1.0):
            token.cancel()

    config = tiny_config("n2v", training={"steps_per_epoch": 20}, prediction={"batch_size": 1})
    with pytest.raises(Cancelled):
        denoise_file(input_file, folder / "out.nii.gz", config, residual_path=folder / "res.nii.gz", progress=progress, cancel=token)
    assert folder_contents(folder) == ["noisy.nii.gz"]  # no output, residual or temporary file
    assert "writing" not in stages and "done" not in stages


def test_an_output_in_a_missing_folder_is_refused_before_anything_is_read(input_file: Path) -> None:
    # (A write that fails late restores every output path: Testing/cli/test_bad_inputs.py.)
    folder = input_file.parent
    events: list = []
    with pytest.raises(InputError, match="missing', does not exist"):
        denoise_file(
            input_file, folder / "out.nii.gz", tiny_config("n2v"), residual_path=folder / "missing" / "res.nii.gz", progress=events.append
        )
    assert events == []  # not even loading began
    assert folder_contents(folder) == ["noisy.nii.gz"]


def test_uncertainty_output_needs_tta(input_file: Path) -> None:
    folder = input_file.parent
    with pytest.raises(ValueError, match="test-time augmentation"):
        denoise_file(input_file, folder / "out.nii.gz", tiny_config("n2v"), uncertainty_path=folder / "u.nii.gz")
    assert folder_contents(folder) == ["noisy.nii.gz"]
    denoise_file(input_file, folder / "out.nii.gz", tiny_config("n2v", prediction={"tta": True}), uncertainty_path=folder / "u.nii.gz")
    assert folder_contents(folder) == ["noisy.nii.gz", "out.nii.gz", "u.nii.gz"]


def test_a_missing_input_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        denoise_file(tmp_path / "nothing.nii.gz", tmp_path / "out.nii.gz", tiny_config("n2v"))
    assert folder_contents(tmp_path) == []


# --- quality ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray]:
    """A smooth 32x64x64 phantom in [0, ~1] with Gaussian noise sigma 0.1: 20.0 dB PSNR."""
    return noisy_phantom((32, 64, 64), sigma=0.1, seed=0)


QUALITY_RUNS = {
    # measured PSNR gains over the noisy input (one CPU thread, training seeds 0-7):
    # blindspot +10.4 to +11.5 dB (learning rate 0.01 was unstable: +0.4 dB for one seed),
    # n2v +8.6 to +11.0 dB; the asserted 5 dB leave about half of the worst seed as headroom
    "blindspot": (
        {
            "model": {"depth": 1, "base_channels": 8, "context_slices": 2},
            "noise": {"model": "gaussian"},
            "training": {"patch_size": 32, "batch_size": 4, "learning_rate": 0.005, "steps_per_epoch": 150, "max_epochs": 2},
        },
        5.0,
    ),
    "n2v": (
        {
            "model": {"depth": 2, "base_channels": 8, "context_slices": 2},
            "training": {"patch_size": 32, "batch_size": 8, "learning_rate": 0.01, "steps_per_epoch": 50, "max_epochs": 2},
        },
        5.0,
    ),
}


@pytest.mark.parametrize("method", list(QUALITY_RUNS))
def test_denoising_raises_psnr_on_a_noisy_phantom(phantom, method: str) -> None:
    """A short CPU run (a few seconds, fixed steps) raises PSNR by at least 5 dB over the noisy
    input's 20 dB, for blindspot (noise fusion, estimated sigma, 300 steps) and masking n2v (100
    steps); measured +10.4..11.5 dB and +8.6..11.0 dB across eight seeds."""
    clean, noisy = phantom
    sections, margin_db = QUALITY_RUNS[method]
    result = denoise_volume(Volume(noisy), tiny_config(method, **sections))
    before = psnr(clean, noisy, data_range=1.0)
    after = psnr(clean, result.denoised.array, data_range=1.0)
    assert before == pytest.approx(20.0, abs=0.1)
    assert after - before >= margin_db, f"{method}: {before:.2f} -> {after:.2f} dB"
