"""Applying a trained super-resolution model patch by patch: to the spline-upsampled volume (or a
prior's estimate), add the residual the network predicts (regression) or the mean of ``samples``
diffusion samples, whose per-voxel standard deviation is the uncertainty.

Patches overlap and are blended with :func:`~DeepDenoiseLib.core.tiling.predict_tiled`'s raised-cosine
weights, so a volume of any size is sampled without seams; the blended spread is the weighted mean of
the patches' spreads (an approximation where patches overlap). All samples of one patch run as one
batch through the network.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np
import torch

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.core.tiling import predict_tiled, tile_starts
from DeepDenoiseLib.superres.config import SamplingConfig
from DeepDenoiseLib.superres.diffusion_sampler import sample
from DeepDenoiseLib.superres.training import StageModel


def apply_stage(
    model: StageModel,
    condition: np.ndarray,
    axis: int,
    sampling: SamplingConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    label: str = "",
    seed_offset: int = 0,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The fine volume the model makes of ``condition`` (normalised, on the fine grid: the coarse
    volume spline-upsampled ``model.factor`` times along array ``axis``, or a prior's estimate), and,
    for a diffusion model, the spread of its samples (``None`` for a regressor), both float32."""
    condition = np.moveaxis(np.asarray(condition, dtype=np.float32), axis, 0)
    along_multiple, across_multiple = model.network.multiple
    tile = (
        max(along_multiple, sampling.patch_size - sampling.patch_size % along_multiple),
        max(across_multiple, sampling.patch_size - sampling.patch_size % across_multiple),
        max(across_multiple, sampling.patch_size - sampling.patch_size % across_multiple),
    )
    # Along axis 0 tiles must start on block boundaries: the overlap is a whole number of blocks.
    block_overlap = sampling.patch_overlap - sampling.patch_overlap % model.factor
    overlap = (block_overlap, sampling.patch_overlap, sampling.patch_overlap)
    padded, crop = _pad_short_axes(condition, tile, (along_multiple, across_multiple, across_multiple))
    tiles = math.prod(len(tile_starts(n, min(t, n), o)) for n, t, o in zip(padded.shape, tile, overlap))
    tracker = _Tracker(progress, tiles, label)
    if model.method == "ddpm":
        predict = _sampling_fn(model, sampling, tracker, cancel, seed_offset)
    else:
        predict = _regression_fn(model, tracker)
    blended = predict_tiled(padded, predict, tile, overlap, batch_size=1, cancel=cancel)
    check_cancelled(cancel)
    blended = blended[(slice(None),) * (blended.ndim - 3) + crop]
    if model.method == "ddpm":
        residual, spread = blended[0], blended[1]
    else:
        residual, spread = blended, None
    fine = condition + residual * np.float32(model.scale)
    fine = np.ascontiguousarray(np.moveaxis(fine, 0, axis), dtype=np.float32)
    if spread is not None:
        spread = np.ascontiguousarray(np.moveaxis(spread * np.float32(model.scale), 0, axis), dtype=np.float32)
    return fine, spread


class _Tracker:
    """Reports sampling progress across patches and steps, with an estimate of the time left."""

    def __init__(self, progress: Optional[ProgressCallback], tiles: int, label: str) -> None:
        self.progress = progress
        self.tiles = tiles
        self.label = label
        self.done_tiles = 0
        self.start = time.perf_counter()

    def update(self, within_tile: float) -> None:
        fraction = min((self.done_tiles + within_tile) / self.tiles, 1.0)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else None
        message = f"{self.label}patch {min(self.done_tiles + 1, self.tiles)}/{self.tiles}"
        report(self.progress, ProgressEvent("predicting", fraction, message=message, eta_seconds=eta))

    def tile_done(self) -> None:
        self.done_tiles += 1
        self.update(0.0)


def _sampling_fn(
    model: StageModel,
    sampling: SamplingConfig,
    tracker: _Tracker,
    cancel: Optional[CancelToken],
    seed_offset: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """A ``predict_fn`` drawing ``samples`` residuals per patch: returns ``(B, 2, *patch)``, mean then
    standard deviation. One generator, consumed patch after patch, makes a seed reproducible."""
    generator = torch.Generator().manual_seed(sampling.seed + seed_offset)
    schedule = model.schedule
    assert schedule is not None

    def predict(batch: np.ndarray) -> np.ndarray:
        results = []
        for patch in batch:
            condition = torch.from_numpy(np.ascontiguousarray(patch)).to(model.device)
            condition = condition.expand(sampling.samples, 1, *patch.shape)

            def denoise(noisy: torch.Tensor, steps: torch.Tensor, condition: torch.Tensor = condition) -> torch.Tensor:
                return model.network(condition, noisy, steps)

            drawn = sample(
                denoise,
                (sampling.samples, 1) + patch.shape,
                schedule,
                sampling.steps,
                sampling.sampler,
                model.prediction,
                sampling.eta,
                generator,
                model.device,
                cancel,
                on_step=lambda done, total: tracker.update(done / total),
            )[:, 0].double()
            spread = drawn.std(dim=0, unbiased=False) if sampling.samples > 1 else torch.zeros_like(drawn[0])
            results.append(torch.stack([drawn.mean(dim=0), spread]).float().cpu().numpy())
            tracker.tile_done()
        return np.stack(results)

    return predict


def _regression_fn(model: StageModel, tracker: _Tracker) -> Callable[[np.ndarray], np.ndarray]:
    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            output = model.network(torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(model.device))
        for _ in range(batch.shape[0]):
            tracker.tile_done()
        return output[:, 0].float().cpu().numpy()

    return predict


def _pad_short_axes(array: np.ndarray, tile: tuple[int, ...], multiple: tuple[int, ...]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """``array`` mirrored at the end of each axis shorter than a patch up to a multiple of what the
    network needs, and the slices that cut the original back out."""
    padding = []
    for length, size, step in zip(array.shape, tile, multiple):
        short = length < size and length % step
        padding.append((0, step - length % step if short else 0))
    crop = tuple(slice(0, length) for length in array.shape)
    if not any(after for _, after in padding):
        return array, crop
    return np.pad(array, padding, mode="symmetric"), crop
