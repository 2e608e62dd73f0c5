"""Method ``r2r``: a noise-conditioned 2.5D UNet, started from the shipped prior (prior.py) or from
random weights, trained on the noisy volume itself with the Recorrupted-to-Recorrupted loss
(Pang et al., CVPR 2021), in the one training loop (core/training_loop.py).

R2R needs only the noise sigma. From the noisy ``y`` and fresh Gaussian ``z`` it makes an input
``y + alpha * sigma * z`` and a target ``y - sigma * z / alpha``, whose noises are independent, so
the expected loss is the supervised loss at noise level ``sigma * sqrt(1 + alpha**2)`` plus a
constant: the network learns the clean volume without ever seeing it, at every voxel whose noise is
at ``sigma`` (recorruptible.py leaves out noise-free and Rayleigh air, where the target is biased).
The network is told the input's noise level, so at prediction it is told the volume's own.

The loss on fixed held-out patches estimates the mean squared error against the clean volume up to a
known constant. That makes the self-check honest: the identity (returning the recorrupted input)
scores ``sigma**2 * (alpha + 1/alpha)**2``, and a network that does not beat it is not used. Training
starts from the prior's score (the prior is kept when training does not improve on it) and runs to
the budget: that constant dominates the held-out loss, so it is too noisy to stop on (an early stop,
``training.patience``, is off by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from DeepDenoiseLib.core.precision import choose_precision, loss_probe
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, report
from DeepDenoiseLib.core.training_loop import TrainingLimits, cosine_decay, fit, seeded_run, set_learning_rate
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.correlated_noise import CorrelatedNoise
from DeepDenoiseLib.denoise.networks import TrainedModel, build_network, resolve_slice_axes
from DeepDenoiseLib.denoise.noise_correlation import NoiseCorrelation
from DeepDenoiseLib.denoise.patches import VALIDATION_PATCHES, MixedPatchSampler, PatchSampler
from DeepDenoiseLib.denoise.prior import load_prior
from DeepDenoiseLib.denoise.recorruptible import recorruptible_voxels
from DeepDenoiseLib.nets.conditioned import NoiseConditionedUNet

#: The recorruption strength: the input gets ``alpha * sigma`` more noise, the target's noise grows
#: to ``sigma * sqrt(1 + 1 / alpha**2)``. 0.5 is the R2R paper's choice for Gaussian noise. 1.0
#: (a target noise of 2 sigma**2 against 5) gained 0.1 to 0.4 dB at 600 steps on Rician and Poisson
#: noise, but at the full 4-minute budget lost 0.12 to 0.35 dB on Gaussian and 2 mm Rician noise and
#: 1.09 dB on correlated noise (bench/README.md, "Where R2R learns").
ALPHA = 0.5
#: Whether each patch is trained on with recorruption noise ``z`` and ``-z`` (antithetic_noise).
ANTITHETIC = True
#: A network must beat the identity's held-out loss by this share to pass the self-check.
SELF_CHECK_MARGIN = 0.01

#: A noise level: one for every patch, or a tensor of one per patch.
Sigma = Union[float, torch.Tensor]


@dataclass
class SelfCheck:
    """The held-out R2R losses of the identity and of the network kept, and what they say: the
    estimated reduction of the squared error at the recorrupted noise level (in dB; None when the
    estimate is not meaningful), and whether the network passed."""

    identity_loss: float
    network_loss: float
    estimated_gain_db: Optional[float]
    passed: bool

    def to_summary(self) -> dict[str, object]:
        gain = None if self.estimated_gain_db is None else round(self.estimated_gain_db, 2)
        return {"passed": self.passed, "estimated_gain_db": gain, "identity_loss": self.identity_loss, "network_loss": self.network_loss}


def recorrupted_pair(batch: torch.Tensor, sigma: Sigma, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R2R's input (every channel recorrupted) and target (the centre slice) from noisy patches;
    ``sigma`` is one level, or one per patch (a tensor of ``B`` levels)."""
    level = _per_patch(sigma, batch)
    return batch + ALPHA * level * noise, batch[:, 0] - level[:, 0] * noise[:, 0] / ALPHA


