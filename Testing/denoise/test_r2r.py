"""Tests of the default method, r2r (denoise/r2r_training.py): the loss learns what supervised training
would, in expectation, where the supervised optimum is known in closed form; its held-out self-check
reads the error right; the noise-conditioned network is homogeneous; the shipped prior is the trained
one and is checked at every load; and a run starts from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.metrics import psnr
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise import r2r_training
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.noise_models import foreground
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.denoise.prior import SHIPPED_PRIOR, PriorArchitecture, load_prior, save_prior
from DeepDenoiseLib.denoise.r2r_training import ALPHA, estimated_gain_db, identity_loss, recorrupted_pair
from DeepDenoiseLib.nets.conditioned import NoiseConditionedUNet
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

#: The prior shipped must be the trained one, not a few steps' stand-in.
PRIOR_MIN_STEPS = 1000


def gaussian_scalar_samples(count: int, signal: float, sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clean, noisy)`` as ``(count, 1, 1, 1)`` batches: clean ~ N(0, signal^2), noisy = clean + N(0, sigma^2)."""
    generator = torch.Generator().manual_seed(seed)
    clean = signal * torch.randn((count, 1, 1, 1), generator=generator, dtype=torch.float64)
    return clean, clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)


def test_r2r_learns_the_supervised_optimum_of_a_linear_denoiser_at_the_recorrupted_level() -> None:
    """For x ~ N(0, S^2) and y = x + N(0, s^2), the best linear estimate w*y of x from an input of noise
    level s_in is S^2 / (S^2 + s_in^2). R2R never sees x, yet its least-squares w must be the
    supervised optimum at the recorrupted input's level, s_in^2 = s^2 (1 + alpha^2); a Noise2Self-style
    target (the noisy y itself) would learn w = 1 instead."""
    signal, sigma = 0.3, 0.2
    clean, noisy = gaussian_scalar_samples(400_000, signal, sigma)
    noise = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inputs, targets = recorrupted_pair(noisy, sigma, noise)
    inputs = inputs[:, 0]
    learned = float(torch.sum(inputs * targets) / torch.sum(inputs * inputs))
    supervised_optimum = signal**2 / (signal**2 + sigma**2 * (1 + ALPHA**2))
    assert learned == pytest.approx(supervised_optimum, abs=0.005)
    naive = float(torch.sum(inputs * noisy[:, 0]) / torch.sum(inputs * inputs))
    assert abs(naive - supervised_optimum) > 0.1  # the test tells the right target from a wrong one


@pytest.mark.parametrize("weight", [0.0, 0.5, 0.8, 1.0])
def test_the_r2r_loss_is_the_supervised_loss_plus_a_known_constant(weight: float) -> None:
    signal, sigma = 0.3, 0.1
    clean, noisy = gaussian_scalar_samples(400_000, signal, sigma, seed=2)
    noise = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    inputs, targets = recorrupted_pair(noisy, sigma, noise)
    r2r = float(torch.mean((weight * inputs[:, 0] - targets) ** 2))
    supervised = float(torch.mean((weight * inputs[:, 0] - clean[:, 0]) ** 2))
    assert r2r - supervised == pytest.approx(sigma**2 * (1 + 1 / ALPHA**2), rel=0.02)


def test_the_held_out_self_check_reads_the_error_of_the_identity_and_of_a_better_estimate() -> None:
    signal, sigma = 0.3, 0.1
    clean, noisy = gaussian_scalar_samples(400_000, signal, sigma, seed=4)
    noise = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    identity = identity_loss(noisy, sigma, noise)
    assert identity == pytest.approx(sigma**2 * (ALPHA + 1 / ALPHA) ** 2, rel=0.01)
    inputs, targets = recorrupted_pair(noisy, sigma, noise)
    weight = signal**2 / (signal**2 + sigma**2 * (1 + ALPHA**2))
    network = float(torch.mean((weight * inputs[:, 0] - targets) ** 2))
    true_error = float(torch.mean((weight * inputs[:, 0] - clean[:, 0]) ** 2))
    expected_gain = 10 * math.log10(sigma**2 * (1 + ALPHA**2) / true_error)
    assert estimated_gain_db(identity, network, sigma) == pytest.approx(expected_gain, abs=0.1)
    assert estimated_gain_db(identity, 0.5 * sigma**2, sigma) is None  # below the target noise: no estimate


def test_the_noise_conditioned_network_scales_with_its_input_and_noise_level() -> None:
    torch.manual_seed(0)
    network = NoiseConditionedUNet(context_slices=1, depth=2, base_channels=8).double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(network(3.0 * x, 0.3), 3.0 * network(x, 0.1))
    assert not any(name.endswith("bias") for name, _ in network.named_parameters())


def test_the_shipped_prior_is_the_trained_one_and_says_how_it_was_made() -> None:
    prior = load_prior()
    assert prior.architecture == PriorArchitecture()
    assert prior.training["steps"] >= PRIOR_MIN_STEPS
    assert "bench/train_prior.py" in prior.training["command"]
    assert SHIPPED_PRIOR.is_file()


def test_a_prior_file_changed_after_it_was_saved_is_refused(tmp_path) -> None:
    network = PriorArchitecture(context_slices=1, depth=1, base_channels=4).build()
    path = save_prior(tmp_path / "prior.safetensors", network, {"steps": 1, "command": "test"})
    loaded = load_prior(path)
    for name, tensor in network.state_dict().items():
        torch.testing.assert_close(loaded.state[name], tensor)
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x00\x00\x80\x7f" * 2  # overwrite the last weights
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256|damaged|changed"):
        load_prior(damaged)
    with pytest.raises(InputError, match="missing"):
        load_prior(tmp_path / "absent.safetensors")


