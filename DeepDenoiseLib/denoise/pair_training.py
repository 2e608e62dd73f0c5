"""Training a network to map input volumes to target volumes: Noise2Noise and supervised learning.

With clean targets this is ordinary supervised denoising. With targets that are a second, independent
noisy acquisition of the same anatomy it is Noise2Noise (Lehtinen et al. 2018): the noise in the
target is zero-mean and independent of the input, so the network that best predicts the noisy target
(squared error: the mean; absolute error: the median) is the one that best predicts the clean signal.
Either way every voxel of every patch trains the network, with no masking.

The loop, patches, learning-rate schedule, validation and best weights are those of Noise2Void
training (core/training_loop.py, n2v_training.py); the model returned is the same :class:`TrainedModel`, so
:func:`DeepDenoiseLib.denoise.inference.predict_volume` applies it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback
from DeepDenoiseLib.core.training_loop import TrainingLimits, cosine_decay, fit, seeded_run, set_learning_rate
from DeepDenoiseLib.denoise.config import PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.denoise.networks import TrainedModel, build_network, resolve_slice_axes
from DeepDenoiseLib.denoise.patches import VALIDATION_PATCHES, PatchSampler
from DeepDenoiseLib.nets.discriminator import AdversarialLoss
from DeepDenoiseLib.nets.unet import UNet


class PairSampler:
    """Training patches from several (input, target) pairs: each patch comes from a pair drawn with
    probability proportional to its voxel count, and carries its target as the last channel."""

    def __init__(self, samplers: Sequence[PatchSampler], rng: np.random.Generator) -> None:
        self.samplers = list(samplers)
        self.rng = rng
        sizes = np.array([float(np.prod(s.views[0].shape)) for s in self.samplers])
        self.weights = sizes / sizes.sum()

    def _pick(self) -> PatchSampler:
        return self.samplers[int(self.rng.choice(len(self.samplers), p=self.weights))]

    def training_batch(self, batch_size: int) -> np.ndarray:
        return np.concatenate([self._pick().training_batch(1) for _ in range(batch_size)])

    def validation_batch(self, count: int) -> np.ndarray:
        """Fixed held-out patches from randomly chosen pairs (empty when no pair can spare a slab)."""
        with_slab = [s for s in self.samplers if s.held_out]
        if not with_slab:
            return self.samplers[0].validation_batch(count)
        picks = self.rng.integers(len(with_slab), size=count)
        return np.concatenate([with_slab[int(i)].validation_batch(1) for i in picks])


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean squared (``l2``) or absolute (``l1``) error."""
    difference = output - target
    return torch.mean(difference**2) if loss == "l2" else torch.mean(torch.abs(difference))


def train_pairs(
    inputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    config: DenoiseConfig,
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> TrainedModel:
    """Trains the network of ``config`` to turn each of ``inputs`` into its target and returns the
    best model. Arrays are normalised ``[k, j, i]`` float32, each target the shape of its input
    (pairs may differ in shape from each other; the patch fits the smallest).

    For Noise2Noise, give each pair both ways round (``[a, b]``, ``[b, a]``). With
    ``training.adversarial_weight`` above 0 (supervised only) a patch discriminator trains beside the
    network; validation scores the reconstruction loss alone. Reproducible on the CPU for a fixed
    seed when ``training.budget_seconds`` is ``None``.
    """
    if config.method not in PAIRED_METHODS:
        raise ValueError(f"train_pairs trains the paired methods ({', '.join(PAIRED_METHODS)}); got method '{config.method}'")
    if len(inputs) != len(targets) or not inputs:
        raise ValueError(f"need as many targets as inputs, at least one; got {len(inputs)} inputs and {len(targets)} targets")
    for index, (source, target) in enumerate(zip(inputs, targets)):
        if source.ndim != 3 or source.shape != target.shape:
            raise ValueError(f"pair {index + 1}: input {source.shape} and target {target.shape} must be 3D arrays of one shape")
    training = config.training
    rng, _, device = seeded_run(training.seed, training.threads, training.device)
    smallest = tuple(int(n) for n in np.min([source.shape for source in inputs], axis=0))
    slice_axes = resolve_slice_axes(config, smallest, spacing_zyx)  # type: ignore[arg-type]
    network, geometry = build_network(config, smallest, spacing_zyx, slice_axes)  # type: ignore[arg-type]
    assert isinstance(network, UNet), "the paired methods train a UNet"
    network.to(device)
    samplers = [
        PatchSampler(source, geometry, training.validation_fraction, rng, slice_axes, target=target)
        for source, target in zip(inputs, targets)
    ]
    sampler = PairSampler(samplers, rng)
    validation = torch.from_numpy(sampler.validation_batch(VALIDATION_PATCHES)).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=training.learning_rate)
    adversarial = None
    if training.adversarial_weight > 0:
        adversarial = AdversarialLoss(len(geometry.spatial), geometry.spatial, training.adversarial_weight, device)

    def draw_batch() -> torch.Tensor:
        return torch.from_numpy(sampler.training_batch(training.batch_size)).to(device)

    def train_step(batch: torch.Tensor, learning_rate: float) -> float:
        set_learning_rate(optimizer, learning_rate)
        source, target = batch[:, :-1], batch[:, -1:]
        output = network(source)
        loss = reconstruction_loss(output, target, training.loss)
        total = loss if adversarial is None else loss + adversarial.generator_term(output, loss, network.head.weight)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if adversarial is not None:
            adversarial.discriminator_step(target, output, learning_rate)
        return float(loss.detach())

    @torch.no_grad()
    def validation_loss() -> Optional[float]:
        if validation.shape[0] == 0:
            return None
        network.eval()
        losses = [
            float(reconstruction_loss(network(chunk[:, :-1]), chunk[:, -1:], training.loss)) * chunk.shape[0]
            for chunk in torch.split(validation, 4)
        ]
        network.train()
        return sum(losses) / validation.shape[0]

    limits = TrainingLimits.in_epochs(training.max_epochs, training.steps_per_epoch, training.budget_seconds, training.min_steps)
    schedule = cosine_decay(training.learning_rate)
    history = fit(network, limits, draw_batch, train_step, schedule, validation_loss, progress, cancel, lambda batch: batch[:, :-1])
    return TrainedModel(
        network=network,
        device=device,
        geometry=geometry,
        history=history,
        slice_axes=slice_axes,
        volume_shape=smallest,  # type: ignore[arg-type]
        spacing_zyx=tuple(float(s) for s in spacing_zyx),  # type: ignore[arg-type]
    )
