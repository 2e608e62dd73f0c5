"""Tests of the no-reference measures of bench/no_reference.py (what benchmark_real.py reports): a
residual that is pure noise reads as noise, a blur that removes edges reads as anatomy removed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bench.no_reference import frame_difference_noise, no_reference_measures, series_measures


def blocks_phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A clean volume of bright boxes on a mid-grey body (many sharp edges) and its noisy version."""
    clean = np.full((32, 48, 48), 0.4)
    clean[:, :4], clean[:, -4:], clean[:, :, :4], clean[:, :, -4:] = 0.0, 0.0, 0.0, 0.0
    for z, y, x in [(4, 8, 8), (4, 26, 26), (16, 8, 26), (16, 26, 8)]:
        clean[z : z + 10, y : y + 12, x : x + 12] = 0.9
    return clean, clean + np.random.default_rng(seed).normal(0.0, 0.05, clean.shape)


def test_a_residual_that_is_the_noise_reads_as_noise() -> None:
    clean, noisy = blocks_phantom()
    measures = no_reference_measures(noisy, clean)  # the ideal denoiser
    assert measures["noise_flat_before"] == pytest.approx(0.05, rel=0.15) and measures["noise_flat_after"] < 0.01
    assert abs(measures["residual_edge_correlation"]) < 0.1
    assert measures["residual_edge_ratio"] == pytest.approx(1.0, abs=0.15)


def test_a_blur_that_removes_edges_leaves_them_in_the_residual() -> None:
    clean, noisy = blocks_phantom()
    blurred = ndimage.gaussian_filter(noisy, 2.0)
    measures = no_reference_measures(noisy, blurred)
    assert measures["noise_flat_after"] < 0.5 * measures["noise_flat_before"]  # it removes noise too
    assert measures["residual_edge_correlation"] > 0.3 and measures["residual_edge_ratio"] > 2.0


def test_volumes_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="two 3D volumes of one shape"):
        no_reference_measures(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_a_residual_white_in_time_reads_as_noise_and_a_removed_drift_does_not() -> None:
    rng = np.random.default_rng(1)
    clean, _ = blocks_phantom()
    frames = 40
    drift = np.linspace(-0.1, 0.1, frames)[:, None, None, None] * (clean > 0.2)
    truth = clean[np.newaxis] + drift
    noisy = truth + rng.normal(0.0, 0.05, truth.shape)
    mask = clean > 0.2
    ideal = series_measures(noisy, truth, mask)
    assert abs(ideal["residual_lag1"]) < 0.1 and abs(ideal["residual_anatomy_correlation"]) < 0.1
    flattened = series_measures(noisy, np.broadcast_to(noisy.mean(axis=0), noisy.shape), mask)  # removes the drift too
    assert flattened["residual_lag1"] > 0.3 and flattened["removed_share"] > ideal["removed_share"]


def test_two_frames_read_their_noise_and_its_correlation_not_the_anatomy() -> None:
    clean, _ = blocks_phantom()
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(2):
        noise = ndimage.gaussian_filter(rng.standard_normal(clean.shape), (0.0, 0.7, 0.0))
        frames.append(clean + 0.05 * noise / noise.std())
    reading = frame_difference_noise(*frames)
    assert reading["sigma"] == pytest.approx(0.05, rel=0.1)  # the boxes' edges do not reach it
    k, j, i = reading["neighbour_correlation_kji"]  # type: ignore[misc]
    assert abs(k) < 0.05 and abs(i) < 0.05 and j == pytest.approx(np.exp(-1.0 / (4 * 0.7**2)), abs=0.05)
    with pytest.raises(ValueError, match="two 3D frames"):
        frame_difference_noise(frames[0], frames[1][:-1])
