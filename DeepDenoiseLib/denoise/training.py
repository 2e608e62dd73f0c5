"""Noise2Void self-training on the volume itself, within a time budget, and the training loop that
every method shares (:func:`fit`) and the one place networks are built (:func:`build_network`).

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
from typing import Callable, Optional, Union

import numpy as np
import torch

from DeepDenoiseLib.core.device import configure_threads, select_device
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.denoise.config import PAIRED_METHODS, DenoiseConfig, TrainingConfig
from DeepDenoiseLib.denoise.masking import MaskedBatch, mask_batch
from DeepDenoiseLib.denoise.patches import PatchGeometry, PatchSampler, fit_patch
from DeepDenoiseLib.nets.blindspot import BlindSpotNet, gaussian_prior_nll
from DeepDenoiseLib.nets.unet import UNet, plan_pool_z, required_multiple

VALIDATION_PATCHES = 16
#: Training batches whose statistics set a trained network's batch normalisation (see
#: :func:`recalibrate_batch_norm`).
BATCH_NORM_BATCHES = 8

Network = Union[UNet, BlindSpotNet]


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

    network: Network
    device: torch.device
    geometry: PatchGeometry
    history: TrainingHistory
    noise_variance: Optional[float] = None
    slice_axes: tuple[int, ...] = (0,)
    #: The training volume's grid, from which :func:`build_network` rebuilds this network exactly
    #: (patch shape, pooling) when a saved model is loaded.
    volume_shape: tuple[int, int, int] = (0, 0, 0)
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)


ISOTROPY_TOLERANCE = 1.2


def resolve_slice_axes(
    config: DenoiseConfig, volume_shape: tuple[int, int, int], spacing_zyx: tuple[float, float, float]
) -> tuple[int, ...]:
    """The array axes a 2D network cuts slices across (3D networks: just the first). ``auto`` uses
    all three only for near-isotropic voxels and when every axis holds a full training patch: a
    thin slab keeps its own slices, since cutting the patch down to its thickness would leave a
    blind-spot network (whose field of view is ~47 pixels at depth 2) training on patches where
    every pixel sees the border, unlike the whole slices it predicts."""
    setting = config.model.slice_axes
    if config.model.dimensions == "3d" or setting == "k":
        return (0,)
    if setting == "kji":
        return (0, 1, 2)
    isotropic = max(spacing_zyx) <= ISOTROPY_TOLERANCE * min(spacing_zyx)
    return (0, 1, 2) if isotropic and min(volume_shape) >= config.training.patch_size else (0,)


def build_network(
    config: DenoiseConfig,
    volume_shape: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    slice_axes: tuple[int, ...] = (0,),
) -> tuple[Network, PatchGeometry]:
    """The network and patch shape for this volume: 3D networks keep thin-slice axes unpooled; 2D
    patches fit the slices of every orientation used. The one place a network is built from a
    configuration (a saved model is rebuilt through it too)."""
    model = config.model
    skips = model.architecture != "dae"
    # the paired methods' UNet learns the correction to its input; an autoencoder has no path for it
    residual = config.method in PAIRED_METHODS and skips
    shown_shape = tuple(volume_shape)
    if len(slice_axes) > 1:
        smallest = min(volume_shape)
        volume_shape = (smallest, smallest, smallest)
    if config.method == "blindspot":
        spatial = fit_patch(config.training.patch_size, volume_shape, required_multiple(2, model.depth), 2, model.depth, shown_shape)
        geometry = PatchGeometry(spatial=spatial, context_slices=model.context_slices)
        out_channels = 2 if model.noise_fusion else 1
        return BlindSpotNet(geometry.channels, out_channels, model.depth, model.base_channels), geometry
    if model.dimensions == "3d":
        requested_depth = min(config.training.patch_size, volume_shape[0])
        pool_z = plan_pool_z(spacing_zyx, model.depth, requested_depth - requested_depth % 2)
        multiple = required_multiple(3, model.depth, pool_z)
        spatial = fit_patch(config.training.patch_size, volume_shape, multiple, 3, model.depth, shown_shape)
        pool_z = plan_pool_z(spacing_zyx, model.depth, spatial[0])
        geometry = PatchGeometry(spatial=spatial, context_slices=0)
        network = UNet(
            3, 1, 1, model.depth, model.base_channels, model.norm, model.blurpool, model.top_skip, pool_z, skips=skips, residual=residual
        )
    else:
        multiple = required_multiple(2, model.depth)
        spatial = fit_patch(config.training.patch_size, volume_shape, multiple, 2, model.depth, shown_shape)
        geometry = PatchGeometry(spatial=spatial, context_slices=model.context_slices)
        network = UNet(
            2,
            geometry.channels,
            1,
            model.depth,
            model.base_channels,
            model.norm,
            model.blurpool,
            model.top_skip,
            skips=skips,
            residual=residual,
        )
    return network, geometry


def _learning_rate(base: float, progress_fraction: float) -> float:
    """Cosine decay to 2 % of the base rate (Loshchilov & Hutter 2017)."""
    fraction = min(max(progress_fraction, 0.0), 1.0)
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * fraction)))


def start_run(training: TrainingConfig) -> tuple[np.random.Generator, torch.Generator, torch.device]:
    """Threads, seeds and device for a training run: the patch sampler's random generator, the
    torch generator for masks, and where the network runs."""
    configure_threads(training.threads)
    torch.manual_seed(training.seed)
    return np.random.default_rng(training.seed), torch.Generator().manual_seed(training.seed), select_device(training.device)


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def fit(
    network: torch.nn.Module,
    training: TrainingConfig,
    draw_batch: Callable[[], torch.Tensor],
    train_step: Callable[[torch.Tensor, float], float],
    validation_loss: Callable[[], Optional[float]],
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    network_input: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> TrainingHistory:
    """The training loop every method shares: steps until the step limit or the time budget, the
    cosine learning rate over whichever is closer, a validation pass after each epoch, progress and
    cancellation. ``train_step(batch, learning_rate)`` makes one optimiser step and returns its loss;
    ``validation_loss()`` scores the held-out patches (``None`` when there are none, and then the
    last weights are kept). Returns with the best weights loaded, their batch normalisation set from
    training batches (``network_input`` turns a batch into what the network takes; default: the
    batch itself), and the network in eval mode."""
    total_steps = training.max_epochs * training.steps_per_epoch
    budget = training.budget_seconds
    min_steps = min(training.min_steps, total_steps)
    extended = False
    history = TrainingHistory()
    best_state = copy.deepcopy(network.state_dict())
    start = time.perf_counter()
    report(progress, ProgressEvent("training", 0.0, message="starting", eta_seconds=budget))

    for _ in range(training.max_epochs):
        network.train()
        epoch_losses = []
        for _ in range(training.steps_per_epoch):
            check_cancelled(cancel)
            elapsed = time.perf_counter() - start
            done_fraction = training_fraction(history.steps, elapsed, total_steps, budget, min_steps)
            if done_fraction >= 1.0:
                break
            if budget and elapsed >= budget and not extended:
                extended = True
                report(
                    progress,
                    ProgressEvent(
                        "training",
                        done_fraction,
                        message=f"time budget reached after {history.steps} steps; training on to {min_steps} steps",
                    ),
                )
            epoch_losses.append(train_step(draw_batch(), _learning_rate(training.learning_rate, done_fraction)))
            history.steps += 1
            if history.steps % 10 == 0:
                _report_step(progress, history, epoch_losses, start, total_steps, budget, min_steps)
        if epoch_losses:
            history.train_loss.append(float(np.mean(epoch_losses)))
        epoch_validation_loss = validation_loss()
        if epoch_validation_loss is None:
            best_state = copy.deepcopy(network.state_dict())
        else:
            history.validation_loss.append(epoch_validation_loss)
            if history.best_validation_loss is None or epoch_validation_loss < history.best_validation_loss:
                history.best_validation_loss = epoch_validation_loss
                best_state = copy.deepcopy(network.state_dict())
        if len(epoch_losses) < training.steps_per_epoch:
            break

    history.seconds = time.perf_counter() - start
    if history.steps >= total_steps:
        history.stopped_by = "epochs"
    else:
        history.stopped_by = "min_steps" if extended else "budget"
    network.load_state_dict(best_state)
    recalibrate_batch_norm(network, draw_batch, network_input or (lambda batch: batch))
    network.eval()
    report(progress, ProgressEvent("training", 1.0, message=f"{history.steps} steps", loss=_last(history.train_loss), eta_seconds=0.0))
    return history


@torch.no_grad()
def recalibrate_batch_norm(
    network: torch.nn.Module,
    draw_batch: Callable[[], torch.Tensor],
    network_input: Callable[[torch.Tensor], torch.Tensor],
    batches: int = BATCH_NORM_BATCHES,
) -> None:
    """Sets the running statistics of every batch-norm layer to the average over ``batches`` fresh
    training batches, as the final weights see them.

    In eval mode a batch-norm layer uses running statistics, which training updates with momentum
    0.1 from their initial values (mean 0, variance 1) and from weights that kept changing. After a
    few dozen steps they are still far from the data's: at 6 steps a 3D N2V network that gives
    sensible output with batch statistics gave a nearly constant one with its running statistics
    (and, after the Rician correction, a volume of zeros). Recomputing them for the weights kept
    removes that mismatch at any step count (the recalibration of stochastic weight averaging,
    Izmailov et al. 2018)."""
    norms = [module for module in network.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [module.momentum for module in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average over the batches below
    network.train()
    try:
        for _ in range(batches):
            network(network_input(draw_batch()))
    finally:
        for module, momentum in zip(norms, momenta):
            module.momentum = momentum
        network.eval()


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
    rng, generator, device = start_run(training)
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

    history = fit(
        network, training, draw_batch, train_step, lambda: _validation_loss(network, validation, noise_variance), progress, cancel
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
    return torch.mean((prediction[(masked.batch_index, *masked.spatial_index)] - masked.targets) ** 2)


def training_fraction(steps: int, elapsed: float, total_steps: int, budget: Optional[float], min_steps: int) -> float:
    """How much of the training is done, 1 meaning stop: the larger of the step fraction and the
    time fraction, the latter capped by the fraction of ``min_steps`` made, so that a budget that runs
    out early is stretched to ``min_steps``. It moves continuously, so the learning-rate decay that
    follows it has no jumps whichever limit ends up in charge."""
    step_fraction = steps / total_steps
    if not budget:
        return step_fraction
    time_fraction = elapsed / budget
    if min_steps > 0:
        time_fraction = min(time_fraction, steps / min_steps)
    return max(step_fraction, time_fraction)


def _report_step(
    progress: Optional[ProgressCallback],
    history: TrainingHistory,
    epoch_losses: list[float],
    start: float,
    total_steps: int,
    budget: Optional[float],
    min_steps: int,
) -> None:
    elapsed = time.perf_counter() - start
    fraction = min(1.0, training_fraction(history.steps, elapsed, total_steps, budget, min_steps))
    eta = max(0.0, elapsed / max(fraction, 1e-9) - elapsed)
    loss = float(np.mean(epoch_losses[-10:]))
    report(progress, ProgressEvent("training", fraction, message=f"step {history.steps}", loss=loss, eta_seconds=eta))


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


def _last(values: list[float]) -> Optional[float]:
    return values[-1] if values else None
