"""R2R's antithetic recorruption: each patch trained on with noise z and -z keeps the loss unbiased and
makes its gradient less noisy; and the training arithmetic it runs in (core/precision.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.metrics import psnr
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.r2r_training import antithetic_noise, antithetic_pairing, recorrupted_pair
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401


def test_a_batch_pairs_each_patch_with_its_negated_noise_and_an_odd_batch_ends_with_a_single() -> None:
    assert antithetic_pairing(4).tolist() == [0, 0, 1, 1]
    assert antithetic_pairing(5).tolist() == [0, 0, 1, 1, 2]
    drawn = torch.randn((3, 2, 4, 4), generator=torch.Generator().manual_seed(0))
    noise = antithetic_noise(drawn, antithetic_pairing(5))
    assert torch.equal(noise[0], drawn[0]) and torch.equal(noise[1], -drawn[0])
    assert torch.equal(noise[3], -drawn[1]) and torch.equal(noise[4], drawn[2])


def test_antithetic_noise_keeps_the_gradient_unbiased_and_makes_it_less_noisy() -> None:
    """A linear denoiser ``w * u``: the R2R gradient in ``w`` averaged over a pair of recorruptions
    of the same noisy voxel. With ``z`` and ``-z`` its mean is that of two independent draws, and the
    terms linear in ``z`` (the target's extra noise) cancel, so its spread is far smaller."""
    generator = torch.Generator().manual_seed(4)
    count, signal, sigma, weight = 400_000, 0.3, 0.1, 0.8
    clean = signal * torch.randn((count, 1, 1, 1), generator=generator, dtype=torch.float64)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    first, second = (torch.randn(clean.shape, generator=generator, dtype=torch.float64) for _ in range(2))

    def gradient(noise: torch.Tensor) -> torch.Tensor:
        inputs, targets = recorrupted_pair(noisy, sigma, noise)
        return 2 * (weight * inputs[:, 0] - targets) * inputs[:, 0]

    antithetic = (gradient(first) + gradient(-first)).flatten() / 2
    independent = (gradient(first) + gradient(second)).flatten() / 2
    supervised = 2 * (weight * (clean + sigma * (1 + 0.25) ** 0.5 * first) - clean) * (clean + sigma * (1 + 0.25) ** 0.5 * first)
    assert float(antithetic.mean()) == pytest.approx(float(independent.mean()), abs=2e-4)
    assert float(antithetic.mean()) == pytest.approx(float(supervised.mean()), abs=2e-4)  # in expectation the supervised gradient
    assert float(antithetic.var()) < 0.5 * float(independent.var())


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_r2r_trains_in_either_arithmetic_beats_its_input_and_hands_back_standard_weights(precision: str) -> None:
    clean, noisy = noisy_phantom((12, 48, 48), sigma=0.1, seed=3)
    result = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian"}, training={"precision": precision}))
    assert result.summary["training_precision"] == precision
    assert result.summary["self_check"]["passed"] and result.summary["warnings"] == []
    assert psnr(clean, result.denoised.array, data_range=1.0) > psnr(clean, noisy, data_range=1.0) + 4.0
    assert all(parameter.is_contiguous() for parameter in result.model.network.parameters())


def test_auto_precision_names_what_it_chose_and_bfloat16_is_refused_for_the_other_methods() -> None:
    assert DenoiseConfig().training.precision == "auto"
    clean, noisy = noisy_phantom((12, 48, 48), sigma=0.1, seed=3)
    result = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian"}))
    assert result.summary["training_precision"] in ("float32", "bfloat16")
    assert np.isfinite(result.denoised.array).all()
    for method in ("n2v", "blindspot", "noise2noise"):
        with pytest.raises(ValueError, match="applies to method r2r"):
            DenoiseConfig.for_method(method, training={"precision": "bfloat16"})
        assert DenoiseConfig.for_method(method, training={"precision": "float32"}).training.precision == "float32"
    with pytest.raises(ValueError, match="precision"):
        DenoiseConfig.for_method("r2r", training={"precision": "half"})
