"""MP-PCA, the 4D series default (denoise/local_pca.py, denoise/mppca.py, the pipeline around them):
agreement with dipy's ``mppca``, the series generator's truth (bench/series_generator.py), a
single-frame event that survives, the grid, frames and time step kept, the refusals, and which method
a 4D input gets by default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from bench.series_generator import event_kept, make_series, series_psnr, time_course_correlation
from DeepDenoiseLib.cli import commands as cli
from DeepDenoiseLib.cli.commands import build_parser
from DeepDenoiseLib.cli.common import config_from_args
from DeepDenoiseLib.core.metrics import mean_image_mask, temporal_snr
from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.local_pca import local_pca_denoise, marchenko_pastur_variance
from DeepDenoiseLib.denoise.method_rules import MPPCA_MIN_FRAMES, default_method
from DeepDenoiseLib.denoise.model_folder import MODELS_FOLDER_VARIABLE
from DeepDenoiseLib.denoise.pipeline import denoise_series, denoise_volume
from Testing.support.jobs import OBLIQUE
from Testing.support.phantoms import single_thread  # noqa: F401

#: The smallest share of the single-frame event's amplitude the default keeps on the tiny series, and
#: the lowest correlation of the event region's time course with the truth's (the noisy input: 0.62).
EVENT_KEPT_BOUND = 0.5
EVENT_CORRELATION_BOUND = 0.75


def anatomy(shape=(14, 18, 16), seed: int = 0) -> np.ndarray:
    """An ellipsoid "head" with smooth texture, dark outside."""
    grid = np.indices(shape, dtype=np.float32)
    radii = [(n - 2) / 2 for n in shape]
    inside = sum(((grid[a] - (shape[a] - 1) / 2) / radii[a]) ** 2 for a in range(3)) <= 1.0
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.0)
    return (inside * (0.7 + 2.0 * texture)).clip(0.0).astype(np.float32)


@pytest.fixture(scope="module")
def truth():
    return make_series(anatomy(), frames=24, sigma=0.03, components=3, event_change=0.15, seed=3)


# --- Agreement with dipy -----------------------------------------------------------------------------


def test_stride_one_agrees_with_dipy_mppca() -> None:
    localpca = pytest.importorskip("dipy.denoise.localpca")
    rng = np.random.default_rng(0)
    shape, frames = (9, 10, 8), 16
    base = 1.0 + 0.5 * rng.random(shape + (1,))
    courses = 0.1 * rng.standard_normal((1, 1, 1, frames))
    noisy = base * (1.0 + courses * (rng.random(shape + (1,)) > 0.5)) + 0.05 * rng.standard_normal(shape + (frames,))
    reference = localpca.mppca(noisy, patch_radius=2)
    ours = local_pca_denoise(np.moveaxis(noisy, -1, 0), patch_radius=2, stride=1).denoised
    np.testing.assert_allclose(np.moveaxis(ours, 0, -1), reference, atol=1e-5)
    assert np.abs(ours - np.moveaxis(noisy, -1, 0)).max() > 0.05  # it did denoise


def test_marchenko_pastur_variance_is_dipys_classifier() -> None:
    localpca = pytest.importorskip("dipy.denoise.localpca")
    rng = np.random.default_rng(1)
    for frames, voxels in ((16, 125), (40, 125), (200, 125), (30, 27)):
        eigenvalues = np.sort(rng.gamma(1.0, 1.0, (6, frames)) ** 2, axis=1)
        eigenvalues[:3, -3:] *= 40.0  # a few signal components
        ours = marchenko_pastur_variance(torch.as_tensor(eigenvalues), voxels).numpy()
        for row, value in zip(eigenvalues, ours):
            assert value == pytest.approx(localpca._pca_classifier(row, voxels)[0], rel=1e-12)


def test_more_frames_than_patch_voxels_and_a_thin_series_keep_their_shape() -> None:
    rng = np.random.default_rng(2)
    for shape in ((3, 7, 6, 6), (30, 2, 6, 7)):  # 3 frames of 343 voxels' patches; 30 frames, patches of 2x5x5
        values = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        result = local_pca_denoise(values, patch_radius=3 if shape[0] == 3 else 2, stride=2)
        assert result.denoised.shape == shape and np.all(np.isfinite(result.denoised))
        assert result.sigma.shape == shape[1:]


# --- The generator's truth -------------------------------------------------------------------------


def test_the_generator_makes_the_truth_it_says(truth) -> None:
    again = make_series(anatomy(), frames=24, sigma=0.03, components=3, event_change=0.15, seed=3)
    np.testing.assert_array_equal(again.noisy, truth.noisy)  # seeded
    noise = (truth.noisy - truth.clean)[:, truth.brain]
    assert np.std(noise) == pytest.approx(0.03, rel=0.05) and abs(np.mean(noise)) < 0.003
    # The event lasts exactly one frame: only that frame jumps in its region.
    region = truth.clean[:, truth.event_region].mean(axis=1)
    jumps = region[1:-1] - 0.5 * (region[:-2] + region[2:])
    assert int(np.argmax(jumps)) + 1 == truth.event_frame and jumps.max() > 5 * np.sort(jumps)[-2]
    assert event_kept(truth.clean, truth) == pytest.approx(1.0)
    assert time_course_correlation(truth.clean, truth, truth.bold_regions) == pytest.approx(1.0)
    assert truth.bold_regions.any() and not (truth.bold_regions & ~truth.brain).any()
    rician = make_series(anatomy(), frames=8, sigma=0.03, noise_model="rician", seed=3)
    assert rician.noisy.min() >= 0.0 and rician.noisy[:, ~rician.brain].mean() > 0.02  # the noise floor


# --- Through the pipeline: the default for a series ----------------------------------------------


def test_the_series_default_denoises_and_keeps_a_single_frame_event(truth) -> None:
    events: list[ProgressEvent] = []
    noisy = Volume(truth.noisy, metadata={"time_spacing": 2.0, "time_origin": 0.0})
    result = denoise_series(noisy, DenoiseConfig.for_method("mppca", noise={"model": "gaussian"}), progress=events.append)
    denoised = result.denoised.array
    summary = result.summary
    assert summary["method"] == "mppca" and summary["frames"] == 24 and summary["self_check"]["passed"]
    assert summary["training_steps"] == 0 and summary["mppca"]["patch_stride"] == 2 and result.model is None
    assert summary["mppca"]["local_sigma_median"] == pytest.approx(0.03, rel=0.25)
    assert series_psnr(denoised, truth) > series_psnr(truth.noisy, truth) + 3.0
    assert time_course_correlation(denoised, truth, truth.event_region) > EVENT_CORRELATION_BOUND
    assert event_kept(denoised, truth) > EVENT_KEPT_BOUND
    assert any(event.stage == "predicting" and "local PCA" in (event.message or "") for event in events)
    np.testing.assert_array_equal(result.residual.array, truth.noisy - denoised)


def test_rician_series_are_corrected_for_the_noise_floor() -> None:
    rician = make_series(anatomy(), frames=16, sigma=0.05, noise_model="rician", seed=5)
    result = denoise_series(Volume(rician.noisy))  # the defaults: MP-PCA, Rician noise model
    assert result.summary["method"] == "mppca" and result.summary["noise_model"] == "rician"
    background = ~ndimage.binary_dilation(rician.brain, iterations=2)
    # The Rician bias correction pulls the background's noise floor (about 1.25 sigma) towards 0.
    assert result.denoised.array[:, background].mean() < 0.5 * rician.noisy[:, background].mean()
    assert series_psnr(result.denoised.array, rician) > series_psnr(rician.noisy, rician) + 3.0


def test_cancel_stops_the_local_pca() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        local_pca_denoise(np.ones((12, 8, 8, 8), np.float32), cancel=token)


# --- Defaults and refusals -----------------------------------------------------------------------------


def test_the_default_method_follows_the_input() -> None:
    assert default_method(series=True) == "mppca" and default_method(series=False) == "r2r" == DenoiseConfig().method
    # A series too short for the Marchenko-Pastur fit takes the volume default, frame by frame.
    assert default_method(True, MPPCA_MIN_FRAMES) == "mppca" and default_method(True, MPPCA_MIN_FRAMES - 1) == "r2r"
    parser = build_parser()
    assert config_from_args(parser.parse_args(["denoise", "a.nii", "b.nii"]), series=True).method == "mppca"
    assert config_from_args(parser.parse_args(["denoise", "a.nii", "b.nii"]), series=False).method == "r2r"
    assert config_from_args(parser.parse_args(["denoise", "a.nii", "b.nii"]), series=True, frames=2).method == "r2r"
    chosen = config_from_args(parser.parse_args(["denoise", "a.nii", "b.nii", "--method", "blindspot"]), series=True)
    assert chosen.method == "blindspot"
    flags = config_from_args(parser.parse_args(["denoise", "a.nii", "b.nii", "--patch-radius", "3", "--wiener"]), series=True)
    assert flags.series.patch_radius == 3 and flags.series.wiener


def test_refusals_say_what_to_do(tmp_path: Path) -> None:
    volume = Volume(anatomy())
    with pytest.raises(ValueError, match="4D series only.*default for one volume is r2r"):
        denoise_volume(volume, DenoiseConfig.for_method("mppca"))
    few = Volume(np.stack([anatomy() + 0.01 * t for t in range(MPPCA_MIN_FRAMES - 1)]))
    with pytest.raises(ValueError, match=f"at least {MPPCA_MIN_FRAMES} frames.*this series has {MPPCA_MIN_FRAMES - 1}"):
        denoise_series(few, DenoiseConfig.for_method("mppca"))
    nan = np.stack([anatomy() + 0.01 * t for t in range(12)])
    nan[5, 3, 4, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        denoise_series(Volume(nan))
    with pytest.raises(ValueError, match="no test-time augmentation"):
        DenoiseConfig.for_method("mppca", prediction={"tta": True})
    with pytest.raises(ValueError, match="apply to method mppca only"):
        DenoiseConfig.for_method("r2r", series={"patch_radius": 3})
    with pytest.raises(ValueError, match="masks nothing"):
        DenoiseConfig.for_method("mppca", masking={"masked_fraction": 0.05})


def test_cli_default_on_a_4d_file_is_mppca_keeping_grid_frames_and_time_step(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(MODELS_FOLDER_VARIABLE, str(tmp_path / "models"))
    frames = make_series(anatomy(), frames=12, sigma=0.03, seed=7).noisy
    source = tmp_path / "bold.nii.gz"
    write_volume(Volume(frames, (2.0, 2.5, 3.0), (1.5, -4.0, 7.0), OBLIQUE, {"time_spacing": 1.5, "time_origin": 3.0}), source)
    output, residual = tmp_path / "out.nii.gz", tmp_path / "removed.nii.gz"
    code = cli.main(["denoise", str(source), str(output), "--residual", str(residual), "--noise-model", "gaussian", "--progress", "json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    summary = ProgressEvent.from_json(captured.out.splitlines()[-1]).summary
    assert summary["method"] == "mppca" and summary["frames"] == 12
    original = read_volume(source, allow_4d=True)
    for path in (output, residual):
        back = read_volume(path, allow_4d=True)
        assert back.array.shape == original.array.shape
        assert back.metadata["time_spacing"] == 1.5 and back.metadata["time_origin"] == 3.0
        np.testing.assert_allclose(back.spacing, original.spacing, rtol=1e-6)
        np.testing.assert_allclose(back.origin, original.origin, atol=1e-5)
        np.testing.assert_allclose(back.direction, original.direction, atol=1e-6)

    # Refused, exit code 2, nothing written: a model to save, MP-PCA on one volume, too few frames.
    one, short = tmp_path / "one.nii.gz", tmp_path / "short.nii.gz"
    write_volume(Volume(anatomy()), one)
    write_volume(Volume(frames[:4]), short)
    cases = [
        (["denoise", str(source), str(tmp_path / "x.nii"), "--save-model", "fmri"], "trains no network, so there is no model to save"),
        (["denoise", str(one), str(tmp_path / "y.nii"), "--method", "mppca"], "denoises 4D series only"),
        (["denoise", str(short), str(tmp_path / "z.nii"), "--method", "mppca"], "needs at least 10 frames"),
    ]
    for argv, words in cases:
        code = cli.main(argv + ["--progress", "json"])
        event = ProgressEvent.from_json(capsys.readouterr().out.splitlines()[-1])
        assert code == cli.EXIT_BAD_INPUT and event.stage == "error" and words in event.message, event.message
    assert not any((tmp_path / name).exists() for name in ("x.nii", "y.nii", "z.nii"))


def test_a_real_fmri_run_gets_mp_pca_by_default_with_a_residual_white_in_time(tmp_path: Path, capsys) -> None:
    """nibabel's functional.nii (20 frames of 17x21x3) through the command line's default: no truth, so
    the no-reference measures: temporal SNR rises, and the residual is close to white in time (lag-1
    autocorrelation near -1/frames, as for demeaned white noise) and its spread does not follow the anatomy."""
    nibabel = pytest.importorskip("nibabel")
    source = Path(nibabel.__file__).parent / "tests" / "data" / "functional.nii"
    if not source.is_file():
        pytest.skip("nibabel's test data lacks functional.nii (some packagers strip nibabel/tests/data)")
    output, residual = tmp_path / "out.nii.gz", tmp_path / "removed.nii.gz"
    code = cli.main(["denoise", str(source), str(output), "--residual", str(residual), "--progress", "json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    summary = ProgressEvent.from_json(captured.out.splitlines()[-1]).summary
    assert summary["method"] == "mppca" and summary["self_check"]["passed"]
    original, denoised = nibabel.load(source), nibabel.load(output)
    assert denoised.shape == original.shape
    np.testing.assert_allclose(denoised.header.get_zooms(), original.header.get_zooms(), rtol=1e-6)  # time step included
    before = np.asarray(original.get_fdata()).transpose(3, 2, 1, 0)
    after = np.asarray(denoised.get_fdata()).transpose(3, 2, 1, 0)
    removed = np.asarray(nibabel.load(residual).get_fdata()).transpose(3, 2, 1, 0)
    brain = mean_image_mask(before)
    assert temporal_snr(after, brain) > 1.3 * temporal_snr(before, brain)
    courses = removed[:, brain] - removed[:, brain].mean(axis=0)
    lag_one = np.mean((courses[1:] * courses[:-1]).sum(axis=0) / (courses**2).sum(axis=0))
    assert abs(lag_one) < 0.2, lag_one
    anatomy_following = np.corrcoef(removed.std(axis=0)[brain], before.mean(axis=0)[brain])[0, 1]
    assert abs(anatomy_following) < 0.3, anatomy_following


def test_a_failed_self_check_of_mp_pca_gives_advice_that_fits_it() -> None:
    from DeepDenoiseLib.denoise.pipeline import _self_check_failure

    said = _self_check_failure(residual_passed=True, error_passed=False, r2r_check=None, method="mppca")
    assert said is not None and "--method r2r" in said and "budget" not in said
    structure = _self_check_failure(residual_passed=False, error_passed=True, r2r_check=None, method="mppca")
    assert structure is not None and "the local PCA removed" in structure
    assert "longer budget" in str(_self_check_failure(residual_passed=True, error_passed=False, r2r_check=None, method="r2r"))
