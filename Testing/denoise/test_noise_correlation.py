"""Spatially correlated noise: its estimate from the noisy volume, the kernels and patch noise that
reproduce it, R2R's independence of input and target noises with it, SURE with it, and a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from DeepDenoiseLib.core.metrics import estimate_foreground_noise_sigma, psnr
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.correlated_noise import CorrelatedNoise
from DeepDenoiseLib.denoise.noise_config import NoiseConfig
from DeepDenoiseLib.denoise.noise_correlation import WHITE_BELOW, NoiseCorrelation, estimate_noise_correlation, has_thin_foreground
from DeepDenoiseLib.denoise.noise_models import fit_noise_model
from DeepDenoiseLib.denoise.patches import PatchGeometry, PatchSampler
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.r2r_training import ALPHA
from DeepDenoiseLib.denoise.self_check import check_error_estimate
from Testing.support.phantoms import single_thread, smooth_phantom, tiny_config  # noqa: F401


def correlated(shape: tuple[int, ...], widths: tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """Unit-variance noise correlated by a Gaussian of ``widths`` voxels along k, j, i (0: white along it)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), widths, mode="wrap")
    return (noise / noise.std()).astype(np.float32)


def lag_correlation(array: np.ndarray, axis: int, lag: int = 1) -> float:
    head = np.take(array, range(array.shape[axis] - lag), axis=axis)
    tail = np.take(array, range(lag, array.shape[axis]), axis=axis)
    return float(np.corrcoef(head.ravel(), tail.ravel())[0, 1])


def test_white_noise_reads_white_with_its_sigma() -> None:
    clean = smooth_phantom((40, 64, 64))
    estimate = estimate_noise_correlation(clean + 0.05 * np.random.default_rng(1).standard_normal(clean.shape).astype(np.float32))
    assert estimate is not None and estimate.is_white
    assert estimate.sigma == pytest.approx(0.05, rel=0.06)


def test_correlated_noise_reads_its_correlation_along_each_axis_and_its_full_spread() -> None:
    clean = smooth_phantom((40, 64, 64))
    noise = correlated(clean.shape, (0.0, 0.6, 0.9), seed=2)
    estimate = estimate_noise_correlation(clean + 0.05 * noise)
    assert estimate is not None and not estimate.is_white
    for axis in range(3):
        assert estimate.lags[axis][0] == pytest.approx(lag_correlation(noise, axis), abs=0.08), axis
    assert estimate.sigma == pytest.approx(0.05, rel=0.1)  # the finest-scale estimate reads about half of it
    assert estimate.to_summary()["neighbour_correlation_kji"] == [round(axis[0], 3) for axis in estimate.lags]


def test_a_series_reads_the_median_of_its_frames_and_a_thin_or_tiny_volume_reads_nothing() -> None:
    clean = smooth_phantom((40, 40, 40))  # sampled alike along every axis (see the next test)
    series = np.stack([clean + 0.05 * correlated(clean.shape, (0.7, 0.7, 0.7), seed=seed) for seed in range(4)])
    estimate = estimate_noise_correlation(series)
    assert estimate is not None and min(axis[0] for axis in estimate.lags) > 0.3
    assert estimate_noise_correlation(series[0, :4]) is None  # 4 slices: too thin to reach the far lag
    assert estimate_noise_correlation(np.zeros((8, 8, 8), np.float32)) is None


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2)])
def test_the_estimate_does_not_depend_on_which_way_the_axes_are_stored(axes: tuple[int, ...]) -> None:
    # A DICOM series of a left-handed grid reads with its slices in the other order (bench/dicom_series.py);
    # the same voxels must give the same noise estimate.
    clean = smooth_phantom((24, 48, 40))
    noisy = clean + 0.05 * correlated(clean.shape, (0.0, 0.7, 0.5), seed=5)
    stored, flipped = estimate_noise_correlation(noisy), estimate_noise_correlation(np.ascontiguousarray(np.flip(noisy, axes)))
    assert stored is not None and flipped is not None
    assert flipped.sigma == pytest.approx(stored.sigma, rel=1e-6)
    assert np.allclose(flipped.lags, stored.lags, atol=1e-6)


def test_anatomy_that_grows_steeply_with_the_lag_reads_as_less_correlation_not_more() -> None:
    # The phantom squeezed to 24 slices changes fast along k, so the differences keep growing with the
    # lag there; that growth is taken for anatomy and taken out, which errs towards white noise.
    # Along the other axes a white-noise reading strays past WHITE_BELOW now and then on a volume this
    # small (2 of 20 seeds here, 0.13 at most; 1 of 20 before the diagonals were pooled): k is the point.
    clean = smooth_phantom((24, 64, 64))
    estimate = estimate_noise_correlation(clean + 0.05 * correlated(clean.shape, (0.0, 0.0, 0.0), seed=7))
    assert estimate is not None and estimate.lags[0][0] < WHITE_BELOW


