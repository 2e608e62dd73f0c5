"""Noise2Void self-training on the volume itself, within a time budget.

The network learns to predict each hidden voxel from its neighbourhood only; since noise is
independent between voxels, the best such prediction is the clean signal. The learning rate follows
a cosine decay over whichever limit is closer, the step count or the wall-clock budget, so a short
budget still ends with a settled model; the weights with the lowest validation loss are kept.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from DeepDenoiseLib.config import DenoiseConfig
from DeepDenoiseLib.device import configure_threads, select_device
from DeepDenoiseLib.masking import mask_batch
from DeepDenoiseLib.patches import PatchGeometry, PatchSampler, fit_patch
from DeepDenoiseLib.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.unet import UNet, plan_pool_z, required_multiple

VALIDATION_PATCHES = 16


@dataclass
class TrainingHistory:
    """What happened during training, for the run's summary and for tests."""

    steps: int = 0
    seconds: float = 0.0
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_validation_loss: Optional[float] = None
    stopped_by: str = ""


@dataclass
class TrainedModel:
    """A trained network with what inference needs to use it the same way."""

    network: UNet
    device: torch.device
    geometry: PatchGeometry
    history: TrainingHistory


def build_network(config: DenoiseConfig, volume_shape: tuple[int, int, int], spacing_zyx: tuple[float, float, float]) -> tuple[UNet, PatchGeometry]:
    """The UNet and patch shape for this volume: 3D networks keep thin-slice axes unpooled."""
    model = config.model
    if model.dimensions == "3d":
        requested_depth = min(config.training.patch_size, volume_shape[0])
        pool_z = plan_pool_z(spacing_zyx, model.depth, requested_depth - requested_depth % 2)
        multiple = required_multiple(3, model.depth, pool_z)
        spatial = fit_patch(config.training.patch_size, volume_shape, multiple, 3)
        pool_z = plan_pool_z(spacing_zyx, model.depth, spatial[0])
        geometry = PatchGeometry(spatial=spatial, context_slices=0)
        network = UNet(3, 1, 1, model.depth, model.base_channels, model.norm, model.blurpool, model.top_skip, pool_z)
    else:
        multiple = required_multiple(2, model.depth)
        spatial = fit_patch(config.training.patch_size, volume_shape, multiple, 2)
        geometry = PatchGeometry(spatial=spatial, context_slices=model.context_slices)
        network = UNet(2, geometry.channels, 1, model.depth, model.base_channels, model.norm, model.blurpool, model.top_skip)
    return network, geometry


def _learning_rate(base: float, progress_fraction: float) -> float:
    """Cosine decay to 2 % of the base rate (Loshchilov & Hutter 2017)."""
    fraction = min(max(progress_fraction, 0.0), 1.0)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * fraction)))


