"""The denoising networks: the one place a network is built from a configuration
(:func:`build_network`; a saved model is rebuilt through it too), the slice orientations a 2D network
cuts (:func:`resolve_slice_axes`), and a trained network with what inference needs (:class:`TrainedModel`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from DeepDenoiseLib.core.training_loop import TrainingHistory
from DeepDenoiseLib.denoise.config import PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.denoise.patches import PatchGeometry, fit_patch
from DeepDenoiseLib.denoise.prior import PriorArchitecture
from DeepDenoiseLib.nets.blindspot import BlindSpotNet
from DeepDenoiseLib.nets.conditioned import NoiseConditionedUNet
from DeepDenoiseLib.nets.unet import UNet, plan_pool_z, required_multiple

Network = Union[UNet, BlindSpotNet, NoiseConditionedUNet]


@dataclass
class TrainedModel:
    """A trained network with what inference needs to use it the same way. ``noise_variance`` (in
    the normalised units) is the noise level a network needs to be told: the blind-spot network's
    fusion step, or the noise-conditioned network's input (None for the others)."""

    network: Network
    device: torch.device
    geometry: PatchGeometry
    history: TrainingHistory
    noise_variance: Optional[float] = None
    slice_axes: tuple[int, ...] = (0,)
    #: The training volume's grid, from which :func:`build_network` rebuilds this network exactly
    #: (patch shape, pooling) when a saved model is loaded.
    volume_shape: tuple[int, int, int] = (0, 0, 0)
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)


ISOTROPY_TOLERANCE = 1.2


def resolve_slice_axes(
    config: DenoiseConfig, volume_shape: tuple[int, int, int], spacing_zyx: tuple[float, float, float]
) -> tuple[int, ...]:
    """The array axes a 2D network cuts slices across (3D networks: just the first). ``auto`` uses
    all three only for near-isotropic voxels and when every axis holds a full training patch: a
    thin slab keeps its own slices, since cutting the patch down to its thickness would leave a
    blind-spot network (whose field of view is ~47 pixels at depth 2) training on patches where
    every pixel sees the border, unlike the whole slices it predicts."""
    setting = config.model.slice_axes
    if config.model.dimensions == "3d" or setting == "k":
        return (0,)
    if setting == "kji":
        return (0, 1, 2)
    isotropic = max(spacing_zyx) <= ISOTROPY_TOLERANCE * min(spacing_zyx)
    return (0, 1, 2) if isotropic and min(volume_shape) >= config.training.patch_size else (0,)


def build_network(
    config: DenoiseConfig,
    volume_shape: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    slice_axes: tuple[int, ...] = (0,),
) -> tuple[Network, PatchGeometry]:
    """The network and patch shape for this volume: 3D networks keep thin-slice axes unpooled; 2D
    patches fit the slices of every orientation used. The one place a network is built from a
    configuration (a saved model is rebuilt through it too)."""
    model = config.model
    skips = model.architecture != "dae"
    # the paired methods' UNet learns the correction to its input; an autoencoder has no path for it
    residual = config.method in PAIRED_METHODS and skips
    shown_shape = tuple(volume_shape)
    if len(slice_axes) > 1:
        smallest = min(volume_shape)
        volume_shape = (smallest, smallest, smallest)
    if config.method == "r2r":
        prior_shape = config.model.init != "random"
        architecture = PriorArchitecture() if prior_shape else PriorArchitecture(model.context_slices, model.depth, model.base_channels)
        spatial = fit_patch(
            config.training.patch_size, volume_shape, required_multiple(2, architecture.depth), 2, architecture.depth, shown_shape
        )
        return architecture.build(), PatchGeometry(spatial=spatial, context_slices=architecture.context_slices)
    if config.method == "blindspot":
        spatial = fit_patch(config.training.patch_size, volume_shape, required_multiple(2, model.depth), 2, model.depth, shown_shape)
        geometry = PatchGeometry(spatial=spatial, context_slices=model.context_slices)
        out_channels = 2 if model.noise_fusion else 1
        return BlindSpotNet(geometry.channels, out_channels, model.depth, model.base_channels), geometry
    if model.dimensions == "3d":
        requested_depth = min(config.training.patch_size, volume_shape[0])
        pool_z = plan_pool_z(spacing_zyx, model.depth, requested_depth - requested_depth % 2)
        multiple = required_multiple(3, model.depth, pool_z)
        spatial = fit_patch(config.training.patch_size, volume_shape, multiple, 3, model.depth, shown_shape)
        pool_z = plan_pool_z(spacing_zyx, model.depth, spatial[0])
        geometry = PatchGeometry(spatial=spatial, context_slices=0)
        network = UNet(
            3, 1, 1, model.depth, model.base_channels, model.norm, model.blurpool, model.top_skip, pool_z, skips=skips, residual=residual
        )
    else:
        multiple = required_multiple(2, model.depth)
        spatial = fit_patch(config.training.patch_size, volume_shape, multiple, 2, model.depth, shown_shape)
        geometry = PatchGeometry(spatial=spatial, context_slices=model.context_slices)
        network = UNet(
            2,
            geometry.channels,
            1,
            model.depth,
            model.base_channels,
            model.norm,
            model.blurpool,
            model.top_skip,
            skips=skips,
            residual=residual,
        )
    return network, geometry
