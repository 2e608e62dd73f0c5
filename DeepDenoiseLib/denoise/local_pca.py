"""Local PCA over a whole series with the Marchenko–Pastur noise threshold (MP-PCA, Veraart et al. 2016),
in torch, on the CPU or a GPU.

Every patch of ``(2r+1)^3`` voxels (fewer along an axis shorter than that) is a matrix of voxels by
frames. Its principal components are split into noise and signal as dipy's ``mppca`` splits them: the
noise variance is the mean of the smallest eigenvalues that still fit a Marchenko–Pastur bulk
(dipy's ``_pca_classifier``), and the components below ``(1 + sqrt(frames / voxels))^2`` times that
variance are dropped. Each patch's estimate is added back with the weight ``1 / (1 + kept
components)`` (Manjón et al. 2013), and every voxel is the weighted mean of the patches that hold it.
At ``stride`` 1 every patch position is used, as in dipy (the tests check the agreement); stride 2 uses
every second position along each axis (and always the last), about eight times fewer patches.

``wiener`` adds a second pass: each patch's components come from the first pass's estimate (the
pilot) and are shrunk by ``lambda / (lambda + sigma^2)`` (an empirical Wiener filter), with the
local noise variance the first pass measured.

Memory: the series (float32, frames last), the float32 accumulators (one series and one weight per
voxel) and, with ``wiener``, the pilot; patches are processed in batches of at most
``batch_elements`` float64 values, so no batch copies the whole series.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report

#: Float64 values in one batch of patches (32 MB): on a GPU, eight times more.
CPU_BATCH_ELEMENTS = 4 * 2**20
GPU_BATCH_ELEMENTS = 32 * 2**20


@dataclass
class LocalPcaResult:
    """The denoised series ``[t, k, j, i]``, the local noise sigma the Marchenko–Pastur fit found
    ``[k, j, i]``, and the mean number of components kept per patch."""

    denoised: np.ndarray
    sigma: np.ndarray
    mean_kept_components: float


def patch_sizes(shape_kji: tuple[int, ...], patch_radius: int) -> tuple[int, int, int]:
    """The patch edge along each axis: ``2 * patch_radius + 1``, or the axis's length if shorter."""
    return tuple(min(2 * patch_radius + 1, int(n)) for n in shape_kji)  # type: ignore[return-value]


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def patch_corners(shape_kji: tuple[int, ...], sizes: tuple[int, int, int], stride: int) -> np.ndarray:
    """The flat index of every patch's first voxel, on a grid of ``stride`` (the last position always in)."""
    _, rows, columns = shape_kji
    axes = [_starts(int(n), size, stride) for n, size in zip(shape_kji, sizes)]
    return np.array([(k * rows + j) * columns + i for k, j, i in itertools.product(*axes)], dtype=np.int64)


def _patch_offsets(shape_kji: tuple[int, ...], sizes: tuple[int, int, int]) -> np.ndarray:
    _, rows, columns = shape_kji
    k, j, i = np.meshgrid(*(np.arange(size) for size in sizes), indexing="ij")
    return ((k * rows + j) * columns + i).reshape(-1).astype(np.int64)


def marchenko_pastur_variance(eigenvalues: torch.Tensor, voxels: int) -> torch.Tensor:
    """The noise variance of each row of ascending ``eigenvalues`` (of a patch's covariance over
    ``voxels`` samples), as dipy's ``_pca_classifier``: the mean of the ``c + 1`` smallest, for the
    largest ``c`` whose spread fits the Marchenko–Pastur bulk. Only the ``voxels - 1`` largest count
    (the mean subtraction leaves the others zero)."""
    if eigenvalues.shape[1] > voxels - 1:
        eigenvalues = eigenvalues[:, -(voxels - 1) :]
    count = torch.arange(1, eigenvalues.shape[1] + 1, dtype=eigenvalues.dtype, device=eigenvalues.device)
    variance = torch.cumsum(eigenvalues, dim=1) / count
    spread = eigenvalues - eigenvalues[:, :1] - 4.0 * torch.sqrt(count / voxels) * variance
    index = torch.where(spread <= 0, count - 1, torch.zeros_like(count)).amax(dim=1).long()
    return variance.gather(1, index[:, None])[:, 0]


