"""The one training loop every network trains in, the denoising methods' and super-resolution's.

:func:`fit` takes plain numbers (:class:`TrainingLimits`: a step limit, a time budget, a floor of
steps the budget is stretched to, and how often to validate) and callables for what differs between
methods (drawing a batch, one optimiser step, the validation loss, the learning-rate schedule). It
steps until the step limit or the budget, whichever comes first; the learning-rate schedule follows
whichever of the two is closer, so a short budget still ends with a settled model. With validation,
the weights with the lowest validation loss are kept; batch normalisation is then recalibrated for
the weights kept.

>>> limits = TrainingLimits(max_steps=2000, budget_seconds=240.0, min_steps=1000, steps_per_epoch=50)
>>> history = fit(network, limits, draw_batch, train_step, cosine_decay(1e-3), validation_loss)
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from DeepDenoiseLib.core.device import configure_threads, select_device
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report

#: Training batches whose statistics set a trained network's batch normalisation (see
#: :func:`recalibrate_batch_norm`).
BATCH_NORM_BATCHES = 8


@dataclass(frozen=True)
class TrainingLimits:
    """When training stops: after ``max_steps`` steps, or when ``budget_seconds`` of wall-clock time
    have passed (None: no budget) and at least ``min_steps`` steps are made (a budget that runs out
    earlier is stretched to them; 0: stop at the budget). Every ``steps_per_epoch`` steps the
    validation loss is measured and the best weights kept (None: no validation, the last weights).
    ``patience``: stop early once that many validations in a row found no better weights (None:
    never); ``validate_first``: score the starting weights too, so that a pretrained network is kept
    when training does not improve on it."""

    max_steps: int
    budget_seconds: Optional[float] = None
    min_steps: int = 0
    steps_per_epoch: Optional[int] = None
    patience: Optional[int] = None
    validate_first: bool = False

    @classmethod
    def in_epochs(cls, epochs: int, steps_per_epoch: int, budget_seconds: Optional[float], min_steps: int) -> TrainingLimits:
        """The limits of ``epochs`` epochs of ``steps_per_epoch`` steps."""
        return cls(epochs * steps_per_epoch, budget_seconds, min_steps, steps_per_epoch)


@dataclass
class TrainingHistory:
    """What happened during training, for the run's summary and for tests. ``train_loss`` holds each
    epoch's mean loss, ``step_losses`` every step's; ``stopped_by`` is ``epochs`` (or ``steps``
    without epochs), ``budget`` or ``min_steps``; ``precision`` the arithmetic it trained in
    (core/precision.py)."""

    steps: int = 0
    seconds: float = 0.0
    train_loss: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_validation_loss: Optional[float] = None
    initial_validation_loss: Optional[float] = None
    stopped_by: str = ""
    precision: str = "float32"


def cosine_decay(base: float, floor: float = 0.02, start: float = 0.0) -> Callable[[float], float]:
    """The learning rate over the share of training done: ``base`` until ``start``, then a cosine
    decay to ``floor`` times ``base`` at the end (Loshchilov & Hutter 2017). The denoising methods
    decay from the start to 2 %; super-resolution learns more in short CPU runs at a constant rate
    and decays over the last 30 % to 5 %."""

    def learning_rate(done: float) -> float:
        if done <= start:
            return base
        fraction = min(max((done - start) / (1.0 - start), 0.0), 1.0)
        return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * fraction)))

    return learning_rate


def training_fraction(steps: int, elapsed: float, limits: TrainingLimits) -> float:
    """How much of the training is done, 1 meaning stop: the larger of the step fraction and the
    time fraction, the latter capped by the fraction of ``min_steps`` made, so that a budget that runs
    out early is stretched to ``min_steps``. It moves continuously, so the learning-rate decay that
    follows it has no jumps whichever limit ends up in charge."""
    step_fraction = steps / limits.max_steps
    if not limits.budget_seconds:
        return step_fraction
    time_fraction = elapsed / limits.budget_seconds
    min_steps = min(limits.min_steps, limits.max_steps)
    if min_steps > 0:
        time_fraction = min(time_fraction, steps / min_steps)
    return max(step_fraction, time_fraction)


def seeded_run(seed: int, threads: Optional[int], device: str) -> tuple[np.random.Generator, torch.Generator, torch.device]:
    """Threads, seeds and device for a training run: a random generator for patches, a torch
    generator (masks, diffusion noise), and where the network runs."""
    configure_threads(threads)
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed), select_device(device)


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate


def fit(
    network: torch.nn.Module,
    limits: TrainingLimits,
    draw_batch: Callable[[], Any],
    train_step: Callable[[Any, float], float],
    learning_rate: Callable[[float], float],
    validation_loss: Optional[Callable[[], Optional[float]]] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    network_input: Optional[Callable[[Any], torch.Tensor]] = None,
    label: str = "",
) -> TrainingHistory:
    """Trains ``network`` within ``limits``. ``train_step(batch, learning_rate)`` makes one optimiser
    step on a batch from ``draw_batch()`` and returns its loss; ``learning_rate(done)`` is the rate
    at the share ``done`` of the training (:func:`cosine_decay`); ``validation_loss()`` scores the
    held-out patches after each epoch (``None`` when there are none: the last weights are kept).
    Reports progress (``label`` starts each message) and honours ``cancel``. Returns with the best
    weights loaded, their batch normalisation set from training batches (``network_input`` turns a
    batch into what the network takes; default: the batch itself), and the network in eval mode."""
    steps_per_epoch = limits.steps_per_epoch or limits.max_steps
    epochs = math.ceil(limits.max_steps / steps_per_epoch)
    min_steps = min(limits.min_steps, limits.max_steps)
    budget = limits.budget_seconds
    extended = False
    history = TrainingHistory()
    best_state = None
    stale_validations = 0
    if limits.validate_first and validation_loss is not None:
        history.initial_validation_loss = history.best_validation_loss = validation_loss()
        best_state = copy.deepcopy(network.state_dict()) if history.initial_validation_loss is not None else None
    start = time.perf_counter()
    report(progress, ProgressEvent("training", 0.0, message=f"{label}starting", eta_seconds=budget))

    for _ in range(epochs):
        network.train()
        epoch_losses = []
        for _ in range(steps_per_epoch):
            check_cancelled(cancel)
            elapsed = time.perf_counter() - start
            done = training_fraction(history.steps, elapsed, limits)
            if done >= 1.0:
                break
            if budget and elapsed >= budget and not extended:
                extended = True
                message = f"{label}time budget reached after {history.steps} steps; training on to {min_steps} steps"
                report(progress, ProgressEvent("training", done, message=message))
            loss = train_step(draw_batch(), learning_rate(done))
            epoch_losses.append(loss)
            history.step_losses.append(loss)
            history.steps += 1
            if history.steps % 10 == 0:
                _report_step(progress, history, start, limits, label)
        if epoch_losses:
            history.train_loss.append(float(np.mean(epoch_losses)))
        epoch_validation_loss = validation_loss() if validation_loss is not None else None
        if epoch_validation_loss is not None:
            history.validation_loss.append(epoch_validation_loss)
            if history.best_validation_loss is None or epoch_validation_loss < history.best_validation_loss:
                history.best_validation_loss = epoch_validation_loss
                best_state = copy.deepcopy(network.state_dict())
                stale_validations = 0
            else:
                stale_validations += 1
        if len(epoch_losses) < steps_per_epoch:
            break
        if limits.patience is not None and stale_validations >= limits.patience:
            history.stopped_by = "patience"
            report(
                progress,
                ProgressEvent("training", 1.0, message=f"{label}the validation loss stopped improving after {history.steps} steps"),
            )
            break

    history.seconds = time.perf_counter() - start
    if not history.stopped_by:
        history.stopped_by = (
            ("epochs" if limits.steps_per_epoch else "steps")
            if history.steps >= limits.max_steps
            else ("min_steps" if extended else "budget")
        )
    if best_state is not None:
        network.load_state_dict(best_state)
    recalibrate_batch_norm(network, draw_batch, network_input or (lambda batch: batch))
    network.eval()
    last_loss = history.train_loss[-1] if history.train_loss else None
    report(progress, ProgressEvent("training", 1.0, message=f"{label}{history.steps} steps", loss=last_loss, eta_seconds=0.0))
    return history


def _report_step(progress: Optional[ProgressCallback], history: TrainingHistory, start: float, limits: TrainingLimits, label: str) -> None:
    elapsed = time.perf_counter() - start
    fraction = min(1.0, training_fraction(history.steps, elapsed, limits))
    eta = max(0.0, elapsed / max(fraction, 1e-9) - elapsed)
    loss = float(np.mean(history.step_losses[-10:]))
    report(progress, ProgressEvent("training", fraction, message=f"{label}step {history.steps}", loss=loss, eta_seconds=eta))


@torch.no_grad()
def recalibrate_batch_norm(
    network: torch.nn.Module,
    draw_batch: Callable[[], Any],
    network_input: Callable[[Any], torch.Tensor],
    batches: int = BATCH_NORM_BATCHES,
) -> None:
    """Sets the running statistics of every batch-norm layer to the average over ``batches`` fresh
    training batches, as the final weights see them (networks without batch norm are left alone).

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