def antithetic_pairing(batch_size: int) -> torch.Tensor:
    """Which drawn patch each of a batch's ``batch_size`` items is: patches ``0, 0, 1, 1, ...``, so
    that every patch is trained on with recorruption noise ``z`` and ``-z`` (an odd batch's last
    patch once)."""
    return torch.arange(batch_size) // 2 if ANTITHETIC else torch.arange(batch_size)


def antithetic_noise(drawn: torch.Tensor, pairing: torch.Tensor) -> torch.Tensor:
    """Recorruption noise for a paired batch: the noise drawn for each patch, then its negative.

    Antithetic variates: ``z`` and ``-z`` are equally likely, so the loss stays unbiased, and the
    target's extra noise ``-sigma z / alpha`` (variance ``4 sigma**2`` at alpha 0.5, four times the
    volume's own) cancels between the two to first order. At 3000 steps, against independent draws
    at the same cost, this gained 0.06 and 0.13 dB on the benchmark's Gaussian variant (two seeds)
    and lost 0.09 dB on the Poisson one, within what a seed changes (bench/README.md)."""
    if len(pairing) == len(drawn):  # no pairs: every patch drawn for itself
        return drawn
    signs = 1.0 - 2.0 * (torch.arange(len(pairing)) % 2).to(drawn.dtype)
    return drawn[pairing] * signs.to(drawn.device).reshape(-1, *([1] * (drawn.ndim - 1)))


def input_noise_level(sigma: Sigma) -> Sigma:
    """The noise level of a recorrupted input, which the network is told during training."""
    return sigma * math.sqrt(1.0 + ALPHA**2)


