"""A PNG that shows what denoising did: noisy | denoised | residual, on an axial and a coronal slice."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np


def save_comparison_figure(noisy: np.ndarray, denoised: np.ndarray, path: Union[str, Path], title: str = "") -> Path:
    """Writes the figure for two ``[k, j, i]`` volumes on one grid; the residual is noisy minus
    denoised, shown on a symmetric scale so structure that was wrongly removed stands out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    residual = noisy - denoised
    low, high = np.percentile(noisy, [0.5, 99.5])
    spread = float(np.percentile(np.abs(residual), 99.5)) or 1.0
    views = {
        "axial": lambda v: v[v.shape[0] // 2],
        "coronal": lambda v: v[:, v.shape[1] // 2][::-1],
    }
    figure, axes = plt.subplots(len(views), 3, figsize=(9, 3 * len(views)), squeeze=False)
    for row, (view, take) in enumerate(views.items()):
        panels = [
            (take(noisy), "noisy", "gray", low, high),
            (take(denoised), "denoised", "gray", low, high),
            (take(residual), "residual (noisy - denoised)", "coolwarm", -spread, spread),
        ]
        for column, (image, label, cmap, vmin, vmax) in enumerate(panels):
            axis = axes[row][column]
            axis.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            axis.set_title(f"{label}, {view}", fontsize=9)
            axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
