"""Tests of R2R's loss weights (denoise/loss_weights.py): a weighted R2R loss still learns what the
weighted supervised loss would; under Poisson noise the weights follow the inverse Anscombe's
squared slope, and elsewhere there are none; and a run hands each trained volume its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.noise_simulation import add_poisson_noise
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise import r2r_training
from DeepDenoiseLib.denoise.loss_weights import intensity_weights
from DeepDenoiseLib.denoise.noise_config import NoiseConfig
from DeepDenoiseLib.denoise.noise_models import fit_noise_model
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.r2r_training import ALPHA, TrainingVolume, identity_loss, recorrupted_pair
from Testing.support.phantoms import noisy_phantom, single_thread, smooth_phantom, tiny_config  # noqa: F401


def test_a_weighted_r2r_loss_learns_the_weighted_supervised_optimum() -> None:
    """With weights that depend on the clean signal only (as the smoothed-volume weights nearly do),
    the least-squares linear estimate under the weighted R2R loss is the weighted supervised one,
    which differs from the unweighted one (so the test tells them apart)."""
    signal, sigma, count = 0.3, 0.2, 400_000
    generator = torch.Generator().manual_seed(0)
    clean = signal * torch.randn((count, 1, 1, 1), generator=generator, dtype=torch.float64)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    noise = torch.randn(noisy.shape, generator=generator, dtype=torch.float64)
    weights = (1.0 + 10.0 * clean[:, 0] ** 2).reshape(-1)
    inputs, targets = recorrupted_pair(noisy, sigma, noise)
    inputs, targets, truth = inputs[:, 0].reshape(-1), targets.reshape(-1), clean[:, 0].reshape(-1)
    learned = float(torch.sum(weights * inputs * targets) / torch.sum(weights * inputs**2))
    supervised = float(torch.sum(weights * inputs * truth) / torch.sum(weights * inputs**2))
    unweighted = float(torch.sum(inputs * truth) / torch.sum(inputs**2))
    assert learned == pytest.approx(supervised, abs=0.01)
    assert abs(supervised - unweighted) > 0.1
    # the identity's weighted held-out loss still reads the known constant the self-check relies on
    weight_map = weights.reshape(-1, 1, 1)
    assert identity_loss(noisy, sigma, noise, weight_map) == pytest.approx(sigma**2 * (ALPHA + 1 / ALPHA) ** 2, rel=0.01)


def _prepared(noisy: np.ndarray, model: str) -> tuple[np.ndarray, PercentileNormalizer, object]:
    noise = fit_noise_model(noisy, NoiseConfig(model=model))
    stabilised = noise.forward(noisy)
    normalizer = PercentileNormalizer.fit(stabilised, 0.5, 99.5)
    return normalizer.forward(stabilised), normalizer, noise


def test_under_poisson_noise_the_weights_follow_the_intensity_and_elsewhere_there_are_none() -> None:
    clean = np.full((16, 48, 48), 0.2, dtype=np.float32)
    clean[:, :, 24:] = 0.8  # a dark half and a bright half, four times brighter
    noisy = add_poisson_noise(clean, 60.0, seed=1)
    normalized, normalizer, noise = _prepared(noisy, "poisson")
    weights = intensity_weights(normalized, normalizer, noise)  # type: ignore[arg-type]
    assert weights is not None and weights.shape == noisy.shape and weights.dtype == np.float32
    assert float(np.mean(weights)) == pytest.approx(1.0, rel=1e-4)
    dark, bright = float(np.median(weights[:, :, 4:20])), float(np.median(weights[:, :, 28:44]))
    # the inverse Anscombe's slope grows as the square root of the signal: its square, as the signal
    assert bright / dark == pytest.approx(4.0, rel=0.15)
    series = np.stack([normalized, normalized])  # a series: smoothed within each frame only
    series_weights = intensity_weights(series, normalizer, noise)  # type: ignore[arg-type]
    assert series_weights is not None and np.allclose(series_weights[0], weights, rtol=1e-4)
    _, gaussian = noisy_phantom((8, 32, 32), sigma=0.1)
    for model in ("gaussian", "rician"):
        assert intensity_weights(*_prepared(np.abs(gaussian), model)) is None  # type: ignore[arg-type]


def test_the_recorruptible_mask_and_the_weights_combine_and_a_volume_without_either_gets_ones() -> None:
    other = np.random.default_rng(0).normal(0.5, 0.1, (8, 16, 32)).astype(np.float32)
    volume = other.copy()
    volume[:, :, :16] = 0.0  # noise-free air: not recorruptible
    weights = np.full(volume.shape, 2.0, dtype=np.float32)
    masks = r2r_training._learnable_voxels([TrainingVolume(volume, 0.1, weights), TrainingVolume(other, 0.1)], None)
    assert masks[0] is not None and float(np.max(masks[0][:, :, :8])) == 0.0  # zero stays zero, whatever the weight
    assert set(np.unique(masks[0]).tolist()) == {0.0, 2.0} and float(np.mean(masks[0][:, :, 24:])) > 1.9
    assert masks[1] is not None and np.all(masks[1] == 1.0)
    weighted = r2r_training._learnable_voxels([TrainingVolume(other, 0.1, weights)], None)
    assert weighted[0] is not None and np.all(weighted[0] == 2.0)
    assert r2r_training._learnable_voxels([TrainingVolume(other, 0.1)], None) == [None]


def test_a_poisson_run_trains_every_volume_with_its_own_weights_and_a_gaussian_one_without(monkeypatch) -> None:
    handed: list[list] = []
    train = r2r_training.train_r2r

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        handed.append([volume.loss_weights for volume in args[0]])
        return train(*args, **kwargs)

    monkeypatch.setattr("DeepDenoiseLib.denoise.pipeline.train_r2r", recording)
    clean = smooth_phantom((12, 40, 40), seed=2)
    noisy, other = add_poisson_noise(clean, 60.0, seed=3), add_poisson_noise(clean[:, :, :36], 30.0, seed=4)
    result = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "poisson"}), companions=[Volume(other)])
    assert result.summary["self_check"]["passed"]
    assert len(handed[0]) == 2 and [w.shape for w in handed[0]] == [noisy.shape, other.shape]
    _, gaussian = noisy_phantom((12, 40, 40), sigma=0.1)
    denoise_volume(Volume(gaussian), tiny_config("r2r", noise={"model": "gaussian"}))
    assert handed[1] == [None]
