"""Noise2Void self-training on the volume itself, within a time budget (the training loop is
core/training_loop.py's).

The network learns to predict each hidden voxel from its neighbourhood only; since noise is
independent between voxels, the best such prediction is the clean signal. A blind-spot network never
sees the voxel it predicts, so every voxel trains it; a UNet learns at the voxels masking hid
(masking.py). Validation scores the same loss on held-out patches with fixed masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback
from DeepDenoiseLib.core.training_loop import TrainingLimits, cosine_decay, fit, seeded_run, set_learning_rate
from DeepDenoiseLib.denoise.config import PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.denoise.masking import MaskedBatch, mask_batch
from DeepDenoiseLib.denoise.networks import Network, TrainedModel, build_network, resolve_slice_axes
from DeepDenoiseLib.denoise.patches import VALIDATION_PATCHES, PatchSampler
from DeepDenoiseLib.nets.blindspot import BlindSpotNet, gaussian_prior_nll


def train_noise2void(
    volume: np.ndarray,
    config: DenoiseConfig,
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    noise_sigma: Optional[float] = None,
) -> TrainedModel:
    """Trains on ``volume`` (already normalised, ``[k, j, i]`` float32) and returns the best model.

    A series ``[t, k, j, i]`` trains one model on patches from all its frames (which share one grid),
    so a series costs one training, not one per frame.

    ``noise_sigma`` (in the normalised units) is needed for a network with noise fusion.

    Reproducible on the CPU for a fixed seed when ``training.budget_seconds`` is ``None`` (a time
    budget makes the step count depend on the machine's speed).
    """
    if config.method in PAIRED_METHODS:
        raise ValueError(f"method '{config.method}' learns from pairs: train it with pair_training.train_pairs")
    training = config.training
    rng, generator, device = seeded_run(training.seed, training.threads, training.device)
    volume_shape: tuple[int, int, int] = tuple(int(n) for n in volume.shape[-3:])  # type: ignore[assignment]
    slice_axes = resolve_slice_axes(config, volume_shape, spacing_zyx)
    network, geometry = build_network(config, volume_shape, spacing_zyx, slice_axes)
    network.to(device)
    noise_variance = None
    if config.method == "blindspot" and config.model.noise_fusion:
        if noise_sigma is None:
            raise ValueError("a network with noise fusion needs the noise sigma")
        noise_variance = float(noise_sigma) ** 2
    sampler = PatchSampler(volume, geometry, training.validation_fraction, rng, slice_axes)
    validation = _validation_set(sampler, network, config, generator, device)
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)

    def draw_batch() -> torch.Tensor:
        return torch.from_numpy(sampler.training_batch(training.batch_size)).to(device)

    def train_step(batch: torch.Tensor, learning_rate: float) -> float:
        set_learning_rate(optimizer, learning_rate)
        loss = _training_loss(network, batch, config, generator, noise_variance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    limits = TrainingLimits.in_epochs(training.max_epochs, training.steps_per_epoch, training.budget_seconds, training.min_steps)
    schedule = cosine_decay(training.learning_rate)
    history = fit(
        network, limits, draw_batch, train_step, schedule, lambda: _validation_loss(network, validation, noise_variance), progress, cancel
    )
    return TrainedModel(
        network=network,
        device=device,
        geometry=geometry,
        history=history,
        noise_variance=noise_variance,
        slice_axes=slice_axes,
        volume_shape=volume_shape,
        spacing_zyx=tuple(float(s) for s in spacing_zyx),  # type: ignore[arg-type]
    )


def _blindspot_loss(network: BlindSpotNet, batch: torch.Tensor, noise_variance: Optional[float]) -> torch.Tensor:
    """Every voxel is unseen by a blind-spot network: squared error, or the fused model's likelihood."""
    output = network(batch)
    if noise_variance is not None:
        return gaussian_prior_nll(output, batch[:, 0], noise_variance)
    return torch.mean((output[:, 0] - batch[:, 0]) ** 2)


def _training_loss(
    network: Network, batch: torch.Tensor, config: DenoiseConfig, generator: torch.Generator, noise_variance: Optional[float]
) -> torch.Tensor:
    """The loss at the voxels the network could not see: all of them for the blind-spot network,
    the masked ones (squared error) for a UNet."""
    if isinstance(network, BlindSpotNet):
        return _blindspot_loss(network, batch, noise_variance)
    masked = mask_batch(batch, config.masking, generator)
    prediction = network(masked.inputs)[:, 0]
    at_masked = (masked.batch_index, *masked.spatial_index)
    return torch.mean((prediction[at_masked] - masked.targets) ** 2)


@dataclass
class _ValidationSet:
    """Fixed held-out patches, with fixed masks for a masking network, so that losses are
    comparable between epochs."""

    patches: torch.Tensor
    masked: Optional[MaskedBatch]


def _validation_set(
    sampler: PatchSampler, network: Network, config: DenoiseConfig, generator: torch.Generator, device: torch.device
) -> Optional[_ValidationSet]:
    patches = sampler.validation_batch(VALIDATION_PATCHES)
    if patches.shape[0] == 0:
        return None
    tensor = torch.from_numpy(patches).to(device)
    masked = None if isinstance(network, BlindSpotNet) else mask_batch(tensor, config.masking, generator)
    return _ValidationSet(tensor, masked)


@torch.no_grad()
def _validation_loss(network: Network, validation: Optional[_ValidationSet], noise_variance: Optional[float]) -> Optional[float]:
    """The training loss at the unseen voxels of the held-out patches."""
    if validation is None:
        return None
    network.eval()
    total, count = 0.0, 0
    for start in range(0, validation.patches.shape[0], 4):
        stop = start + 4
        if isinstance(network, BlindSpotNet):
            batch = validation.patches[start:stop]
            total += float(_blindspot_loss(network, batch, noise_variance)) * batch[:, 0].numel()
            count += batch[:, 0].numel()
            continue
        masked = validation.masked
        assert masked is not None
        prediction = network(masked.inputs[start:stop])[:, 0]
        chosen = (masked.batch_index >= start) & (masked.batch_index < stop)
        index = (masked.batch_index[chosen] - start, *(i[chosen] for i in masked.spatial_index))
        errors = prediction[index] - masked.targets[chosen]
        total += float(torch.sum(errors**2))
        count += errors.numel()
    network.train()
    return total / max(1, count)
