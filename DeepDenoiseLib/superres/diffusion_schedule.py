"""Noise schedules of a denoising diffusion model: how much signal survives after each forward step.

The forward process mixes the clean image ``x0`` with Gaussian noise, ``x_t = sqrt(alpha_bar_t) x0 +
sqrt(1 - alpha_bar_t) eps``. :func:`cosine_schedule` is Nichol & Dhariwal's (2021) cosine schedule:
``alpha_bar`` follows ``cos^2`` of the step's fraction offset by ``s = 0.008``, so the signal fades
evenly over all steps, and each step's ``beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}`` is clipped at
0.999 to keep the last steps finite.

Why not the formula that is sometimes quoted for a "cosine schedule", ``alpha_t = cos^2(pi t / 2T)``
with ``alpha_bar`` as the running product of the ``alpha_t`` (:func:`design_alpha_bar`)? It leaves
almost no signal after the first fifth of the steps (``alpha_bar`` is about 0.06 at step 150 and 0.001
at step 200 of 1000), so most steps only ever see noise.

``variance_scale`` multiplies the variance of every noise draw of the sampler: the starting noise and
the noise added back at each reverse step (1 is the textbook sampler; the design this comes from
scaled the variance by 0.3, a sampling temperature that trades sample diversity for samples closer
to their mean).

Steps are numbered ``t = 1..T``; arrays hold step ``t`` at index ``t - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COSINE_OFFSET = 0.008
MAX_BETA = 0.999


@dataclass(frozen=True)
class DiffusionSchedule:
    """The forward process over ``timesteps`` steps: ``betas[t-1]`` and ``alpha_bar[t-1]`` (float64)."""

    betas: np.ndarray
    variance_scale: float = 1.0

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 1:
            raise ValueError("betas must be a non-empty 1D array")
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError("every beta must lie in (0, 1)")
        if not 0 <= self.variance_scale <= 1:
            raise ValueError(f"variance_scale must lie in [0, 1]; got {self.variance_scale}")
        object.__setattr__(self, "betas", betas)

    @property
    def timesteps(self) -> int:
        return int(self.betas.size)

    @property
    def alpha_bar(self) -> np.ndarray:
        """The share of the clean signal's variance left after each step (decreasing towards 0)."""
        return np.cumprod(1.0 - self.betas)

    def signal_to_noise(self) -> np.ndarray:
        """``alpha_bar / (1 - alpha_bar)`` per step."""
        alpha_bar = self.alpha_bar
        return alpha_bar / (1.0 - alpha_bar)

    def sampling_steps(self, count: int) -> np.ndarray:
        """``count`` steps from ``T`` down to 1, evenly spaced (the respacing of Nichol & Dhariwal),
        for a sampler that takes fewer steps than the model was trained with."""
        if not 1 <= count <= self.timesteps:
            raise ValueError(f"the number of sampling steps must lie in [1, {self.timesteps}]; got {count}")
        steps = np.round(np.linspace(self.timesteps, 1, count)).astype(np.int64)
        return np.unique(steps)[::-1]


def cosine_alpha_bar(fraction: np.ndarray, offset: float = COSINE_OFFSET) -> np.ndarray:
    """Nichol & Dhariwal's ``f(t/T) / f(0)`` with ``f(u) = cos^2((u + s) / (1 + s) * pi / 2)``."""
    fraction = np.asarray(fraction, dtype=np.float64)

    def f(u: np.ndarray) -> np.ndarray:
        return np.cos((u + offset) / (1.0 + offset) * np.pi / 2.0) ** 2

    return f(fraction) / f(np.zeros(()))


def cosine_schedule(
    timesteps: int = 1000, offset: float = COSINE_OFFSET, max_beta: float = MAX_BETA, variance_scale: float = 1.0
) -> DiffusionSchedule:
    """The cosine schedule over ``timesteps`` steps, each ``beta`` clipped at ``max_beta``."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be at least 1; got {timesteps}")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie in (0, 1); got {max_beta}")
    if offset < 0:
        raise ValueError(f"the cosine offset must not be negative; got {offset}")
    alpha_bar = cosine_alpha_bar(np.arange(timesteps + 1) / timesteps, offset)
    betas = np.clip(1.0 - alpha_bar[1:] / alpha_bar[:-1], 1e-8, max_beta)
    return DiffusionSchedule(betas, variance_scale)


def design_alpha_bar(timesteps: int = 1000) -> np.ndarray:
    """``alpha_bar`` of the literal ``alpha_t = cos^2(pi t / 2T)`` formula, kept only to show why it
    is not used (see the module's docstring and ``bench/benchmark_superres.py``)."""
    steps = np.arange(1, timesteps + 1, dtype=np.float64)
    return np.cumprod(np.cos(np.pi * steps / (2.0 * timesteps)) ** 2)
