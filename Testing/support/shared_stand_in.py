"""A tiny stand-in for the shared benchmark folder (../shared/data): the four files the benchmarks
read, so that their tests run without the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.variants import BUNDLED_FILES  # the shared files, by what they hold
from DeepDenoiseLib.core.noise_simulation import add_rician_noise
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import write_volume


def write_shared_stand_in(folder: Path) -> Path:
    """Writes a bright ball (20 voxels a side, 1.5 mm, on a rotated grid), its mask and its two
    Rician versions into ``folder``; returns ``folder``."""
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, 20) for _ in range(3)), indexing="ij")
    ball = np.clip(1.2 - np.sqrt(k**2 + j**2 + i**2), 0.0, 1.0).astype(np.float32)
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    clean = Volume(ball, spacing=(1.5, 1.5, 1.5), origin=(10.0, -5.0, 3.0), direction=direction)
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(clean, folder / BUNDLED_FILES["clean"])
    write_volume(clean.with_array((ball > 0.1).astype(np.float32)), folder / BUNDLED_FILES["mask"], dtype=np.uint8)
    for key, level in (("rician05", 0.05), ("rician10", 0.10)):
        write_volume(clean.with_array(add_rician_noise(ball, level, seed=1234)), folder / BUNDLED_FILES[key])
    return folder
