"""Training one super-resolution stage: pairs made on the fly, and the network learning the detail the
spline misses, as a conditional diffusion model or as a plain L1 regressor.

Every pair is oriented so that the degraded axis is array axis 0, whichever voxel axis it is, so one
network serves training along in-plane axes and application through-plane (the self-supervised mode).
The network is not asked for intensities, only for the *residual*: fine volume minus its spline
upsampling from the coarse one, divided by the residual's RMS (so it has unit scale). The condition
is the spline-upsampled volume itself (or, for a diffusion model refining a regression prior, the
prior's estimate, and the residual is what the prior left), concatenated to the noisy residual.

:class:`SuperResNetwork` runs the UNet on the *coarse* grid: the ``factor`` fine voxels of each coarse
block along axis 0 are folded into channels (space-to-depth), so the network costs ``factor`` times
less than on the fine grid, and each output channel is the residual at one position in the block.
Patches along axis 0 therefore start and end on block boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback
from DeepDenoiseLib.core.training_loop import TrainingHistory, TrainingLimits, cosine_decay, fit, seeded_run, set_learning_rate
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.nets.unet import UNet, plan_pool_z
from DeepDenoiseLib.superres.config import SuperResConfig
from DeepDenoiseLib.superres.diffusion_sampler import q_sample, training_target
from DeepDenoiseLib.superres.diffusion_schedule import DiffusionSchedule, cosine_schedule
from DeepDenoiseLib.superres.grid import crop_to_multiple, downsample, upsample_spline

#: Intensities (normalised to [0, 1] by percentiles) above this count as foreground when the residual's
#: scale is measured, so that empty background does not shrink it.
FOREGROUND_LEVEL = 0.05
#: The share of training patches centred on a foreground voxel.
FOREGROUND_SHARE = 0.9
#: The share of the training run after which the learning rate decays (cosine, to DECAY_FLOOR of its
#: start). Short CPU runs learn much more at a constant rate than under a decay over the whole run.
DECAY_START = 0.7
DECAY_FLOOR = 0.05


@dataclass
class TrainingPair:
    """A spline-upsampled volume or a prior's estimate (``condition``) and the fine volume it should
    become (``target``), both float32 on the fine grid with the degraded axis first."""

    condition: np.ndarray
    target: np.ndarray


def make_pair(fine: np.ndarray, factor: int, coarseness: int, axis: int, method: str) -> TrainingPair:
    """The pair for a stage going from ``coarseness`` to ``coarseness / factor`` along ``axis``, made
    from ``fine`` (the finest data there is along it): the target is ``fine`` degraded to the stage's
    output resolution, the condition is ``fine`` degraded to its input resolution then spline-upsampled
    by ``factor``. The pair is moved so that ``axis`` comes first."""
    fine = crop_to_multiple(np.asarray(fine, dtype=np.float32), coarseness, axis)
    target_coarseness = coarseness // factor
    target = fine if target_coarseness == 1 else downsample(fine, target_coarseness, axis, method)
    condition = upsample_spline(downsample(fine, coarseness, axis, method), factor, axis)
    return TrainingPair(np.ascontiguousarray(np.moveaxis(condition, axis, 0)), np.ascontiguousarray(np.moveaxis(target, axis, 0)))


def residual_scale(pairs: Sequence[TrainingPair]) -> float:
    """The RMS of target minus condition over the foreground of all pairs (at least 1e-3)."""
    total, count = 0.0, 0
    for pair in pairs:
        foreground = pair.condition > FOREGROUND_LEVEL
        residual = (pair.target - pair.condition)[foreground].astype(np.float64)
        total += float(np.sum(residual**2))
        count += residual.size
    return max(math.sqrt(total / count), 1e-3) if count else 1.0


def fit_patch_shape(requested: tuple[int, int], pairs: Sequence[TrainingPair], multiple: tuple[int, int]) -> tuple[int, int, int]:
    """The training patch (along, across, across) in fine voxels: the request, shrunk to the smallest
    pair and rounded down to ``multiple`` (along, across: blocks and the UNet's pooling)."""
    smallest = np.min([pair.condition.shape for pair in pairs], axis=0)
    along = min(requested[0], int(smallest[0]))
    across = min(requested[1], int(smallest[1]), int(smallest[2]))
    along -= along % multiple[0]
    across -= across % multiple[1]
    if along < multiple[0] or across < multiple[1]:
        shape = "x".join(str(int(n)) for n in smallest)
        raise InputError(
            f"the training data ({shape} voxels with the upsampled axis first) is too small for the "
            f"network: it needs at least {multiple[0]} voxels along the upsampled axis and {multiple[1]} "
            f"across it; use a larger volume{' or a shallower model (model.depth)' if multiple[1] > 2 else ''}"
        )
    return along, across, across


class PatchPairs:
    """Random patches of the pairs with random flips and across-axis transposition, as tensors
    ``(B, 1, along, across, across)``: condition and scaled residual. Along axis 0 patches start on
    a boundary of the blocks of ``block`` fine voxels that each coarse voxel covers. Most patches
    (``FOREGROUND_SHARE``) are centred on a foreground voxel: empty background teaches nothing."""

    def __init__(
        self, pairs: Sequence[TrainingPair], patch: tuple[int, int, int], block: int, scale: float, rng: np.random.Generator
    ) -> None:
        self.pairs = list(pairs)
        self.patch = patch
        self.block = block
        self.scale = scale
        self.rng = rng
        sizes = np.array([pair.condition.size for pair in self.pairs], dtype=np.float64)
        self.weights = sizes / sizes.sum()
        self.foreground = [_foreground_voxels(pair.condition, rng) for pair in self.pairs]

    def _corner(self, index: int) -> list[int]:
        shape = self.pairs[index].condition.shape
        foreground = self.foreground[index]
        if len(foreground) and self.rng.random() < FOREGROUND_SHARE:
            centre = foreground[self.rng.integers(0, len(foreground))]
            corner = [int(np.clip(c - p // 2, 0, n - p)) for c, p, n in zip(centre, self.patch, shape)]
        else:
            corner = [int(self.rng.integers(0, n - p + 1)) for n, p in zip(shape, self.patch)]
        corner[0] -= corner[0] % self.block
        return corner

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        conditions, residuals = [], []
        for _ in range(size):
            index = int(self.rng.choice(len(self.pairs), p=self.weights))
            pair = self.pairs[index]
            corner = self._corner(index)
            region = tuple(slice(c, c + p) for c, p in zip(corner, self.patch))
            condition, target = pair.condition[region], pair.target[region]
            flips = tuple(axis for axis in range(3) if self.rng.random() < 0.5)
            condition, target = np.flip(condition, flips), np.flip(target, flips)
            if self.rng.random() < 0.5:
                condition, target = condition.transpose(0, 2, 1), target.transpose(0, 2, 1)
            conditions.append(condition)
            residuals.append((target - condition) / self.scale)
        return (
            torch.from_numpy(np.ascontiguousarray(np.stack(conditions)[:, None], dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(np.stack(residuals)[:, None], dtype=np.float32)),
        )


def _foreground_voxels(condition: np.ndarray, rng: np.random.Generator, keep: int = 100_000) -> np.ndarray:
    """Up to ``keep`` random foreground voxel indices ``(N, 3)`` of a pair's condition."""
    found = np.argwhere(condition > FOREGROUND_LEVEL)
    if len(found) > keep:
        found = found[rng.choice(len(found), keep, replace=False)]
    return found


def fold(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, C, L, Y, X)`` -> ``(B, C * factor, L / factor, Y, X)``: each block of ``factor`` voxels
    along axis 0 becomes ``factor`` channels (channel ``c * factor + p`` is position ``p`` of channel ``c``)."""
    batch, channels, length = x.shape[:3]
    folded = x.reshape(batch, channels, length // factor, factor, *x.shape[3:])
    return folded.transpose(2, 3).reshape(batch, channels * factor, length // factor, *x.shape[3:])


def unfold(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The inverse of :func:`fold`."""
    batch, channels, blocks = x.shape[:3]
    unfolded = x.reshape(batch, channels // factor, factor, blocks, *x.shape[3:])
    return unfolded.transpose(2, 3).reshape(batch, channels // factor, blocks * factor, *x.shape[3:])


class SuperResNetwork(nn.Module):
    """The conditional 3D UNet of one stage (residual blocks, GroupNorm; for a diffusion model a time
    embedding), run on the coarse grid with the blocks folded into channels (see the module's
    docstring). The coarse voxels are ``factor`` times longer along axis 0, so that axis is pooled
    only where the voxels have become about isotropic."""

    def __init__(self, factor: int, diffusion: bool, depth: int, base_channels: int, attention: bool) -> None:
        super().__init__()
        self.factor = factor
        self.diffusion = diffusion
        pool_z = plan_pool_z((float(factor), 1.0, 1.0), depth, 2**depth)
        self.multiple = (factor * 2 ** sum(pool_z), 2**depth)
        self.unet = UNet(
            spatial_dims=3,
            in_channels=factor * (2 if diffusion else 1),
            out_channels=factor,
            depth=depth,
            base_channels=base_channels,
            norm="group",
            pool_z=pool_z,
            residual_blocks=True,
            time_embedding=diffusion,
            attention=attention,
        )

    def forward(
        self, condition: torch.Tensor, noisy: Optional[torch.Tensor] = None, timesteps: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The predicted residual (regression), or ``v``/``eps`` for ``noisy`` at ``timesteps``; all
        tensors ``(B, 1, L, Y, X)`` on the fine grid with ``L`` a multiple of the factor."""
        inputs = [condition]
        if self.diffusion:
            if noisy is None:
                raise ValueError("a diffusion network needs the noisy residual")
            inputs = [noisy, condition]
        return unfold(self.unet(fold(torch.cat(inputs, dim=1), self.factor), timesteps), self.factor)


def build_superres_network(config: SuperResConfig, factor: int) -> SuperResNetwork:
    """The network of a stage of ``factor`` for ``config.method`` (``ddpm`` or ``regression``)."""
    model = config.model
    return SuperResNetwork(factor, config.method == "ddpm", model.depth, model.base_channels, model.attention)


def schedule_from(config: SuperResConfig) -> DiffusionSchedule:
    diffusion = config.diffusion
    return cosine_schedule(diffusion.timesteps, diffusion.cosine_offset, diffusion.max_beta, diffusion.variance_scale)


@dataclass
class StageModel:
    """A trained stage: the network, its ``factor``, the residual scale it learned in, and for a
    diffusion model its schedule and what it predicts (``v`` or ``eps``)."""

    network: SuperResNetwork
    device: torch.device
    factor: int
    scale: float
    method: str
    schedule: Optional[DiffusionSchedule]
    prediction: str
    history: TrainingHistory


def train_stage(
    pairs: Sequence[TrainingPair],
    factor: int,
    config: SuperResConfig,
    limits: TrainingLimits,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    label: str = "",
    seed_offset: int = 0,
) -> StageModel:
    """Trains one stage of ``config.method`` on ``pairs`` within ``limits`` (the step limit, budget and
    floor of steps this stage's model gets), in the training loop every network shares.

    Reproducible on the CPU for a fixed seed without a time budget."""
    training = config.training
    rng, generator, device = seeded_run(training.seed + seed_offset, training.threads, training.device)
    network = build_superres_network(config, factor).to(device)
    patch = fit_patch_shape(training.patch_size, pairs, network.multiple)
    scale = residual_scale(pairs)
    sampler = PatchPairs(pairs, patch, factor, scale, rng)
    schedule = schedule_from(config) if config.method == "ddpm" else None
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)

    def draw_batch() -> tuple[torch.Tensor, ...]:
        return tuple(t.to(device) for t in sampler.batch(training.batch_size))

    def train_step(batch: tuple[torch.Tensor, ...], learning_rate: float) -> float:
        set_learning_rate(optimizer, learning_rate)
        condition, residual = batch
        if schedule is None:
            loss = F.l1_loss(network(condition), residual)
        else:
            loss = _diffusion_loss(network, condition, residual, schedule, config.diffusion.prediction, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    learning_rate = cosine_decay(training.learning_rate, floor=DECAY_FLOOR, start=DECAY_START)
    history = fit(network, limits, draw_batch, train_step, learning_rate, progress=progress, cancel=cancel, label=label)
    return StageModel(network, device, factor, scale, config.method, schedule, config.diffusion.prediction, history)


def _diffusion_loss(
    network: SuperResNetwork,
    condition: torch.Tensor,
    residual: torch.Tensor,
    schedule: DiffusionSchedule,
    prediction: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mean squared error of the network's ``v`` (or ``eps``) at uniformly drawn steps."""
    batch = residual.shape[0]
    steps = torch.randint(1, schedule.timesteps + 1, (batch,), generator=generator)
    noise = torch.randn(residual.shape, generator=generator).to(residual.device)
    noisy = q_sample(residual, steps, noise, schedule)
    target = training_target(residual, noise, steps, schedule, prediction)
    output = network(condition, noisy, steps.to(residual.device).float())
    return F.mse_loss(output, target)