def train_noise2void(
    volume: np.ndarray,
    config: DenoiseConfig,
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> TrainedModel:
    """Trains on ``volume`` (already normalised, ``[k, j, i]`` float32) and returns the best model.

    Reproducible on the CPU for a fixed seed when ``training.budget_seconds`` is ``None`` (a time
    budget makes the step count depend on the machine's speed).
    """
    training = config.training
    configure_threads(training.threads)
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    generator = torch.Generator().manual_seed(training.seed)
    device = select_device(training.device)

    network, geometry = build_network(config, volume.shape, spacing_zyx)
    network.to(device)
    sampler = PatchSampler(volume, geometry, training.validation_fraction, rng)
    validation = _validation_set(sampler, config, generator, device)

    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    total_steps = training.max_epochs * training.steps_per_epoch
    budget = training.budget_seconds
    history = TrainingHistory()
    best_state = copy.deepcopy(network.state_dict())
    start = time.perf_counter()
    report(progress, ProgressEvent("training", 0.0, message="starting", eta_seconds=budget))

    for epoch in range(training.max_epochs):
        network.train()
        epoch_losses = []
        for _ in range(training.steps_per_epoch):
            check_cancelled(cancel)
            elapsed = time.perf_counter() - start
            done_fraction = max(history.steps / total_steps, elapsed / budget if budget else 0.0)
            if done_fraction >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(training.learning_rate, done_fraction)
            batch = torch.from_numpy(sampler.training_batch(training.batch_size)).to(device)
            masked = mask_batch(batch, config.masking, generator)
            prediction = network(masked.inputs)[:, 0]
            loss = torch.mean((prediction[(masked.batch_index, *masked.spatial_index)] - masked.targets) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.steps += 1
            epoch_losses.append(float(loss.detach()))
            if history.steps % 10 == 0:
                _report_step(progress, history, epoch_losses, start, total_steps, budget)
        if epoch_losses:
            history.train_loss.append(float(np.mean(epoch_losses)))
        validation_loss = _validation_loss(network, validation)
        if validation_loss is None:
            best_state = copy.deepcopy(network.state_dict())
        else:
            history.validation_loss.append(validation_loss)
            if history.best_validation_loss is None or validation_loss < history.best_validation_loss:
                history.best_validation_loss = validation_loss
                best_state = copy.deepcopy(network.state_dict())
        if len(epoch_losses) < training.steps_per_epoch:
            break

    history.seconds = time.perf_counter() - start
    history.stopped_by = "budget" if budget and history.seconds >= budget else "epochs"
    network.load_state_dict(best_state)
    network.eval()
    report(progress, ProgressEvent("training", 1.0, message=f"{history.steps} steps", loss=_last(history.train_loss), eta_seconds=0.0))
    return TrainedModel(network=network, device=device, geometry=geometry, history=history)


def _report_step(
    progress: Optional[ProgressCallback],
    history: TrainingHistory,
    epoch_losses: list[float],
    start: float,
    total_steps: int,
    budget: Optional[float],
) -> None:
    elapsed = time.perf_counter() - start
    step_fraction = history.steps / total_steps
    time_fraction = elapsed / budget if budget else 0.0
    fraction = min(1.0, max(step_fraction, time_fraction))
    if time_fraction >= step_fraction and budget:
        eta = max(0.0, budget - elapsed)
    else:
        eta = elapsed / max(step_fraction, 1e-9) - elapsed
    loss = float(np.mean(epoch_losses[-10:]))
    report(progress, ProgressEvent("training", fraction, message=f"step {history.steps}", loss=loss, eta_seconds=eta))


@dataclass
class _ValidationSet:
    inputs: torch.Tensor
    batch_index: torch.Tensor
    spatial_index: tuple[torch.Tensor, ...]
    targets: torch.Tensor


def _validation_set(sampler: PatchSampler, config: DenoiseConfig, generator: torch.Generator, device: torch.device) -> Optional[_ValidationSet]:
    """Fixed validation patches with fixed masks, so losses are comparable between epochs."""
    patches = sampler.validation_batch(VALIDATION_PATCHES)
    if patches.shape[0] == 0:
        return None
    masked = mask_batch(torch.from_numpy(patches).to(device), config.masking, generator)
    return _ValidationSet(masked.inputs, masked.batch_index, masked.spatial_index, masked.targets)


@torch.no_grad()
def _validation_loss(network: UNet, validation: Optional[_ValidationSet]) -> Optional[float]:
    if validation is None:
        return None
    network.eval()
    losses = []
    for start in range(0, validation.inputs.shape[0], 4):
        stop = start + 4
        prediction = network(validation.inputs[start:stop])[:, 0]
        chosen = (validation.batch_index >= start) & (validation.batch_index < stop)
        index = (validation.batch_index[chosen] - start, *(i[chosen] for i in validation.spatial_index))
        losses.append(torch.sum((prediction[index] - validation.targets[chosen]) ** 2).item())
    network.train()
    return float(sum(losses) / max(1, validation.targets.shape[0]))


def _last(values: list[float]) -> Optional[float]:
    return values[-1] if values else None
