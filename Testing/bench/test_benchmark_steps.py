"""Tests of benchmark_steps.py's ablations of the default loss and its candidate prior: they change the
r2r module for the process that asks, and are refused for other methods, a non-positive strength or a
file that is not a prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import benchmark_steps
from DeepDenoiseLib.core.noise_simulation import add_poisson_noise
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.denoise import pipeline, r2r_training
from DeepDenoiseLib.denoise.noise_config import NoiseConfig
from DeepDenoiseLib.denoise.noise_models import fit_noise_model
from DeepDenoiseLib.denoise.prior import PriorArchitecture, save_prior
from Testing.support.phantoms import smooth_phantom


def parsed(monkeypatch: pytest.MonkeyPatch, *arguments: str):
    monkeypatch.setattr("sys.argv", ["benchmark_steps.py", "--steps", "50", *arguments])
    return benchmark_steps.parse_args()


def test_the_ablations_replace_alpha_and_the_learnable_voxels(monkeypatch: pytest.MonkeyPatch) -> None:
    # restored after the test: monkeypatch records the originals before apply_ablations replaces them
    monkeypatch.setattr(r2r_training, "ALPHA", r2r_training.ALPHA)
    monkeypatch.setattr(r2r_training, "recorruptible_voxels", r2r_training.recorruptible_voxels)
    air = np.zeros((12, 12, 12), dtype=np.float32)
    air[6:] = np.random.default_rng(0).normal(1.0, 0.1, (6, 12, 12))
    assert r2r_training._learnable_voxels([r2r_training.TrainingVolume(air, 0.1)], None)[0] is not None
    benchmark_steps.apply_ablations(parsed(monkeypatch, "--method", "r2r", "--r2r-alpha", "0.5", "--r2r-everywhere"))
    assert r2r_training.ALPHA == 0.5
    assert r2r_training._learnable_voxels([r2r_training.TrainingVolume(air, 0.1)], None) == [None]


def test_the_independent_ablation_draws_every_patch_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r2r_training, "ANTITHETIC", r2r_training.ANTITHETIC)
    assert r2r_training.antithetic_pairing(4).tolist() == [0, 0, 1, 1]
    benchmark_steps.apply_ablations(parsed(monkeypatch, "--method", "r2r", "--r2r-independent"))
    assert r2r_training.antithetic_pairing(4).tolist() == [0, 1, 2, 3]


def test_the_unweighted_ablation_hands_no_loss_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "intensity_weights", pipeline.intensity_weights)
    noisy = add_poisson_noise(smooth_phantom((12, 40, 40), seed=2), 60.0, seed=3)
    noise = fit_noise_model(noisy, NoiseConfig(model="poisson"))
    normalizer = PercentileNormalizer.fit(noise.forward(noisy), 0.5, 99.5)
    normalized = normalizer.forward(noise.forward(noisy))
    assert pipeline.intensity_weights(normalized, normalizer, noise) is not None
    benchmark_steps.apply_ablations(parsed(monkeypatch, "--method", "r2r", "--r2r-unweighted"))
    assert pipeline.intensity_weights(normalized, normalizer, noise) is None


def test_the_prior_option_starts_r2r_from_the_candidate_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(r2r_training, "load_prior", r2r_training.load_prior)
    candidate = PriorArchitecture(context_slices=1, depth=1, base_channels=4).build()
    path = save_prior(tmp_path / "candidate.safetensors", candidate, {"steps": 1, "command": "test"})
    benchmark_steps.apply_ablations(parsed(monkeypatch, "--method", "r2r", "--prior", str(path)))
    loaded = r2r_training.load_prior()
    assert loaded.architecture == PriorArchitecture(context_slices=1, depth=1, base_channels=4)
    torch.testing.assert_close(loaded.state["unet.head.weight"], candidate.state_dict()["unet.head.weight"])


def test_a_prior_option_that_is_not_a_prior_is_refused_before_training(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(r2r_training, "load_prior", r2r_training.load_prior)
    (tmp_path / "not_a_prior.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError):
        benchmark_steps.apply_ablations(parsed(monkeypatch, "--method", "r2r", "--prior", str(tmp_path / "not_a_prior.safetensors")))


@pytest.mark.parametrize(
    "arguments",
    [
        ("--method", "blindspot", "--r2r-unweighted"),
        ("--method", "blindspot", "--r2r-everywhere"),
        ("--method", "blindspot", "--r2r-independent"),
        ("--method", "blindspot", "--prior", "prior.safetensors"),
        ("--method", "r2r", "--r2r-alpha", "0"),
    ],
)
def test_ablations_that_cannot_apply_are_refused(monkeypatch: pytest.MonkeyPatch, arguments: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parsed(monkeypatch, *arguments)
