"""A denoising network told the noise level: a bias-free residual 2D UNet with the noise sigma as an
extra input channel (a noise-level map, as in FFDNet, Zhang et al. 2018).

One network then serves every noise level, and a pretrained one can be reused on any volume: the
level it is given says how much to smooth. Being bias-free (no additive term anywhere), it is
positively homogeneous: scaling the input and the noise level together scales the output, so it
also works at intensity scales and noise levels beyond those it was trained on (Mohan et al. 2020).
Its first input channel is the slice being denoised, the others its neighbours (patches.context_stack);
the output is that slice, denoised.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from DeepDenoiseLib.nets.unet import UNet

#: The noise-level channel holds ten times the sigma: noise levels of normalised volumes are
#: typically 0.005-0.3, which this brings closer to the intensities' own scale.
NOISE_CHANNEL_SCALE = 10.0


class NoiseConditionedUNet(nn.Module):
    """``forward(x, noise_level)``: ``x`` is ``(B, 1 + 2 * context_slices, H, W)``, ``noise_level``
    the noise sigma in ``x``'s units (a number, or one per batch item); returns ``(B, 1, H, W)``."""

    spatial_dims = 2

    def __init__(self, context_slices: int = 2, depth: int = 2, base_channels: int = 32) -> None:
        super().__init__()
        self.context_slices = context_slices
        self.depth = depth
        self.base_channels = base_channels
        self.unet = UNet(2, 2 * context_slices + 2, 1, depth, base_channels, norm="none", residual=True, bias=False)

    def forward(self, x: torch.Tensor, noise_level: Union[float, torch.Tensor]) -> torch.Tensor:
        level = torch.as_tensor(noise_level, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        level_map = (level * NOISE_CHANNEL_SCALE).expand(x.shape[0], 1, *x.shape[2:])
        return self.unet(torch.cat([x, level_map], dim=1))
