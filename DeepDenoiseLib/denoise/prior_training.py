"""Pretraining the noise-conditioned prior on procedural volumes (synthetic_volumes.py), in the one
training loop (core/training_loop.py).

Every step draws 2.5D patches (a slice and its neighbours, from any of the three orientations, flipped
and transposed at random) from a pool of synthetic volumes that is slowly renewed, scales and shifts
their intensities at random, adds Gaussian noise of a random level (log-uniform over
``sigma_range``), and trains the network, told that level, to return the clean slice. The loss is the
squared error divided by the noise level, so that low and high levels weigh alike in the gradient.
It trains in bfloat16 where that is faster (core/precision.py), as the fine-tuning does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from DeepDenoiseLib.core.precision import choose_precision, loss_probe
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback
from DeepDenoiseLib.core.training_loop import TrainingHistory, TrainingLimits, cosine_decay, fit, seeded_run, set_learning_rate
from DeepDenoiseLib.denoise.patches import context_stack, oriented
from DeepDenoiseLib.denoise.prior import Prior, PriorArchitecture
from DeepDenoiseLib.denoise.synthetic_volumes import synthetic_volume
from DeepDenoiseLib.nets.conditioned import NoiseConditionedUNet


@dataclass(frozen=True)
class PriorTrainingSettings:
    """How the prior is trained (bench/train_prior.py's flags)."""

    steps: int = 30000
    budget_seconds: Optional[float] = None
    batch_size: int = 8
    patch_size: int = 64
    volume_size: int = 64
    pool_size: int = 96
    refresh_every: int = 10
    learning_rate: float = 1e-3
    gradient_clip: float = 1.0
    sigma_range: tuple[float, float] = (0.004, 0.3)
    gain_range: tuple[float, float] = (0.2, 1.5)
    offset_range: tuple[float, float] = (-0.2, 0.2)
    validation_patches: int = 32
    steps_per_epoch: int = 250
    seed: int = 0
    threads: Optional[int] = None
    device: str = "auto"
    precision: str = "auto"
    architecture: PriorArchitecture = field(default_factory=PriorArchitecture)


class SyntheticPatches:
    """A pool of synthetic volumes (each kept in its three orientations) and clean 2.5D patches drawn
    from it; :meth:`renew` replaces one volume."""

    def __init__(self, settings: PriorTrainingSettings, rng: np.random.Generator) -> None:
        self.settings = settings
        self.rng = rng
        self.context = settings.architecture.context_slices
        self.pool = [self._views() for _ in range(settings.pool_size)]

    def _views(self) -> list[np.ndarray]:
        size = self.settings.volume_size
        volume = synthetic_volume(self.rng, (size, size, size))
        return [np.ascontiguousarray(oriented(volume, axis)) for axis in range(3)]

    def renew(self) -> None:
        self.pool[int(self.rng.integers(len(self.pool)))] = self._views()

    def clean_batch(self, count: int) -> np.ndarray:
        """``(count, 1 + 2 * context, P, P)`` clean patches, intensities scaled and shifted at random."""
        size = self.settings.patch_size
        low_gain, high_gain = self.settings.gain_range
        patches = []
        for _ in range(count):
            view = self.pool[int(self.rng.integers(len(self.pool)))][int(self.rng.integers(3))]
            z = int(self.rng.integers(view.shape[0]))
            j, i = (int(self.rng.integers(extent - size + 1)) for extent in view.shape[1:])
            patch = context_stack(view, z, self.context)[:, j : j + size, i : i + size]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[:, :, ::-1]
            if self.rng.random() < 0.5:
                patch = patch.transpose(0, 2, 1)
            gain = math.exp(self.rng.uniform(math.log(low_gain), math.log(high_gain)))
            patches.append(np.ascontiguousarray(patch) * gain + self.rng.uniform(*self.settings.offset_range))
        return np.stack(patches).astype(np.float32)

    def noise_levels(self, count: int) -> np.ndarray:
        low, high = self.settings.sigma_range
        return np.exp(self.rng.uniform(math.log(low), math.log(high), count)).astype(np.float32)


def level_weighted_loss(network: NoiseConditionedUNet, clean: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The squared error of denoising ``clean + sigma * noise``, divided by ``sigma``."""
    noisy = clean + sigma.view(-1, 1, 1, 1) * noise
    error = network(noisy, sigma)[:, 0] - clean[:, 0]
    return torch.mean(error**2 / sigma.view(-1, 1, 1))


def train_prior(
    settings: PriorTrainingSettings,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    start_from: Optional[Prior] = None,
) -> tuple[NoiseConditionedUNet, TrainingHistory]:
    """Trains a prior from scratch, or further from the weights of ``start_from`` (a second run of
    the schedule from a trained prior, whose architecture ``settings`` must name; the history's
    ``initial_validation_loss`` then scores those weights), and returns it (the weights that scored
    best on fixed held-out synthetic patches, the starting ones included) with its history."""
    if start_from is not None and start_from.architecture != settings.architecture:
        raise ValueError(f"the prior to start from has architecture {start_from.architecture}, not {settings.architecture}")
    rng, generator, device = seeded_run(settings.seed, settings.threads, settings.device)
    network = settings.architecture.build().to(device) if start_from is None else start_from.network(device)
    patches = SyntheticPatches(settings, rng)
    validation = (
        torch.from_numpy(patches.clean_batch(settings.validation_patches)).to(device),
        torch.from_numpy(patches.noise_levels(settings.validation_patches)).to(device),
    )
    validation_noise = torch.randn(validation[0].shape, generator=generator).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    steps_done = [0]

    def draw_batch() -> tuple[torch.Tensor, torch.Tensor]:
        steps_done[0] += 1
        if steps_done[0] % settings.refresh_every == 0:
            patches.renew()
        clean = torch.from_numpy(patches.clean_batch(settings.batch_size)).to(device)
        return clean, torch.from_numpy(patches.noise_levels(settings.batch_size)).to(device)

    def train_step(batch: tuple[torch.Tensor, torch.Tensor], learning_rate: float) -> float:
        set_learning_rate(optimizer, learning_rate)
        clean, sigma = batch
        with precision.autocast():
            loss = level_weighted_loss(network, clean, sigma, torch.randn(clean.shape, generator=generator).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), settings.gradient_clip)
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def validation_loss() -> float:
        network.eval()
        clean, sigma = validation
        losses = [
            float(level_weighted_loss(network, clean[start : start + 8], sigma[start : start + 8], validation_noise[start : start + 8]))
            for start in range(0, clean.shape[0], 8)
        ]
        network.train()
        return float(np.mean(losses))

    limits = TrainingLimits(settings.steps, settings.budget_seconds, 0, settings.steps_per_epoch, validate_first=start_from is not None)

    def held_out_loss() -> torch.Tensor:
        """The loss of one batch of held-out patches: what the precision probe times."""
        clean, sigma = validation
        count = settings.batch_size
        return level_weighted_loss(network, clean[:count], sigma[:count], validation_noise[:count])

    precision = choose_precision(settings.precision, device, loss_probe(network, held_out_loss))
    with precision.training(network):
        history = fit(
            network,
            limits,
            draw_batch,
            train_step,
            cosine_decay(settings.learning_rate),
            validation_loss,
            progress,
            cancel,
            label="prior: ",
        )
    history.precision = precision.name
    return network, history
