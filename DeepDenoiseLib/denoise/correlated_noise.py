"""R2R's recorruption noise with the volume's own spatial correlation (noise_correlation.py), drawn
for training patches cut along any of the volume's axes, rotated or not.

A patch's axes are not the volume's: a 2D network's patches are cut across any of the three axes and
turned in-plane, and their neighbouring slices arrive as channels in the order ``z, z-1, z+1, z-2,
z+2, ...`` (patches.context_stack). So each patch's white noise, drawn with a margin, is convolved
along its depth (or slice stack), rows and columns with the kernels of the volume axes lying there
(patches.PatchSampler.training_batch_with_axes), and the stack is put back into channel order.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from DeepDenoiseLib.denoise.noise_correlation import NoiseCorrelation


class CorrelatedNoise:
    """Draws unit-variance noise with ``correlation`` for patches ``(B, C, H, W)`` (2D networks: the
    channels are a slice and its neighbours) or ``(B, 1, D, H, W)`` (3D networks)."""

    def __init__(self, correlation: NoiseCorrelation) -> None:
        self.kernels = [torch.as_tensor(kernel, dtype=torch.float32) for kernel in correlation.kernels()]
        self.radius = (len(self.kernels[0]) - 1) // 2

    def draw(self, shape: tuple[int, ...], axes: np.ndarray, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Noise of ``shape`` (on the CPU) for patches whose volume axes (along the stack or depth, the
        rows, the columns) are the rows of ``axes``."""
        noise = torch.empty(shape)
        stacked = len(shape) == 4  # a 2D network's patch: neighbouring slices as channels
        depth = shape[1] if stacked else shape[2]
        margin = 2 * self.radius
        for layout in np.unique(axes, axis=0):
            members = torch.from_numpy(np.flatnonzero((axes == layout).all(axis=1)))
            white = torch.randn((len(members), 1, depth + margin, shape[-2] + margin, shape[-1] + margin), generator=generator)
            coloured = self._convolve(white, [int(axis) for axis in layout])
            noise[members] = coloured[:, 0][:, _channel_order(depth)] if stacked else coloured
        return noise

    def _convolve(self, white: torch.Tensor, layout: list[int]) -> torch.Tensor:
        """``white`` (``(N, 1, D, H, W)``, with the margin) convolved along D, H and W with the
        kernels of the volume axes in ``layout``, without padding (the margin is used up)."""
        out = white
        for dimension, volume_axis in enumerate(layout):
            view = [1, 1, 1]
            view[dimension] = -1
            kernel = self.kernels[volume_axis].reshape(1, 1, *view)
            out = F.conv3d(out, kernel)
        return out


def _channel_order(depth: int) -> list[int]:
    """Where each channel of a slice stack (``z, z-1, z+1, z-2, z+2, ...``) lies among the slices in
    spatial order (``z-c ... z+c``)."""
    context = depth // 2
    offsets = [0] + [sign * step for step in range(1, context + 1) for sign in (-1, 1)]
    return [offset + context for offset in offsets]