def _components(centred: torch.Tensor, voxels: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending eigenvalues and eigenvectors of the patches' covariance: frames by frames when there
    are no more frames than voxels, else the voxels' Gram matrix (same non-zero eigenvalues)."""
    if frames <= voxels:
        covariance = centred.transpose(1, 2) @ centred / voxels
    else:
        covariance = centred @ centred.transpose(1, 2) / voxels
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    return eigenvalues.clamp(min=0), vectors


def _project(centred: torch.Tensor, vectors: torch.Tensor, gains: torch.Tensor, frames: int, voxels: int) -> torch.Tensor:
    """``centred`` with each component scaled by its gain (0 drops it, 1 keeps it)."""
    if frames <= voxels:
        return ((centred @ vectors) * gains[:, None, :]) @ vectors.transpose(1, 2)
    return vectors @ (gains[:, :, None] * (vectors.transpose(1, 2) @ centred))


def local_pca_denoise(
    series: np.ndarray,
    patch_radius: int = 2,
    stride: int = 2,
    wiener: bool = False,
    device: Optional[torch.device] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    batch_elements: Optional[int] = None,
) -> LocalPcaResult:
    """MP-PCA of ``series`` ``[t, k, j, i]`` (see the module docstring); the result keeps its shape."""
    device = device or torch.device("cpu")
    array = np.asarray(series, dtype=np.float32)
    frames, shape = array.shape[0], tuple(int(n) for n in array.shape[1:])
    sizes = patch_sizes(shape, patch_radius)
    voxels = int(np.prod(sizes))
    if voxels < 2:
        raise ValueError("local PCA needs patches of at least 2 voxels")
    corners = torch.as_tensor(patch_corners(shape, sizes, stride), device=device)
    offsets = torch.as_tensor(_patch_offsets(shape, sizes), device=device)
    budget = batch_elements or (GPU_BATCH_ELEMENTS if device.type != "cpu" else CPU_BATCH_ELEMENTS)
    batch = max(1, budget // (voxels * frames))
    # One copy of the series, voxels by frames, on the device.
    values = torch.as_tensor(np.ascontiguousarray(array.reshape(frames, -1).T), device=device)
    passes = 2 if wiener else 1
    batches = math.ceil(len(corners) / batch)
    threshold_factor = (1.0 + math.sqrt(frames / voxels)) ** 2
    pilot: Optional[torch.Tensor] = None
    noise_variance = torch.zeros(values.shape[0], dtype=torch.float32, device=device)
    kept_total = 0.0
    for stage in range(passes):
        total = torch.zeros_like(values)
        weights = torch.zeros(values.shape[0], dtype=torch.float32, device=device)
        for number, first in enumerate(range(0, len(corners), batch)):
            check_cancelled(cancel)
            index = (corners[first : first + batch, None] + offsets[None]).reshape(-1)
            patches = values[index].reshape(-1, voxels, frames).double()
            mean = patches.mean(dim=1, keepdim=True)
            centred = patches - mean
            if pilot is None:
                eigenvalues, vectors = _components(centred, voxels, frames)
                variance = marchenko_pastur_variance(eigenvalues, voxels)
                gains = (eigenvalues >= threshold_factor * variance[:, None]).double()
                kept = gains.sum(dim=1)
                kept_total += float(kept.sum())
            else:
                pilot_patches = pilot[index].reshape(-1, voxels, frames).double()
                eigenvalues, vectors = _components(pilot_patches - pilot_patches.mean(dim=1, keepdim=True), voxels, frames)
                variance = noise_variance[index].reshape(-1, voxels).double().mean(dim=1)
                gains = eigenvalues / (eigenvalues + variance[:, None]).clamp(min=1e-30)
                kept = (gains**2).sum(dim=1)
            estimate = _project(centred, vectors, gains, frames, voxels) + mean
            weight = (1.0 / (1.0 + kept)).float()
            total.index_add_(0, index, (estimate.float() * weight[:, None, None]).reshape(-1, frames))
            patch_weights = weight[:, None].expand(-1, voxels).reshape(-1)
            weights.index_add_(0, index, patch_weights)
            if pilot is None:
                noise_variance.index_add_(0, index, (variance.float()[:, None] * weight[:, None]).expand(-1, voxels).reshape(-1))
            done = (stage * batches + number + 1) / (passes * batches)
            message = f"local PCA{' (Wiener pass)' if stage else ''}: patch batch {number + 1}/{batches}"
            report(progress, ProgressEvent("predicting", done, message=message))
        if pilot is None:
            noise_variance /= weights.clamp(min=1e-30)
        pilot = total / weights[:, None].clamp(min=1e-30)
        del total
    assert pilot is not None
    denoised = pilot.T.reshape(frames, *shape).cpu().numpy()
    sigma = torch.sqrt(noise_variance).reshape(shape).cpu().numpy()
    return LocalPcaResult(denoised.astype(np.float32), sigma.astype(np.float32), kept_total / max(len(corners), 1))
