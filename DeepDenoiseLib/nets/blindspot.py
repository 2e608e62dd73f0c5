"""A blind-spot network: Noise2Void without masking, every voxel trained at every step.

Laine et al. 2019 ("High-Quality Self-Supervised Deep Image Denoising") build the blind spot into
the architecture: a UNet whose convolutions and poolings only look upward (each output row sees
input rows at or above it), whose features are shifted down one row at the end (so a pixel sees only
rows strictly above it), run on the four 90-degree rotations of the slice and fused by 1x1
convolutions. The union of the four half-planes is every pixel but the centre. Since the centre
voxel is never seen, the loss can use all voxels, where masking N2V learns from ~2 % of them per
step; on a CPU budget that is the difference between an under-trained and a converged model.

Neighbouring slices (context channels) pass through the same half-plane branches, and their
centre-pixel values join the fusion directly: their noise is independent of the centre voxel's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Moves a feature map down by ``rows`` (zeros enter at the top), so row r holds row r-rows."""
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2], :]


class UpwardConv(nn.Module):
    """A 3x3 convolution whose output row r sees input rows r-2..r only (zero-padded above)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 2, 0)))


class UpwardBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            UpwardConv(in_channels, out_channels),
            nn.LeakyReLU(0.1, inplace=True),
            UpwardConv(out_channels, out_channels),
            nn.LeakyReLU(0.1, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class UpwardUNet(nn.Module):
    """The half-plane branch: a UNet in which no output row depends on any input row below it.
    Pooling is preceded by a one-row shift so a pooled row never carries a later row upward."""

    def __init__(self, in_channels: int, depth: int, base_channels: int) -> None:
        super().__init__()
        self.depth = depth
        channels = [base_channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for level in range(depth):
            self.encoders.append(UpwardBlock(previous, channels[level]))
            previous = channels[level]
        self.bottleneck = UpwardBlock(previous, channels[depth])
        self.decoders = nn.ModuleList(
            UpwardBlock(channels[level + 1] + channels[level], channels[level]) for level in reversed(range(depth))
        )
        self.out_channels = channels[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(shift_down(x), 2)
        x = self.bottleneck(x)
        for decoder, level in zip(self.decoders, reversed(range(self.depth))):
            x = F.interpolate(x, size=skips[level].shape[2:], mode="nearest")
            x = decoder(torch.cat([x, skips[level]], dim=1))
        return shift_down(x)


class BlindSpotNet(nn.Module):
    """Predicts each pixel of channel 0 from everything around it but itself.

    Input ``(B, C, H, W)``: channel 0 is the slice to denoise, the others are context slices. Output
    ``(B, out_channels, H, W)``. Height and width must be divisible by ``2**depth``.
    """

    spatial_dims = 2

    def __init__(self, in_channels: int = 1, out_channels: int = 1, depth: int = 2, base_channels: int = 32) -> None:
        super().__init__()
        self.depth = depth
        self.in_channels = in_channels
        self.branch = UpwardUNet(in_channels, depth, base_channels)
        fused = 4 * self.branch.out_channels + (in_channels - 1)
        width = 2 * self.branch.out_channels
        self.fusion = nn.Sequential(
            nn.Conv2d(fused, width, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(width, width, 1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(width, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        if x.shape[2] == x.shape[3]:
            rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=0)
            branches = self.branch(rotated).chunk(4, dim=0)
            features = [torch.rot90(f, -k, dims=(2, 3)) for k, f in enumerate(branches)]
        else:
            for k in range(4):
                features.append(torch.rot90(self.branch(torch.rot90(x, k, dims=(2, 3))), -k, dims=(2, 3)))
        features.append(x[:, 1:])
        return self.fusion(torch.cat(features, dim=1))


LOG_VARIANCE_RANGE = (-16.0, 4.0)


def gaussian_prior_nll(output: torch.Tensor, observed: torch.Tensor, noise_variance: float) -> torch.Tensor:
    """Negative log-likelihood of the noisy voxels under the predicted prior N(mean, var) widened by
    Gaussian noise: ``observed ~ N(mean, var + noise_variance)``. ``output`` is ``(B, 2, ...)``:
    the prior mean and its log variance."""
    mean = output[:, 0]
    variance = torch.exp(output[:, 1].clamp(*LOG_VARIANCE_RANGE)) + noise_variance
    return 0.5 * torch.mean(torch.log(variance) + (observed - mean) ** 2 / variance)


def posterior(output: torch.Tensor, observed: torch.Tensor, noise_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean value's posterior mean and variance given the neighbourhood's prior and the voxel's
    own noisy value: a precision-weighted average (Laine et al. 2019, Gaussian case). Where the prior
    is sure, the result follows it; where it is unsure (edges, fine detail), it keeps the voxel."""
    prior_mean = output[:, 0]
    prior_variance = torch.exp(output[:, 1].clamp(*LOG_VARIANCE_RANGE))
    total = prior_variance + noise_variance
    mean = (prior_mean * noise_variance + observed * prior_variance) / total
    return mean, prior_variance * noise_variance / total
