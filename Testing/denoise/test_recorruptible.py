"""Tests of where R2R learns (denoise/recorruptible.py and its use in patches.py and r2r_training.py):
noise-free and Rayleigh air are left out, noise at sigma and tissue are not; over the voxels left in,
the R2R loss learns the supervised optimum that noise-free voxels would pull it away from; patches
carry the mask and are drawn where it is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DeepDenoiseLib.denoise.noise_correlation import NoiseCorrelation
from DeepDenoiseLib.denoise.patches import PatchGeometry, PatchSampler
from DeepDenoiseLib.denoise.r2r_training import ALPHA, TrainingVolume, _learnable_voxels, identity_loss, recorrupted_pair
from DeepDenoiseLib.denoise.recorruptible import MIN_SPREAD, local_spread, recorruptible_voxels

SIGMA = 0.1


def half_air(air: str, seed: int = 0) -> np.ndarray:
    """A 32^3 volume: tissue (a smooth ramp plus Gaussian noise at SIGMA) in the upper half of k, and
    air (``none``: exact zeros; ``rayleigh``: a magnitude image's air; ``gaussian``: noise at SIGMA) below."""
    rng = np.random.default_rng(seed)
    shape = (32, 32, 32)
    volume = 0.5 + 0.01 * np.arange(32)[None, None, :] + SIGMA * rng.standard_normal(shape)
    lower = volume[:16]
    if air == "none":
        lower[...] = 0.0
    elif air == "rayleigh":
        lower[...] = np.hypot(SIGMA * rng.standard_normal(lower.shape), SIGMA * rng.standard_normal(lower.shape))
    else:
        lower[...] = SIGMA * rng.standard_normal(lower.shape)
    return volume.astype(np.float32)


@pytest.mark.parametrize("air", ["none", "rayleigh"])
def test_air_without_noise_at_sigma_is_left_out_and_the_tissue_is_not(air: str) -> None:
    learnable = recorruptible_voxels(half_air(air), SIGMA)
    assert learnable is not None and learnable.dtype == np.float32
    # away from the boundary, where the 5^3 block sees one side only, and from the volume's faces
    assert np.mean(learnable[2:13, 2:-2, 2:-2]) < 0.002
    # all but about one in a thousand (pure noise spreads that rarely under the threshold)
    assert np.mean(learnable[19:]) > 0.995


def test_noise_at_sigma_everywhere_leaves_nothing_out() -> None:
    assert recorruptible_voxels(half_air("gaussian"), SIGMA) is None
    # the local spread of pure noise at sigma stays clear of the threshold (away from the volume's
    # faces, where a mirrored block holds fewer distinct voxels)
    spread = local_spread(half_air("gaussian"))[2:-2, 2:-2, 2:-2]
    assert np.mean(spread < MIN_SPREAD * SIGMA) < 0.001


def test_a_sigma_far_above_the_volume_s_noise_leaves_nothing_out() -> None:
    # every voxel would be left out: the sigma is wrong, not the volume, and the rule is not applied
    assert recorruptible_voxels(half_air("gaussian"), 10 * SIGMA) is None


def test_a_series_is_read_frame_by_frame() -> None:
    series = np.stack([half_air("none", seed=1), half_air("none", seed=2)])
    learnable = recorruptible_voxels(series, SIGMA)
    assert learnable is not None and learnable.shape == series.shape
    assert np.array_equal(learnable[0], recorruptible_voxels(series[0], SIGMA))


def test_over_the_learnable_voxels_r2r_learns_the_supervised_optimum_that_noise_free_voxels_spoil() -> None:
    """Scalar samples: half are tissue (x ~ N(0, S^2), noise at sigma), half are noise-free (y = x = 0).
    Over all of them, the R2R least-squares weight of a linear denoiser is pulled away from the
    supervised optimum at the recorrupted level; over the learnable ones it is that optimum."""
    signal, sigma, count = 0.3, 0.2, 200_000
    generator = torch.Generator().manual_seed(0)
    clean = signal * torch.randn((count, 1, 1, 1), generator=generator, dtype=torch.float64)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    noisy = torch.cat([noisy, torch.zeros_like(noisy)])
    learnable = torch.cat([torch.ones(count, 1, 1), torch.zeros(count, 1, 1)]).double()
    noise = torch.randn(noisy.shape, generator=generator, dtype=torch.float64)
    inputs, targets = recorrupted_pair(noisy, sigma, noise)
    inputs = inputs[:, 0]
    optimum = signal**2 / (signal**2 + sigma**2 * (1 + ALPHA**2))
    everywhere = float(torch.sum(inputs * targets) / torch.sum(inputs * inputs))
    left_in = float(torch.sum(learnable * inputs * targets) / torch.sum(learnable * inputs * inputs))
    assert left_in == pytest.approx(optimum, abs=0.01)
    assert abs(everywhere - optimum) > 0.1
    # the identity's held-out loss reads the tissue's only: sigma^2 (alpha + 1/alpha)^2
    assert identity_loss(noisy, sigma, noise, learnable) == pytest.approx(sigma**2 * (ALPHA + 1 / ALPHA) ** 2, rel=0.02)


def test_patches_carry_the_learnable_voxels_and_are_drawn_where_they_are() -> None:
    volume = np.arange(32**3, dtype=np.float32).reshape(32, 32, 32)
    learnable = np.zeros(volume.shape, dtype=np.float32)
    learnable[:, :, 24:] = 1.0  # the last quarter of i
    geometry = PatchGeometry((8, 8), 1)
    sampler = PatchSampler(volume, geometry, 0.0, np.random.default_rng(0), (0, 1, 2), learnable=learnable)
    assert sampler.channels == geometry.channels + 1
    patches = sampler.training_batch(400)
    assert patches.shape == (400, 4, 8, 8)
    # the last channel is the mask at the centre slice's voxels, turned and flipped with it
    expected = learnable.reshape(-1)[patches[:, 0].astype(np.int64)]
    assert np.array_equal(patches[:, -1], expected)
    # a quarter of random patches would touch it; almost every drawn patch does
    assert np.mean(patches[:, -1].max(axis=(1, 2)) > 0) > 0.9


def test_the_rule_is_not_applied_to_correlated_noise_and_fills_in_for_volumes_without_air() -> None:
    air, noisy = half_air("none"), half_air("gaussian")
    correlation = NoiseCorrelation(SIGMA, ((0.5,), (0.5,), (0.5,)))
    assert _learnable_voxels([TrainingVolume(air, SIGMA)], correlation) == [None]
    masks = _learnable_voxels([TrainingVolume(air, SIGMA), TrainingVolume(noisy, SIGMA)], None)
    assert masks[0] is not None and masks[0].mean() < 0.7
    assert masks[1] is not None and np.all(masks[1] == 1.0)
    assert _learnable_voxels([TrainingVolume(noisy, SIGMA)], None) == [None]