def test_a_ct_in_hounsfield_units_is_read_in_all_its_flat_voxels_not_in_its_bright_skull() -> None:
    head = smooth_phantom((40, 64, 64)) > 0.05
    skull = ndimage.binary_dilation(head, iterations=3) & ~head
    clean = np.where(head, 40.0 * smooth_phantom((40, 64, 64)), -1000.0).astype(np.float32)
    clean[skull] = 1200.0
    noise = correlated(clean.shape, (0.8, 0.8, 0.8), seed=8)
    noisy = clean + 8.0 * noise
    estimate = estimate_noise_correlation(noisy, magnitude=False)  # as the gaussian model reads it
    assert estimate is not None and estimate.sigma == pytest.approx(8.0, rel=0.2)  # 7.7 on the full-size CT-like head (bench)
    for axis in range(3):
        assert estimate.lags[axis][0] == pytest.approx(lag_correlation(noise, axis), abs=0.12)  # 0.65-0.67 for 0.68 at full size
    white = estimate_noise_correlation(clean + 8.0 * correlated(clean.shape, (0.0, 0.0, 0.0), seed=8), magnitude=False)
    assert white is not None and white.is_white and white.sigma == pytest.approx(8.0, rel=0.1)
    skull_only = estimate_noise_correlation(noisy)  # a magnitude image's foreground: here the skull alone
    assert skull_only is None or abs(skull_only.sigma - 8.0) > abs(estimate.sigma - 8.0)


@pytest.mark.parametrize("correlation", ["auto", "white"])
def test_a_ct_with_white_noise_takes_its_sigma_from_flat_tissue_not_from_the_skull_edges(correlation: str) -> None:
    head = smooth_phantom((40, 64, 64)) > 0.05
    skull = ndimage.binary_dilation(head, iterations=3) & ~head
    clean = np.where(head, 40.0 * smooth_phantom((40, 64, 64)), -1000.0).astype(np.float32)
    clean[skull] = 1200.0
    noisy = clean + 8.0 * correlated(clean.shape, (0.0, 0.0, 0.0), seed=9)
    assert has_thin_foreground(noisy) and not has_thin_foreground(smooth_phantom((40, 64, 64)))
    finest_scale = estimate_foreground_noise_sigma(noisy)  # reads the skull's edges
    noise = fit_noise_model(noisy, NoiseConfig(model="gaussian", correlation=correlation))
    assert noise.correlation is None and noise.sigma == pytest.approx(8.0, rel=0.1)
    assert abs(finest_scale - 8.0) > 2 * abs(noise.sigma - 8.0)


def test_the_kernels_give_white_noise_the_correlation_they_were_made_from() -> None:
    correlation = NoiseCorrelation(0.1, ((0.5, 0.1, 0.0), (0.25, 0.0, 0.0), (0.0, 0.0, 0.0)))
    coloured = correlation.colour(np.random.default_rng(3).standard_normal((64, 64, 64)))
    assert float(coloured.var()) == pytest.approx(1.0, abs=0.03)
    assert lag_correlation(coloured, 0) == pytest.approx(0.5, abs=0.04) and lag_correlation(coloured, 0, 2) == pytest.approx(0.1, abs=0.04)
    assert lag_correlation(coloured, 1) == pytest.approx(0.25, abs=0.04)
    assert abs(lag_correlation(coloured, 2)) < 0.04
    assert all(np.allclose(kernel, kernel[::-1]) and np.sum(kernel**2) == pytest.approx(1.0) for kernel in correlation.kernels())


def test_patch_noise_follows_the_volume_axes_each_patch_lies_along() -> None:
    noise = CorrelatedNoise(NoiseCorrelation(0.1, ((0.0,) * 3, (0.0,) * 3, (0.6, 0.15, 0.0))))  # along i only
    generator = torch.Generator().manual_seed(0)
    rows_cut = noise.draw((400, 5, 16, 16), np.tile([0, 1, 2], (400, 1)), generator).numpy()  # i along the columns
    assert lag_correlation(rows_cut, 3) == pytest.approx(0.6, abs=0.05) and abs(lag_correlation(rows_cut, 2)) < 0.05
    across = noise.draw((400, 5, 16, 16), np.tile([2, 0, 1], (400, 1)), generator).numpy()  # i across the slice stack
    # channels are z, z-1, z+1, z-2, z+2: z and z+1 are neighbours, z-1 and z+1 two apart
    assert np.corrcoef(across[:, 0].ravel(), across[:, 2].ravel())[0, 1] == pytest.approx(0.6, abs=0.05)
    assert np.corrcoef(across[:, 1].ravel(), across[:, 2].ravel())[0, 1] == pytest.approx(0.15, abs=0.05)
    assert abs(lag_correlation(across, 3)) < 0.05
    cubes = noise.draw((100, 1, 8, 12, 12), np.tile([2, 1, 0], (100, 1)), generator).numpy()  # a 3D network's patches
    assert lag_correlation(cubes, 2) == pytest.approx(0.6, abs=0.05) and abs(lag_correlation(cubes, 4)) < 0.05


