"""Super-resolution end to end: a thick-slice or low-resolution volume becomes a volume ``factor`` times
finer along one axis, on a grid with the same field of view, with a per-voxel uncertainty beside it.

A conditional diffusion model (or, as a baseline, the same network as an L1 regressor) learns what a
cubic spline misses when it upsamples. By default the diffusion model refines a regression prior
(predict and refine, after Whang et al. 2022): the same UNet trained with L1 for part of the budget
predicts the mean detail, and the diffusion model, conditioned on that estimate, samples what is left,
so that the mean of a few samples keeps the prior's accuracy and their spread is the uncertainty.
With ``diffusion.prior_share`` 0 the diffusion model is conditioned on the spline alone.

The models learn either from high-resolution volumes the user gives (``supervised``: each is
degraded on the fly along the axis by the factor), or from the input itself
(``self-supervised``, after SMORE, Zhao et al. 2020): the input's finer in-plane axes are degraded to
its through-plane resolution and restored, then the network is applied through-plane. For that the
input is first spline-upsampled through-plane, so that training and application patches lie on the
same grid; the one difference left is that the third axis is blurred in training and sharp when
applied.

:func:`superres_volume` works on a :class:`Volume` in memory; :func:`superres_file` adds reading and
atomic writing, and is what ``deepdenoise superres`` runs.

>>> result = superres_volume(read_volume("thick.nii.gz"), SuperResConfig(mode="self-supervised"))
>>> write_volume(result.volume, "fine.nii.gz"); write_volume(result.uncertainty, "spread.nii.gz")
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from DeepDenoiseLib.core.device import fallback_warnings
from DeepDenoiseLib.core.normalization import PercentileNormalizer
from DeepDenoiseLib.core.output_paths import check_output_paths
from DeepDenoiseLib.core.progress import CancelToken, ProgressCallback, ProgressEvent, check_cancelled, report
from DeepDenoiseLib.core.run_files import load_volume, write_outputs_and_finish
from DeepDenoiseLib.core.training_loop import TrainingLimits
from DeepDenoiseLib.core.validation import (
    SUPERRES_LABEL_MAP_ADVICE,
    InputError,
    check_result,
    check_superres_output_size,
    check_volume_object,
    check_voxel_count,
)
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_header, read_volume
from DeepDenoiseLib.superres.config import SuperResConfig, check_cascade, check_uncertainty_request
from DeepDenoiseLib.superres.grid import AXIS_IJK, MIN_COARSE_VOXELS, array_axis, coarsest_axis, on_fine_grid, upsample_spline
from DeepDenoiseLib.superres.inference import apply_stage
from DeepDenoiseLib.superres.training import StageModel, TrainingPair, make_pair, train_stage

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Spacing ratios further than this from what the factor implies get a warning.
SPACING_TOLERANCE = 0.25


@dataclass
class SuperResResult:
    """The volume on the fine grid, the per-voxel spread of the diffusion samples on the same grid
    (``None`` for the regression method), and the run's closing figures."""

    volume: Volume
    uncertainty: Optional[Volume]
    summary: dict[str, Any] = field(default_factory=dict)


def stage_factors(factor: int, cascade: bool) -> list[int]:
    """The factor of each stage: one stage, or x2 stages for a cascade (4 -> [2, 2])."""
    if not cascade:
        return [factor]
    check_cascade(factor, cascade)
    return [2] * int(round(math.log2(factor)))