def test_the_default_run_starts_from_the_prior_and_beats_its_input_after_a_few_steps() -> None:
    clean, noisy = noisy_phantom((12, 48, 48), sigma=0.1, seed=3)
    config = tiny_config("r2r", noise={"model": "gaussian"})
    assert config == tiny_config(DenoiseConfig().method, noise={"model": "gaussian"})
    result = denoise_volume(Volume(noisy), config)
    check = result.summary["self_check"]
    assert check["passed"] and check["r2r"]["passed"] and result.summary["warnings"] == []
    assert result.summary["initial_validation_loss"] >= result.summary["best_validation_loss"]  # the prior was scored first
    gain = psnr(clean, result.denoised.array, data_range=1.0) - psnr(clean, noisy, data_range=1.0)
    assert gain > 4.0, gain  # four training steps: the prior does the denoising
    assert 0.0 < check["estimated_gain_db"] < gain + 1.0  # SURE's estimate, without the clean volume

    # SURE's estimate is as good as the noise sigma it is given (estimated above: a few % low here,
    # which makes it conservative); given the true sigma, it reads the gain in the tissue, where it is summed.
    given = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian", "sigma": float(np.std(noisy - clean))}))
    tissue = foreground(noisy)
    given_gain = psnr(clean, given.denoised.array, data_range=1.0, mask=tissue) - psnr(clean, noisy, data_range=1.0, mask=tissue)
    assert given.summary["self_check"]["estimated_gain_db"] == pytest.approx(given_gain, abs=1.0)


def test_one_noise_level_per_patch_recorrupts_each_patch_as_its_own_level_would() -> None:
    generator = torch.Generator().manual_seed(0)
    batch, noise = torch.rand((3, 5, 8, 8), generator=generator), torch.randn((3, 5, 8, 8), generator=generator)
    levels = torch.tensor([0.05, 0.1, 0.2])
    inputs, targets = recorrupted_pair(batch, levels, noise)
    for index, level in enumerate(levels.tolist()):
        alone_input, alone_target = recorrupted_pair(batch[index : index + 1], level, noise[index : index + 1])
        assert torch.allclose(inputs[index : index + 1], alone_input) and torch.allclose(targets[index : index + 1], alone_target)
    assert identity_loss(batch, levels, noise) == pytest.approx(
        float(np.mean([identity_loss(batch[i : i + 1], float(levels[i]), noise[i : i + 1]) for i in range(3)]))
    )


def test_a_run_with_companions_learns_from_other_scans_of_other_sizes_and_noise_levels() -> None:
    clean, noisy = noisy_phantom((12, 48, 48), sigma=0.1, seed=3)
    _, other = noisy_phantom((10, 40, 56), sigma=0.05, seed=4)
    config = tiny_config("r2r", noise={"model": "gaussian"})
    broken = other.copy()
    broken[0, 0, :4] = np.nan
    companions = [Volume(other), Volume(np.ones((8, 8, 8), np.float32)), Volume(broken, metadata={"source_path": "/scans/broken.nii"})]
    result = denoise_volume(Volume(noisy), config, companions=companions)
    assert result.summary["trained_on_volumes"] == 2 and result.summary["self_check"]["passed"]  # the constant one is left out
    assert [warning for warning in result.summary["warnings"] if "/scans/broken.nii was left out" in warning and "NaN" in warning]
    assert result.denoised.array.shape == noisy.shape and result.model is not None
    assert result.model.volume_shape == noisy.shape  # the grid of the scan it denoised; the patch fits every scan
    assert psnr(clean, result.denoised.array, data_range=1.0) > psnr(clean, noisy, data_range=1.0) + 4.0
    with pytest.raises(ValueError, match="only method r2r learns from other scans"):
        denoise_volume(Volume(noisy), tiny_config("n2v"), companions=[Volume(other)])


def test_a_random_start_is_refused_a_prior_only_setting_and_the_prior_refuses_a_size() -> None:
    with pytest.raises(ValueError, match="model.base_channels.*pretrained prior"):
        DenoiseConfig.for_method("r2r", model={"base_channels": 8})
    with pytest.raises(ValueError, match="only method r2r has a pretrained prior"):
        DenoiseConfig.for_method("n2v", model={"init": "prior"})
    with pytest.raises(ValueError, match="model.norm"):
        DenoiseConfig.for_method("r2r", model={"init": "random", "norm": "group"})
    random_start = DenoiseConfig.for_method("r2r", model={"init": "random", "base_channels": 8, "depth": 1})
    assert random_start.model.base_channels == 8


def test_a_self_check_that_fails_returns_the_input_with_a_warning(monkeypatch) -> None:
    _, noisy = noisy_phantom((8, 32, 32), sigma=0.1)
    trained = r2r_training.train_r2r

    def failing(*args, **kwargs):
        model, check = trained(*args, **kwargs)
        return model, r2r_training.SelfCheck(check.identity_loss, check.identity_loss, None, passed=False)

    monkeypatch.setattr("DeepDenoiseLib.denoise.pipeline.train_r2r", failing)
    result = denoise_volume(Volume(noisy), tiny_config("r2r", noise={"model": "gaussian"}, prediction={"tta": True}))
    assert result.summary["self_check"]["passed"] is False and result.summary["self_check"]["r2r"]["passed"] is False
    assert any("did not beat returning its input" in warning for warning in result.summary["warnings"])
    np.testing.assert_array_equal(result.denoised.array, noisy)
    assert not np.any(result.residual.array) and not np.any(result.uncertainty.array)