def r2r_loss(
    network: NoiseConditionedUNet, batch: torch.Tensor, sigma: Sigma, noise: torch.Tensor, learnable: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """The mean squared error between the network's answer to the recorrupted input and the target,
    over the ``learnable`` voxels (each voxel's weight, shaped as the target: zero where it is left
    out, see _learnable_voxels; None: all alike)."""
    recorrupted, target = recorrupted_pair(batch, sigma, noise)
    return _mean_over(network(recorrupted, input_noise_level(sigma))[:, 0] - target, learnable)


def identity_loss(batch: torch.Tensor, sigma: Sigma, noise: torch.Tensor, learnable: Optional[torch.Tensor] = None) -> float:
    recorrupted, target = recorrupted_pair(batch, sigma, noise)
    return float(_mean_over(recorrupted[:, 0] - target, learnable))


def _mean_over(error: torch.Tensor, learnable: Optional[torch.Tensor]) -> torch.Tensor:
    if learnable is None:
        return torch.mean(error**2)
    return torch.sum(learnable * error**2) / torch.clamp(torch.sum(learnable), min=1.0)


def _per_patch(sigma: Sigma, batch: torch.Tensor) -> torch.Tensor:
    """``sigma`` shaped to broadcast over ``batch`` (``B, C, *spatial``): one level for all, or one per patch."""
    level = torch.as_tensor(sigma, dtype=batch.dtype, device=batch.device)
    return level.reshape(-1, *([1] * (batch.ndim - 1)))


def estimated_gain_db(identity: float, network: float, sigma: float) -> Optional[float]:
    """How much lower the network's squared error is than the identity's, from the held-out losses:
    each is the error plus the target noise's variance ``sigma**2 * (1 + 1 / alpha**2)``."""
    target_variance = sigma**2 * (1.0 + 1.0 / ALPHA**2)
    error_identity, error_network = identity - target_variance, network - target_variance
    if error_identity <= 0 or error_network <= 0:
        return None
    return 10.0 * math.log10(error_identity / error_network)


@dataclass(frozen=True)
class TrainingVolume:
    """One volume R2R learns from: ``array`` normalised (``[k, j, i]``, or a series ``[t, k, j, i]``),
    its noise ``sigma`` in those units, and each voxel's weight in the loss (loss_weights.py; None:
    every voxel alike)."""

    array: np.ndarray
    sigma: float
    loss_weights: Optional[np.ndarray] = None


def train_r2r(
    volumes: Sequence[TrainingVolume],
    config: DenoiseConfig,
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    noise_correlation: Optional[NoiseCorrelation] = None,
) -> tuple[TrainedModel, SelfCheck]:
    """Trains one model on ``volumes`` and returns the model kept with its self-check. The first is
    the volume to denoise; the others (other scans of a cohort, of any size and noise level) are
    learnt from as often as it, and the network is told each patch's own noise level.
    ``noise_correlation``: the noise's spatial correlation, when it is not white; the recorruption
    noise then has it too (correlated_noise.py), so that input and target noises stay independent
    (every volume is taken to share it: one protocol)."""
    if not volumes:
        raise ValueError("method r2r needs a volume to train on")
    if any(one.sigma is None or not one.sigma > 0 for one in volumes):
        raise ValueError("method r2r needs the noise sigma (estimated or given) of every volume it trains on")
    volume, noise_sigma = volumes[0].array, volumes[0].sigma
    training = config.training
    rng, generator, device = seeded_run(training.seed, training.threads, training.device)
    volume_shape: tuple[int, int, int] = tuple(int(n) for n in volume.shape[-3:])  # type: ignore[assignment]
    # the patch must fit every volume: it is fitted to the smallest extent of each axis
    fitted_shape: tuple[int, int, int] = tuple(min(int(one.array.shape[-3:][axis]) for one in volumes) for axis in range(3))  # type: ignore[assignment]
    slice_axes = resolve_slice_axes(config, volume_shape, spacing_zyx)
    network, geometry = build_network(config, fitted_shape, spacing_zyx, slice_axes)
    assert isinstance(network, NoiseConditionedUNet)
    if config.model.init != "random":  # auto and prior: R2R starts from the shipped prior
        report(progress, ProgressEvent("training", 0.0, message="loading the pretrained prior"))
        network.load_state_dict(load_prior().state)
    network.to(device)
    level_of = torch.tensor([float(one.sigma) for one in volumes], dtype=torch.float32)
    learnable = _learnable_voxels(volumes, noise_correlation)
    sampler = MixedPatchSampler(
        [
            PatchSampler(one.array, geometry, training.validation_fraction, rng, slice_axes, learnable=mask)
            for one, mask in zip(volumes, learnable)
        ],
        rng,
    )
    carries_learnable = learnable[0] is not None
    correlated = None if noise_correlation is None else CorrelatedNoise(noise_correlation)

    def draw_noise(shape: tuple[int, ...], axes: np.ndarray) -> torch.Tensor:
        noise = torch.randn(shape, generator=generator) if correlated is None else correlated.draw(shape, axes, generator)
        return noise.to(device)

    held = sampler.validation_batch(VALIDATION_PATCHES)
    validation, validation_learnable = _split_learnable(torch.from_numpy(held.patches).to(device), carries_learnable)
    validation_sigma = level_of[torch.from_numpy(held.sources)].to(device)
    validation_noise = draw_noise(tuple(validation.shape), held.axes)
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)

    Batch = tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, np.ndarray]

    pairing = antithetic_pairing(training.batch_size)
    drawn_per_batch = int(pairing.max()) + 1

    def draw_batch() -> Batch:
        # each patch is drawn once and trained on twice, with recorruption noise z and -z
        batch = sampler.training_batch(drawn_per_batch)
        patches, patch_learnable = _split_learnable(torch.from_numpy(batch.patches).to(device)[pairing], carries_learnable)
        return patches, patch_learnable, level_of[torch.from_numpy(batch.sources)[pairing]].to(device), batch.axes

    def train_step(batch: Batch, learning_rate: float) -> float:
        patches, patch_learnable, levels, axes = batch
        set_learning_rate(optimizer, learning_rate)
        noise = antithetic_noise(draw_noise((len(axes), *patches.shape[1:]), axes), pairing)
        with precision.autocast():
            loss = r2r_loss(network, patches, levels, noise, patch_learnable)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def validation_loss() -> float:
        network.eval()
        # summed over the learnable voxels of every group of patches, then divided by their number
        total, count = 0.0, 0.0
        for start in range(0, validation.shape[0], 4):
            group = slice(start, start + 4)
            group_learnable = None if validation_learnable is None else validation_learnable[group]
            weight = float(validation[group, 0].numel() if group_learnable is None else torch.sum(group_learnable))
            with precision.autocast():
                loss = r2r_loss(network, validation[group], validation_sigma[group], validation_noise[group], group_learnable)
            total += float(loss) * weight
            count += weight
        network.train()
        return total / max(count, 1.0)

    limits = TrainingLimits(
        training.max_epochs * training.steps_per_epoch,
        training.budget_seconds,
        training.min_steps,
        training.steps_per_epoch,
        patience=training.patience,
        validate_first=True,
    )

    def held_out_loss() -> torch.Tensor:
        """The loss of one batch of held-out patches: what the precision probe times."""
        group = slice(0, training.batch_size)
        return r2r_loss(network, validation[group], validation_sigma[group], validation_noise[group])

    precision = choose_precision(training.precision, device, loss_probe(network, held_out_loss))
    with precision.training(network):
        history = fit(network, limits, draw_batch, train_step, cosine_decay(training.learning_rate), validation_loss, progress, cancel)
    history.precision = precision.name
    identity = identity_loss(validation, validation_sigma, validation_noise, validation_learnable)
    kept = history.best_validation_loss if history.best_validation_loss is not None else validation_loss()
    typical_sigma = float(torch.sqrt(torch.mean(validation_sigma**2)))  # the held-out patches' mean noise variance
    check = SelfCheck(identity, kept, estimated_gain_db(identity, kept, typical_sigma), kept < (1.0 - SELF_CHECK_MARGIN) * identity)
    model = TrainedModel(
        network=network,
        device=device,
        geometry=geometry,
        history=history,
        noise_variance=float(noise_sigma) ** 2,
        slice_axes=slice_axes,
        volume_shape=volume_shape,
        spacing_zyx=tuple(float(s) for s in spacing_zyx),  # type: ignore[arg-type]
    )
    return model, check