def superres_volume(
    volume: Volume,
    config: Optional[SuperResConfig] = None,
    training_volumes: Optional[Sequence[Volume]] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> SuperResResult:
    """``volume`` made ``config.factor`` times finer along ``config.axis``; see the module docstring.

    ``training_volumes`` (high-resolution, for the supervised mode) are degraded along the same voxel
    axis. Refuses bad input with :class:`InputError`; honours ``cancel``; reports progress.
    """
    config = config or SuperResConfig()
    start = time.perf_counter()
    check = check_volume_object(volume, label_map_advice=SUPERRES_LABEL_MAP_ADVICE)
    axis = coarsest_axis(volume.spacing) if config.axis == "auto" else config.axis
    along = array_axis(axis)
    warnings = list(volume.metadata.get("warnings", [])) + list(check.warnings)
    _check_sizes(volume.array.shape, config, along, axis)
    training_arrays = _training_arrays(volume, config, training_volumes, axis, warnings)
    for warning in warnings:
        logger.warning(warning)
    summary: dict[str, Any] = {
        "method": config.method,
        "mode": config.mode,
        "factor": config.factor,
        "axis": axis,
        "input_shape_kji": list(volume.array.shape),
        "warnings": warnings,
    }
    array = np.asarray(volume.array, dtype=np.float32)
    if check.is_constant:
        fine = upsample_spline(array, config.factor, along)
        summary.update(seconds=round(time.perf_counter() - start, 2), training_steps=0)
        uncertainty = on_fine_grid(volume, np.zeros_like(fine), config.factor, axis) if config.method == "ddpm" else None
        return SuperResResult(on_fine_grid(volume, fine, config.factor, axis), uncertainty, summary)

    normalizer = PercentileNormalizer.fit(array, config.normalization.low_percentile, config.normalization.high_percentile)
    current = normalizer.forward(array)
    training_arrays = [_normalized(t, config) for t in training_arrays]
    factors = stage_factors(config.factor, config.cascade)
    budget = config.training.budget_seconds
    stage_budget = budget / len(factors) if budget else None
    spread: Optional[np.ndarray] = None
    stages: list[dict[str, Any]] = []
    for index, factor in enumerate(factors):
        label = f"stage {index + 1}/{len(factors)}: " if len(factors) > 1 else ""
        coarseness = math.prod(factors[index:])
        pairs = _stage_pairs(current, training_arrays, config, factor, coarseness, along)
        training_start = time.perf_counter()
        models = _train_models(pairs, factor, config, stage_budget, progress, cancel, label, index)
        del pairs
        training_seconds = time.perf_counter() - training_start
        check_cancelled(cancel)
        sampling_start = time.perf_counter()
        current = upsample_spline(current, factor, along)
        stage_spread = None
        for model in models:
            current, stage_spread = apply_stage(model, current, along, config.sampling, progress, cancel, label, seed_offset=index)
        if stage_spread is not None:
            if spread is not None:
                carried = np.maximum(upsample_spline(spread, factor, along), 0.0)
                stage_spread = np.sqrt(stage_spread**2 + carried**2).astype(np.float32)
            spread = stage_spread
        stages.append(
            {
                "factor": factor,
                "models": [model.method for model in models],
                "training_steps": [model.history.steps for model in models],
                "training_seconds": round(training_seconds, 2),
                "final_loss": [_final_loss(model) for model in models],
                "sampling_seconds": round(time.perf_counter() - sampling_start, 2),
                "residual_scale": [model.scale for model in models],
            }
        )
        device = str(models[-1].device)
    fine = normalizer.inverse(current)
    check_result(array, fine, "the super-resolved volume")
    warnings += fallback_warnings(config.training.device, device)
    uncertainty = None
    if spread is not None:
        uncertainty = on_fine_grid(volume, (spread * np.float32(normalizer.scale)).astype(np.float32), config.factor, axis)
    result = on_fine_grid(volume, fine, config.factor, axis)
    summary.update(
        seconds=round(time.perf_counter() - start, 2),
        training_seconds=round(sum(s["training_seconds"] for s in stages), 2),
        training_steps=sum(sum(s["training_steps"]) for s in stages),
        prediction_seconds=round(sum(s["sampling_seconds"] for s in stages), 2),
        stages=stages,
        device=device,
        output_shape_kji=list(fine.shape),
        output_spacing=list(result.spacing),
    )
    return SuperResResult(result, uncertainty, summary)


def superres_file(
    input_path: PathLike,
    output_path: PathLike,
    config: Optional[SuperResConfig] = None,
    training_paths: Optional[Sequence[PathLike]] = None,
    uncertainty_path: Optional[PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    force: bool = False,
) -> dict[str, Any]:
    """Reads the input (and training volumes), runs :func:`superres_volume`, writes the result on the
    fine grid (and the uncertainty); returns the summary.

    Before anything is read, the output paths are checked (core/output_paths.py; an output equal to an
    input needs ``force``) and the sizes of the input and of the result are read from the headers.
    The outputs are written all or none, and nothing is left behind on failure or interrupt."""
    config = config or SuperResConfig()
    check_uncertainty_request(uncertainty_path is not None, config.method, "choose --method ddpm, or leave out --uncertainty")
    inputs = [input_path, *(training_paths or [])]
    check_output_paths({"output": output_path, "uncertainty (--uncertainty)": uncertainty_path}, inputs=inputs, force=force)
    shape = read_header(input_path)
    if len(shape) == 4:
        raise InputError(
            f"'{Path(input_path).name}' is a 4D series of {shape[0]} volumes; super-resolution works on one 3D "
            "volume: extract the frame to refine first (e.g. with Slicer's Sequences module)"
        )
    check_voxel_count(shape, what=f"'{Path(input_path).name}'")
    check_superres_output_size(shape, config.factor)
    for path in training_paths or []:
        check_voxel_count(read_header(path), what=f"'{Path(path).name}'")
    volume = load_volume(input_path, progress, allow_4d=False, outputs=(output_path, uncertainty_path))
    training = [read_volume(path) for path in training_paths or []]
    result = superres_volume(volume, config, training or None, progress, cancel)
    check_cancelled(cancel)
    outputs: list[tuple[Volume, PathLike]] = [(result.volume, output_path)]
    if uncertainty_path is not None and result.uncertainty is not None:
        outputs.append((result.uncertainty, uncertainty_path))
    return write_outputs_and_finish(outputs, result.summary, progress)


def _check_sizes(shape: Sequence[int], config: SuperResConfig, along: int, axis: str) -> None:
    if shape[along] < MIN_COARSE_VOXELS:
        raise InputError(f"the volume has {shape[along]} voxels along {axis}; super-resolution along it needs at least {MIN_COARSE_VOXELS}")
    across_needed = 2**config.model.depth
    if config.mode == "self-supervised":
        across_needed = max(across_needed, MIN_COARSE_VOXELS * config.factor)
    for other in range(3):
        if other != along and shape[other] < across_needed:
            raise InputError(
                f"the volume is too small: {shape[other]} voxels along {_axis_name(other)}, where "
                f"{config.mode} super-resolution x{config.factor} needs at least {across_needed}"
            )
    check_superres_output_size(shape, config.factor)


def _training_arrays(
    volume: Volume,
    config: SuperResConfig,
    training_volumes: Optional[Sequence[Volume]],
    axis: str,
    warnings: list[str],
) -> list[np.ndarray]:
    """The supervised mode's checked high-resolution arrays (none in the self-supervised mode)."""
    index = AXIS_IJK[axis]
    along = array_axis(axis)
    if config.mode == "self-supervised":
        if training_volumes:
            raise InputError("the self-supervised mode learns from the input alone; leave out the training volumes")
        inplane = [volume.spacing[i] for i in range(3) if i != index]
        _warn_spacing(warnings, "the input's in-plane voxels", max(inplane), volume.spacing[index] / config.factor)
        return []
    if not training_volumes:
        raise InputError(
            "supervised super-resolution needs high-resolution training volumes (--train-on); without any, use the self-supervised mode"
        )
    arrays = []
    for number, training in enumerate(training_volumes, start=1):
        check = check_volume_object(training, label_map_advice=SUPERRES_LABEL_MAP_ADVICE)
        if check.is_constant:
            raise InputError(f"training volume {number} is constant; it holds no detail to learn from")
        needed = MIN_COARSE_VOXELS * config.factor
        if training.array.shape[along] < needed:
            raise InputError(
                f"training volume {number} has {training.array.shape[along]} voxels along {axis}; "
                f"x{config.factor} training pairs need at least {needed}"
            )
        _warn_spacing(
            warnings,
            f"training volume {number}'s voxels along {axis}",
            training.spacing[index],
            volume.spacing[index] / config.factor,
        )
        arrays.append(np.asarray(training.array, dtype=np.float32))
    return arrays


def _warn_spacing(warnings: list[str], what: str, actual_mm: float, expected_mm: float) -> None:
    if abs(actual_mm / expected_mm - 1.0) > SPACING_TOLERANCE:
        warnings.append(
            f"{what} are {actual_mm:.3g} mm, where the factor implies about {expected_mm:.3g} mm: "
            "the network learns detail at another scale than it is asked to restore"
        )


def _normalized(array: np.ndarray, config: SuperResConfig) -> np.ndarray:
    normalizer = PercentileNormalizer.fit(array, config.normalization.low_percentile, config.normalization.high_percentile)
    return normalizer.forward(array)


def _stage_pairs(
    current: np.ndarray,
    training_arrays: list[np.ndarray],
    config: SuperResConfig,
    factor: int,
    coarseness: int,
    along: int,
) -> list[TrainingPair]:
    """The training pairs of the stage taking ``coarseness`` to ``coarseness / factor``: from the
    training volumes along the axis, or (self-supervised) from the input upsampled through-plane to the
    stage's output grid, degraded along each other axis in turn."""
    if training_arrays:
        return [make_pair(array, factor, coarseness, along, config.downsampling) for array in training_arrays]
    grid = upsample_spline(current, factor, along)
    return [make_pair(grid, factor, coarseness, other, config.downsampling) for other in range(3) if other != along]


def _train_models(
    pairs: list[TrainingPair],
    factor: int,
    config: SuperResConfig,
    budget_seconds: Optional[float],
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
    label: str,
    stage_index: int,
) -> list[StageModel]:
    """The models of one stage, applied in turn: the regressor; the diffusion model; or (predict and
    refine) the regression prior, then the diffusion model trained on pairs whose condition is the
    prior's estimate. Each gets its share of the budget, of the step limit and of the floor of steps."""
    share = config.diffusion.prior_share
    if config.method == "regression":
        plan = [("regression", 1.0, "")]
    elif share > 0:
        plan = [("regression", share, "prior: "), ("ddpm", 1.0 - share, "diffusion: ")]
    else:
        plan = [("ddpm", 1.0, "")]
    models: list[StageModel] = []
    for part, (method, part_share, part_label) in enumerate(plan):
        if models:
            report(progress, ProgressEvent("training", 0.0, message=f"{label}applying the prior to the training pairs"))
            prior = models[-1]
            pairs = [TrainingPair(apply_stage(prior, pair.condition, 0, config.sampling, None, cancel)[0], pair.target) for pair in pairs]
        limits = TrainingLimits(
            max_steps=max(1, int(round(config.training.max_steps * part_share))),
            budget_seconds=budget_seconds * part_share if budget_seconds else None,
            min_steps=int(round(config.training.min_steps * part_share)),
        )
        seed = 2 * stage_index + part
        models.append(train_stage(pairs, factor, replace(config, method=method), limits, progress, cancel, label + part_label, seed))
    return models


def _final_loss(model: StageModel) -> Optional[float]:
    return float(np.mean(model.history.step_losses[-20:])) if model.history.step_losses else None


def _axis_name(array_index: int) -> str:
    return {0: "z", 1: "y", 2: "x"}[array_index]
