"""The optional adversarial loss of supervised training: a patch discriminator and its LSGAN losses.

Trained on (noisy, clean) pairs with a squared or absolute error alone, a network predicts the
average of every clean image that its noisy input could come from, which blurs fine texture. A
discriminator that tells clean patches from denoised ones (PatchGAN, Isola et al. 2017: one score per
overlapping patch, so it judges texture rather than layout) gives the network a second signal: look
like the clean volumes. Its least-squares losses (LSGAN, Mao et al. 2017) and spectral normalisation
(Miyato et al. 2018) keep the game stable, and the adversarial term is scaled so that its gradient
at the network's output layer is a fixed fraction of the reconstruction loss's (the adaptive weight
of Esser et al. 2021), so the reconstruction loss stays in charge whatever the intensities.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

#: The adaptive scale is capped so that a vanishing adversarial gradient cannot blow the term up.
MAX_ADAPTIVE_SCALE = 1e4


class PatchDiscriminator(nn.Module):
    """Strided 4x4(x4) convolutions (each halving the size) and a last 3x3(x3) convolution giving one
    realness score per patch; ``layers`` strided convolutions see patches of about ``2**(layers+2)``
    voxels."""

    def __init__(self, spatial_dims: int, in_channels: int = 1, base_channels: int = 16, layers: int = 3) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        blocks: list[nn.Module] = []
        previous = in_channels
        for level in range(layers):
            channels = base_channels * 2 ** min(level, 3)
            blocks += [spectral_norm(conv(previous, channels, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
            previous = channels
        blocks.append(spectral_norm(conv(previous, 1, 3, padding=1)))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def discriminator_layers(patch_spatial: tuple[int, ...], most: int = 3) -> int:
    """As many strided layers as the patch allows (at most ``most``), leaving at least 2 voxels."""
    return max(1, min(most, int(math.log2(min(patch_spatial))) - 1))


class AdversarialLoss:
    """A discriminator with its own optimiser, and the generator's adversarial term.

    Each training step: :meth:`generator_term` for the network's loss, the network's optimiser
    step, then :meth:`discriminator_step` on the same clean and denoised patches.
    """

    def __init__(
        self,
        spatial_dims: int,
        patch_spatial: tuple[int, ...],
        weight: float,
        device: torch.device,
        base_channels: int = 16,
    ) -> None:
        self.weight = float(weight)
        self.discriminator = PatchDiscriminator(spatial_dims, 1, base_channels, discriminator_layers(patch_spatial)).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), betas=(0.5, 0.999))
        self.last_scale = 0.0

    def generator_term(self, output: torch.Tensor, reconstruction_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
        """``scale * mean((D(output) - 1)**2)``, with ``scale`` making the term's gradient at
        ``last_layer`` (the network's output weights) ``weight`` times the reconstruction loss's."""
        self.discriminator.requires_grad_(False)
        adversarial = torch.mean((self.discriminator(output) - 1.0) ** 2)
        self.discriminator.requires_grad_(True)
        reconstruction_gradient = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
        adversarial_gradient = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0]
        scale = self.weight * reconstruction_gradient.norm() / (adversarial_gradient.norm() + 1e-12)
        scale = torch.clamp(scale, max=MAX_ADAPTIVE_SCALE).detach()
        self.last_scale = float(scale)
        return scale * adversarial

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, learning_rate: float) -> float:
        """One LSGAN step: clean patches towards 1, denoised ones towards 0; returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        loss = 0.5 * (torch.mean((self.discriminator(real) - 1.0) ** 2) + torch.mean(self.discriminator(fake.detach()) ** 2))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
