"""Applying a trained network to a whole volume of any size.

2D networks denoise whole slices, each with its neighbouring slices as context channels (medical
slices fit in memory whole, so there are no in-plane seams at all). 3D networks run over overlapping
tiles blended with smooth weights. Both can average the 8 in-plane flips/rotations (test-time
augmentation), which also gives a per-voxel spread usable as an uncertainty map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.core.tiling import make_tta_fn, predict_tiled, tta_transforms
from DeepDenoiseLib.denoise.config import PredictionConfig
from DeepDenoiseLib.denoise.networks import TrainedModel
from DeepDenoiseLib.denoise.patches import context_stack, oriented, restored
from DeepDenoiseLib.nets.blindspot import BlindSpotNet, posterior
from DeepDenoiseLib.nets.conditioned import NoiseConditionedUNet
from DeepDenoiseLib.nets.unet import UNet, required_multiple


@dataclass
class Prediction:
    """The denoised volume, and the spread across test-time augmentations when TTA ran."""

    denoised: np.ndarray
    spread: Optional[np.ndarray] = None


def _network_fn(model: TrainedModel, multiple: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy-in, numpy-out view of the network that pads each batch to the sizes pooling needs."""
    network = model.network

    # A blind-spot network must see zeros beyond the border: mirrored padding would show it the
    # centre voxel's own value through the opposite half-plane.
    pad_mode = "constant" if isinstance(network, BlindSpotNet) else None

    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        spatial = batch.shape[2:]
        pad = []
        for size, step in zip(reversed(spatial), reversed(multiple)):
            pad += [0, (-size) % step]
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(model.device)
        if any(pad):
            mode = pad_mode or ("reflect" if all(p < s for p, s in zip(pad[1::2], reversed(spatial))) else "replicate")
            tensor = F.pad(tensor, pad, mode=mode)
        if isinstance(network, NoiseConditionedUNet):
            assert model.noise_variance is not None, "a noise-conditioned network needs the noise level"
            output = network(tensor, model.noise_variance**0.5)
        else:
            output = network(tensor)
            if model.noise_variance is not None:
                output = posterior(output, tensor[:, 0], model.noise_variance)[0][:, None]
        crop = (slice(None), slice(0, 1)) + tuple(slice(0, s) for s in spatial)
        return output[crop].float().cpu().numpy()

    return run


def predict_volume(
    model: TrainedModel,
    volume: np.ndarray,
    config: PredictionConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Prediction:
    """Denoises a normalised ``[k, j, i]`` volume with a trained model."""
    model.network.eval()
    if model.network.spatial_dims == 3:
        return _predict_tiles(model, volume, config, progress, cancel)
    predictions = []
    for index, axis in enumerate(model.slice_axes):
        stage_progress = sub_progress(progress, index, len(model.slice_axes))
        prediction = _predict_slices(model, oriented(volume, axis), config, stage_progress, cancel)
        spread = None if prediction.spread is None else restored(prediction.spread, axis)
        predictions.append((restored(prediction.denoised, axis), spread))
    if len(predictions) == 1:
        return Prediction(*predictions[0])
    denoised = np.asarray(np.mean([p[0] for p in predictions], axis=0, dtype=np.float64)).astype(np.float32)
    spread = None
    if config.tta:
        # pooled spread: the average within-orientation variance plus the between-orientation variance
        within = np.mean([deviation**2 for _, deviation in predictions if deviation is not None], axis=0, dtype=np.float64)
        between = np.var([p[0] for p in predictions], axis=0, dtype=np.float64)
        spread = np.sqrt(within + between).astype(np.float32)
    return Prediction(denoised=denoised, spread=spread)


def sub_progress(progress: Optional[ProgressCallback], index: int, count: int) -> Optional[ProgressCallback]:
    """Maps a sub-task's 0..1 onto its share of the stage."""
    if progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        progress(dataclasses.replace(event, fraction=(index + event.fraction) / count))

    return forward


def _predict_slices(
    model: TrainedModel,
    volume: np.ndarray,
    config: PredictionConfig,
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
) -> Prediction:
    run = _network_fn(model, required_multiple(2, model.network.depth))
    context = model.geometry.context_slices
    depth = volume.shape[0]
    denoised = np.empty(volume.shape, dtype=np.float32)
    spread = np.empty(volume.shape, dtype=np.float32) if config.tta else None
    batch_size = max(1, config.batch_size)
    for start in range(0, depth, batch_size):
        check_cancelled(cancel)
        stop = min(depth, start + batch_size)
        batch = np.stack([context_stack(volume, z, context) for z in range(start, stop)])
        if config.tta:
            mean, std = _slice_tta(run, batch)
            denoised[start:stop] = mean[:, 0]
            spread[start:stop] = std[:, 0]  # type: ignore[index]
        else:
            denoised[start:stop] = run(batch)[:, 0]
        report(progress, ProgressEvent("predicting", stop / depth, message=f"slice {stop}/{depth}"))
    return Prediction(denoised=denoised, spread=spread)


def _slice_tta(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread over the in-plane flips/rotations of a ``(B, C, H, W)`` context batch (the
    network returns one channel, so the tiler's shape-preserving TTA does not apply here)."""
    square = batch.shape[-1] == batch.shape[-2]
    transforms = tta_transforms(batch.ndim - 1, (-2, -1), square=square)
    predictions = np.stack([t.invert(run(np.ascontiguousarray(t.apply(batch)))) for t in transforms])
    return predictions.mean(axis=0), predictions.std(axis=0)


def _predict_tiles(
    model: TrainedModel,
    volume: np.ndarray,
    config: PredictionConfig,
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
) -> Prediction:
    network = model.network
    assert isinstance(network, UNet), "3D networks are UNets"
    multiple = required_multiple(3, network.depth, [f[0] == 2 for f in network.level_factors])
    run = _network_fn(model, multiple)

    def run_tiles(tiles: np.ndarray) -> np.ndarray:
        return run(tiles[:, None])[:, 0]

    tile_shape = tuple(min(config.tile_size, s) for s in volume.shape)
    overlap = tuple(min(config.tile_overlap, t // 2) for t in tile_shape)
    if not config.tta:
        denoised = predict_tiled(volume, run_tiles, tile_shape, overlap, config.batch_size, progress, cancel)
        return Prediction(denoised=denoised.astype(np.float32, copy=False))
    tta_fn = make_tta_fn(run_tiles, inplane_axes=(-2, -1), return_std=True)
    mean_and_spread = predict_tiled(volume, tta_fn, tile_shape, overlap, config.batch_size, progress, cancel)
    return Prediction(denoised=mean_and_spread[0], spread=mean_and_spread[1])
