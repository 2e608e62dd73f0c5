"""The diffusion maths as plain functions: noising (``q_sample``), what the network learns to predict
(``v``, ``eps`` or ``x0``), and the reverse steps of DDPM (ancestral) and DDIM samplers.

A network trained with ``prediction="v"`` predicts ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0``
(Salimans & Ho 2022), which stays well scaled at every noise level; ``"eps"`` predicts the noise
(Ho et al. 2020); ``"x0"`` the clean sample itself. The squared error of each weighs the noise
levels differently: in terms of the error on ``x0``, ``v`` weighs each step by ``1 + SNR`` and
``eps`` by ``SNR``, while ``x0`` weighs all alike, so it spends the most effort where the noise
dominates, which is where the mean of the samples is decided. Either way the samplers work with the
implied clean estimate ``x0`` and noise ``eps``.

Both samplers walk a respaced subset of the training steps (:meth:`DiffusionSchedule.sampling_steps`):
DDIM (Song et al. 2021) with ``eta`` 0 is deterministic given the starting noise; DDPM's ancestral
step adds fresh noise with the posterior variance of the respaced chain. The schedule's
``variance_scale`` multiplies the variance of every noise draw, the starting noise included (a
sampling temperature: below 1, samples lie closer to their mean and spread less). All randomness
comes from a seeded ``torch.Generator`` (drawn on the CPU, so a seed gives the same noise on every
device).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from DeepDenoiseLib.core.progress import CancelToken, check_cancelled
from DeepDenoiseLib.superres.config import PREDICTIONS, SAMPLERS
from DeepDenoiseLib.superres.diffusion_schedule import DiffusionSchedule

#: Maps (noisy sample x_t, steps t as float) to the network's prediction (eps or v).
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_item(values: np.ndarray, steps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t - 1]`` for each batch item's step, shaped to broadcast over ``like``."""
    picked = torch.as_tensor(values, dtype=torch.float64)[steps.cpu().long() - 1]
    return picked.to(device=like.device, dtype=like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def q_sample(x0: torch.Tensor, steps: torch.Tensor, noise: torch.Tensor, schedule: DiffusionSchedule) -> torch.Tensor:
    """``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise`` for each item's step ``t`` (1..T)."""
    alpha_bar = _per_item(schedule.alpha_bar, steps, x0)
    return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor, schedule: DiffusionSchedule, prediction: str
) -> torch.Tensor:
    """What the network should output for ``x_t = q_sample(x0, steps, noise)``: ``noise`` or ``v``."""
    _check_prediction(prediction)
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    alpha_bar = _per_item(schedule.alpha_bar, steps, x0)
    return alpha_bar.sqrt() * noise - (1.0 - alpha_bar).sqrt() * x0


def split_prediction(x_t: torch.Tensor, output: torch.Tensor, alpha_bar: float, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean estimate ``x0`` and noise ``eps`` implied by the network's ``output`` at ``x_t``."""
    _check_prediction(prediction)
    signal, noise_level = float(np.sqrt(alpha_bar)), float(np.sqrt(1.0 - alpha_bar))
    if prediction == "v":
        return signal * x_t - noise_level * output, noise_level * x_t + signal * output
    if prediction == "x0":
        return output, (x_t - signal * output) / noise_level
    return (x_t - noise_level * output) / signal, output


def ddim_step(
    x0: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: float,
    alpha_bar_previous: float,
    eta: float,
    variance_scale: float,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """One DDIM step from ``alpha_bar`` to ``alpha_bar_previous`` (1 at the end of the chain); ``eta``
    0 adds no noise, ``eta`` 1 adds DDPM's amount (times ``variance_scale``)."""
    variance = eta**2 * (1.0 - alpha_bar_previous) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_previous)
    variance *= variance_scale
    direction = float(np.sqrt(max(1.0 - alpha_bar_previous - variance, 0.0)))
    x_previous = float(np.sqrt(alpha_bar_previous)) * x0 + direction * eps
    if variance > 0:
        x_previous = x_previous + float(np.sqrt(variance)) * _noise_like(x0, generator)
    return x_previous


def ddpm_step(
    x_t: torch.Tensor,
    x0: torch.Tensor,
    alpha_bar: float,
    alpha_bar_previous: float,
    variance_scale: float,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """One ancestral step: a draw from the Gaussian posterior ``q(x_previous | x_t, x0)`` of the
    (respaced) chain, its variance times ``variance_scale``; the last step returns ``x0``."""
    if alpha_bar_previous >= 1.0:
        return x0
    alpha = alpha_bar / alpha_bar_previous
    beta = 1.0 - alpha
    mean = (float(np.sqrt(alpha_bar_previous)) * beta / (1.0 - alpha_bar)) * x0 + (
        float(np.sqrt(alpha)) * (1.0 - alpha_bar_previous) / (1.0 - alpha_bar)
    ) * x_t
    variance = beta * (1.0 - alpha_bar_previous) / (1.0 - alpha_bar) * variance_scale
    if variance <= 0:
        return mean
    return mean + float(np.sqrt(variance)) * _noise_like(x0, generator)


def sample(
    denoise_fn: DenoiseFn,
    shape: tuple[int, ...],
    schedule: DiffusionSchedule,
    steps: int,
    sampler: str = "ddim",
    prediction: str = "v",
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    cancel: Optional[CancelToken] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """Draws samples of ``shape`` by walking ``steps`` reverse steps from pure noise (of variance
    ``schedule.variance_scale``).

        ``on_step(done, total)`` is called after each step; ``cancel`` is checked before each.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if eta < 0:
        raise ValueError(f"eta must not be negative; got {eta}")
    device = device or torch.device("cpu")
    alpha_bar = schedule.alpha_bar
    sequence = schedule.sampling_steps(steps)
    x = float(np.sqrt(schedule.variance_scale)) * torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
    for index, step in enumerate(sequence):
        check_cancelled(cancel)
        current = float(alpha_bar[step - 1])
        previous = float(alpha_bar[sequence[index + 1] - 1]) if index + 1 < len(sequence) else 1.0
        timesteps = torch.full((shape[0],), float(step), device=device)
        with torch.no_grad():
            output = denoise_fn(x, timesteps)
        x0, eps = split_prediction(x, output, current, prediction)
        if sampler == "ddim":
            x = ddim_step(x0, eps, current, previous, eta, schedule.variance_scale, generator)
        else:
            x = ddpm_step(x, x0, current, previous, schedule.variance_scale, generator)
        if on_step is not None:
            on_step(index + 1, len(sequence))
    return x


def _noise_like(reference: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(reference.shape, generator=generator, dtype=torch.float32).to(reference.device, reference.dtype)


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}; got {prediction!r}")
