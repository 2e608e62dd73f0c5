"""Method ``mppca`` inside the denoising pipeline (pipeline.py): MP-PCA (local_pca.py) of the
normalised, noise-stabilised series, and SURE's check of it on a central block of the series.

The pipeline does the rest as for every method: the noise model and its stabilisation, the
normalisation and its inverse, the Rician bias correction, the residual check, the fallback to the
input with a warning, and the summary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from DeepDenoiseLib.core.device import configure_threads, select_device
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, report
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.local_pca import local_pca_denoise, patch_corners, patch_sizes
from DeepDenoiseLib.denoise.noise_models import foreground
from DeepDenoiseLib.denoise.self_check import ErrorEstimate, check_error_estimate

#: The training settings MP-PCA uses (where it runs); any other set away from its default is ignored,
#: and the summary's warnings say so.
USED_TRAINING_SETTINGS = ("device", "threads", "seed")

#: SURE's divergence needs the method run twice more; on a series it runs on this central block
#: ``[k, j, i]`` of every frame (the whole series when smaller), not on the whole.
CHECK_BLOCK = (16, 32, 32)


@dataclass
class MppcaOutcome:
    """The denoised series in the normalised domain, where it ran, SURE's estimate, and the figures
    for the summary's ``mppca`` entry (the local noise sigma still in normalised units)."""

    denoised: np.ndarray
    device: torch.device
    error_check: ErrorEstimate
    figures: dict[str, Any] = field(default_factory=dict)


def mppca_series(
    normalized: np.ndarray,
    config: DenoiseConfig,
    noise_sigma: float,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    colour: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> MppcaOutcome:
    """MP-PCA of ``normalized`` ``[t, k, j, i]`` with ``config.series``'s patches, on the device
    ``config.training.device`` picks (Apple's MPS has no float64 eigensolver: the CPU instead), then
    SURE on :data:`CHECK_BLOCK` with the noise sigma the Marchenko–Pastur fit found there (its median
    in tissue), or with ``noise_sigma`` (normalised units) when ``noise.sigma`` fixes it; ``colour``:
    the noise's spatial correlation for SURE's probe, when it is not white (self_check.py)."""
    series = config.series
    device = select_device(config.training.device)
    if device.type == "mps":
        device = torch.device("cpu")
    configure_threads(config.training.threads)

    def run(values: np.ndarray) -> np.ndarray:
        return local_pca_denoise(values, series.patch_radius, series.patch_stride, series.wiener, device, progress, cancel).denoised

    result = local_pca_denoise(normalized, series.patch_radius, series.patch_stride, series.wiener, device, progress, cancel)
    report(progress, ProgressEvent("predicting", 1.0, message="checking the result (SURE on a central block)"))
    tissue = foreground(normalized.mean(axis=0))
    block = central_block(normalized.shape[1:])
    if config.noise.sigma is None:
        # The Marchenko-Pastur fit over all frames measures the noise better than the pipeline's
        # estimate from single frames (which read 10 % high on the tests' series, making SURE negative).
        local = result.sigma[block] if tissue is None else result.sigma[block][tissue[block]]
        noise_sigma = float(np.median(local)) if local.size else noise_sigma
    error_check = check_error_estimate(run, normalized[(slice(None),) + block], noise_sigma, colour=colour)
    shape = tuple(int(n) for n in normalized.shape[1:])
    figures = {
        "patch_radius": series.patch_radius,
        "patch_stride": series.patch_stride,
        "wiener": series.wiener,
        "patches": int(len(patch_corners(shape, patch_sizes(shape, series.patch_radius), series.patch_stride))),
        "mean_kept_components": round(result.mean_kept_components, 2),
        "local_sigma_median": float(np.median(result.sigma[tissue] if tissue is not None else result.sigma)),
    }
    return MppcaOutcome(result.denoised, device, error_check, figures)


def ignored_settings_warning(config: DenoiseConfig) -> list[str]:
    """A warning naming the network settings given that MP-PCA has no use for (none: an empty list)."""
    defaults = DenoiseConfig.for_method("mppca")
    ignored = [
        f"{section}.{name}"
        for section in ("model", "training", "prediction")
        for name, value in dataclasses.asdict(getattr(config, section)).items()
        if value != getattr(getattr(defaults, section), name) and not (section == "training" and name in USED_TRAINING_SETTINGS)
    ]
    if not ignored:
        return []
    return [f"method mppca trains no network, so {', '.join(ignored)} did not apply (they are the network methods' settings)"]


def central_block(shape_kji: tuple[int, ...]) -> tuple[slice, ...]:
    """The slices of the central :data:`CHECK_BLOCK` (the whole axis where shorter)."""
    slices = []
    for length, size in zip(shape_kji, CHECK_BLOCK):
        start = max(0, (int(length) - size) // 2)
        slices.append(slice(start, min(int(length), start + size)))
    return tuple(slices)