def _learnable_voxels(volumes: Sequence[TrainingVolume], noise_correlation: Optional[NoiseCorrelation]) -> list[Optional[np.ndarray]]:
    """Each volume's weight of every voxel in the loss: zero where it is not recorruptible
    (recorruptible.py), times its loss weight where it has one (loss_weights.py); or None for all
    when every voxel of every volume weighs alike. Correlated noise spreads less over a block than
    white noise of the same sigma, so the recorruptible rule is not applied to it. When some volumes
    have weights, the others get all ones, so that every patch carries the same channels."""
    if noise_correlation is not None:
        masks: list[Optional[np.ndarray]] = [None] * len(volumes)
    else:
        masks = [recorruptible_voxels(one.array, one.sigma) for one in volumes]
    masks = [_weighted(mask, one.loss_weights) for mask, one in zip(masks, volumes)]
    if all(mask is None for mask in masks):
        return masks
    return [np.ones(one.array.shape, dtype=np.float32) if mask is None else mask for one, mask in zip(volumes, masks)]


def _weighted(mask: Optional[np.ndarray], weight: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A volume's recorruptible voxels times its loss weights; either may be None (all alike)."""
    if mask is None or weight is None:
        return weight if mask is None else mask
    return (mask * weight).astype(np.float32)


def _split_learnable(patches: torch.Tensor, carries_learnable: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Noisy patches and their learnable voxels (the last channel, when carried)."""
    if not carries_learnable:
        return patches, None
    return patches[:, :-1], patches[:, -1]
