"""Small synthetic volumes shared by the denoising tests: smooth phantoms with known clean truth."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from DeepDenoiseLib.core.noise_simulation import add_gaussian_noise


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Runs a test module's torch work on one CPU thread and restores the setting after it.

    One thread, because on a busy 2-core machine two OpenMP threads that spin while waiting for each
    other made these tests 10-30x slower (measured: 9.5 s with one thread, 123 s with two, while
    another process kept one core busy). Import it into a test module to use it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smooth_phantom(shape: tuple[int, int, int] = (32, 64, 64), seed: int = 0) -> np.ndarray:
    """A piecewise-smooth float32 volume in about [0, 1]: a soft-edged ellipsoid, a brighter
    soft-edged box inside it and a few Gaussian blobs, on a dark background."""
    rng = np.random.default_rng(seed)
    k, j, i = (np.linspace(-1.0, 1.0, n) for n in shape)
    z, y, x = np.meshgrid(k, j, i, indexing="ij")
    radius = np.sqrt((z / 0.85) ** 2 + (y / 0.8) ** 2 + (x / 0.7) ** 2)
    volume = 0.4 / (1.0 + np.exp((radius - 1.0) / 0.04))
    box = (np.abs(z) < 0.45) & (np.abs(y - 0.1) < 0.3) & (np.abs(x + 0.15) < 0.25)
    volume = volume + 0.2 * box
    for _ in range(5):
        centre = rng.uniform(-0.5, 0.5, size=3)
        width = rng.uniform(0.1, 0.25)
        amplitude = rng.uniform(0.15, 0.35)
        volume = volume + amplitude * np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / (2 * width**2))
    return volume.astype(np.float32)


def noisy_phantom(shape: tuple[int, int, int] = (32, 64, 64), sigma: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)``: :func:`smooth_phantom` plus seeded Gaussian noise of ``sigma``."""
    clean = smooth_phantom(shape, seed)
    return clean, add_gaussian_noise(clean, sigma, seed + 1)


def tiny_config_dict(method: str = "n2v", **sections: dict) -> dict:
    """Settings for a fast, deterministic CPU run on one thread (merge over ``DenoiseConfig.for_method``).
    Method r2r keeps the pretrained prior's network (its size is fixed); the others get a tiny one."""
    from DeepDenoiseLib.core.settings import deep_merge

    base = {
        "model": {} if method == "r2r" else {"depth": 1, "base_channels": 4, "context_slices": 1},
        "training": {
            "patch_size": 16,
            "batch_size": 2,
            "steps_per_epoch": 2,
            "max_epochs": 2,
            "budget_seconds": None,
            "threads": 1,
            "device": "cpu",
        },
        "prediction": {"tile_size": 32, "tile_overlap": 8, "batch_size": 4},
    }
    return deep_merge(base, sections)


def tiny_config(method: str = "n2v", **sections: dict):
    """A :class:`DenoiseConfig` for ``method`` with :func:`tiny_config_dict` laid over its defaults."""
    from DeepDenoiseLib.denoise.config import DenoiseConfig

    return DenoiseConfig.for_method(method, **tiny_config_dict(method, **sections))