@pytest.mark.parametrize("dimensions", ["2d", "3d"])
def test_the_sampler_says_which_volume_axis_lies_along_each_patch_axis(dimensions: str) -> None:
    volume = np.broadcast_to(np.arange(24, dtype=np.float32)[:, None, None], (24, 24, 24)).copy()  # varies along k only
    geometry = PatchGeometry((8, 8) if dimensions == "2d" else (8, 8, 8), context_slices=2 if dimensions == "2d" else 0)
    sampler = PatchSampler(volume, geometry, 0.0, np.random.default_rng(0), slice_axes=(0, 1, 2))
    patches, axes = sampler.training_batch_with_axes(64)
    assert axes.shape == (64, 3) and all(sorted(row) == [0, 1, 2] for row in axes)
    stacked = patches if dimensions == "2d" else patches[:, 0]  # (B, stack or depth, rows, columns)
    for patch, row in zip(stacked, axes):
        varying = [int(np.ptp(patch, axis=dim).max() > 0) for dim in range(3)]  # which patch axes k changes along
        assert varying == [int(axis == 0) for axis in row], (row, varying)
    if dimensions == "2d":
        assert {int(row[0]) for row in axes} == {0, 1, 2}  # slices cut across every axis


def test_recorrupting_with_the_noise_correlation_makes_input_and_target_noise_independent() -> None:
    correlation = NoiseCorrelation(1.0, ((0.5, 0.1, 0.0),) * 3)
    generator = torch.Generator().manual_seed(1)
    shape, axes = (200, 1, 12, 12, 12), np.tile([0, 1, 2], (200, 1))
    noise = CorrelatedNoise(correlation).draw(shape, axes, generator)  # the volume's own noise
    for recorruption, dependent in (
        (CorrelatedNoise(correlation).draw(shape, axes, generator), False),
        (torch.randn(shape, generator=generator), True),
    ):
        first, second = (noise + ALPHA * recorruption).numpy(), (noise - recorruption / ALPHA).numpy()
        neighbours = float(np.mean(first[..., :-1] * second[..., 1:]))  # the noises' covariance one voxel apart
        assert (abs(neighbours) > 0.3) is dependent, neighbours
        assert abs(float(np.mean(first * second))) < 0.05


def test_sure_reads_the_error_of_a_linear_filter_on_correlated_noise_only_when_told_the_correlation() -> None:
    clean = smooth_phantom((32, 48, 48))
    noise = correlated(clean.shape, (0.7, 0.7, 0.7), seed=5)
    noisy = clean + 0.05 * noise
    estimate = estimate_noise_correlation(noisy)
    assert estimate is not None

    def smooth(values: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(values, 1.0, mode="wrap")

    true_error = float(np.mean((smooth(noisy) - clean) ** 2)) / 0.05**2
    told = check_error_estimate(smooth, noisy, 0.05, colour=estimate.colour).error_to_noise
    white = check_error_estimate(smooth, noisy, 0.05).error_to_noise
    assert told == pytest.approx(true_error, rel=0.25)  # one Monte-Carlo probe, and an estimated correlation
    assert white is not None and white < 0.7 * true_error  # white SURE misses the correlated noise the filter keeps


def test_a_run_on_correlated_noise_recorrupts_alike_and_beats_taking_the_noise_for_white() -> None:
    clean = smooth_phantom((20, 48, 48), seed=4)
    noisy = clean + 0.05 * correlated(clean.shape, (0.7, 0.7, 0.7), seed=6)
    training = {"steps_per_epoch": 5, "max_epochs": 4}
    auto = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian"}, training=training))
    white = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian", "correlation": "white"}, training=training))
    assert min(auto.summary["noise_parameters"]["neighbour_correlation_kji"]) > 0.3
    assert "neighbour_correlation_kji" not in white.summary["noise_parameters"]
    assert auto.summary["noise_parameters"]["sigma"] > 1.5 * white.summary["noise_parameters"]["sigma"]
    assert auto.summary["self_check"]["passed"]
    gain, white_gain = (psnr(clean, result.denoised.array, data_range=1.0) - psnr(clean, noisy, data_range=1.0) for result in (auto, white))
    assert gain > white_gain + 1.0, (gain, white_gain)
    blind = denoise_volume(Volume(noisy), tiny_config("n2v", noise={"model": "gaussian"}))
    assert [warning for warning in blind.summary["warnings"] if "assumes independent noise" in warning]
