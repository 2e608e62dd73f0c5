"""Every setting of a super-resolution run, as typed dataclasses validated on creation (see
:class:`SuperResConfig`); like the denoising configuration it round-trips through JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from DeepDenoiseLib.core.normalization import NormalizationConfig
from DeepDenoiseLib.core.settings import DEVICES, build_section, check_field_types, choice, in_range, load_file, parse_json

SUPERRES_MODES = ("supervised", "self-supervised")
SUPERRES_METHODS = ("ddpm", "regression")
SUPERRES_AXES = ("x", "y", "z", "auto")
DOWNSAMPLINGS = ("spline", "area")
SAMPLERS = ("ddim", "ddpm")
PREDICTIONS = ("v", "eps", "x0")


@dataclass
class SuperResModelConfig:
    """The conditional 3D UNet (residual blocks, GroupNorm, time embedding): ``depth`` poolings,
    ``base_channels`` at full resolution, optional self-attention at the coarsest level."""

    depth: int = 2
    base_channels: int = 16
    attention: bool = False

    def validate(self) -> None:
        in_range("model.depth", self.depth, 1, 4)
        in_range("model.base_channels", self.base_channels, 8, 256)


@dataclass
class DiffusionConfig:
    """The forward process: Nichol & Dhariwal's cosine schedule over ``timesteps`` steps (offset
    ``cosine_offset``, betas clipped at ``max_beta``); the network predicts ``v``, ``eps`` or ``x0``;
    ``variance_scale`` multiplies the variance of every noise draw of the sampler (starting noise and
    each step's): a sampling temperature, 1 for the textbook sampler; 0.3, as in the design this
    follows, gave the more accurate mean of 4 samples in the benchmark (bench/benchmark_superres.py).
    ``prior_share`` of the training budget goes to a regression prior (the same UNet, L1) whose
    estimate replaces the spline as the diffusion model's condition, so the diffusion model only
    samples what the prior cannot predict (predict-and-refine); 0 conditions it on the spline alone."""

    timesteps: int = 1000
    cosine_offset: float = 0.008
    max_beta: float = 0.999
    prediction: str = "v"
    variance_scale: float = 0.3
    prior_share: float = 0.5

    def validate(self) -> None:
        in_range("diffusion.timesteps", self.timesteps, 10, 100000)
        in_range("diffusion.cosine_offset", self.cosine_offset, 0.0, 1.0)
        in_range("diffusion.max_beta", self.max_beta, 0.5, 0.9999)
        choice("diffusion.prediction", self.prediction, PREDICTIONS)
        in_range("diffusion.variance_scale", self.variance_scale, 0.0, 1.0)
        in_range("diffusion.prior_share", self.prior_share, 0.0, 0.9)


@dataclass
class SuperResTrainingConfig:
    """Training on pairs made on the fly: patches of ``patch_size`` voxels of the fine grid (along
    the upsampled axis, then across it), ``batch_size`` per step, Adam with a cosine decay; stops at
    ``max_steps`` or ``budget_seconds``, whichever comes first (per cascade stage, the budget is
    shared between the stages), but a budget that runs out before ``min_steps`` steps is extended to
    them (0, the default: stop at the budget; the prior and the diffusion model share it as they
    share the budget)."""

    patch_size: tuple[int, int] = (32, 32)
    batch_size: int = 4
    learning_rate: float = 2e-3
    max_steps: int = 20000
    budget_seconds: Optional[float] = 300.0
    min_steps: int = 0
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None

    def __post_init__(self) -> None:
        if isinstance(self.patch_size, list):  # JSON has no tuples
            self.patch_size = tuple(self.patch_size)  # type: ignore[assignment]

    def validate(self) -> None:
        if len(self.patch_size) != 2:
            raise ValueError(f"training.patch_size needs two sizes (along, across); got {self.patch_size}")
        for size in self.patch_size:
            in_range("training.patch_size", size, 8, 256)
        in_range("training.batch_size", self.batch_size, 1, 256)
        in_range("training.learning_rate", self.learning_rate, 1e-6, 1.0)
        in_range("training.max_steps", self.max_steps, 1, 10_000_000)
        if self.budget_seconds is not None:
            in_range("training.budget_seconds", self.budget_seconds, 1.0, 7 * 24 * 3600.0)
        in_range("training.min_steps", self.min_steps, 0, 10_000_000)
        choice("training.device", self.device, DEVICES)
        if self.threads is not None:
            in_range("training.threads", self.threads, 1, 1024)


@dataclass
class SamplingConfig:
    """Patch-wise sampling on the fine grid: ``sampler`` (DDIM, deterministic for ``eta`` 0, or DDPM
    ancestral) over ``steps`` respaced steps; ``samples`` draws per patch whose mean is the result and
    whose per-voxel standard deviation is the uncertainty; patches of ``patch_size`` voxels overlap by
    ``patch_overlap`` and are blended with smooth weights."""

    sampler: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    samples: int = 4
    patch_size: int = 48
    patch_overlap: int = 8
    seed: int = 0

    def validate(self) -> None:
        choice("sampling.sampler", self.sampler, SAMPLERS)
        in_range("sampling.steps", self.steps, 1, 1000)
        in_range("sampling.eta", self.eta, 0.0, 1.0)
        in_range("sampling.samples", self.samples, 1, 64)
        in_range("sampling.patch_size", self.patch_size, 16, 512)
        in_range("sampling.patch_overlap", self.patch_overlap, 0, self.patch_size // 2)


@dataclass
class SuperResConfig:
    """One super-resolution run: ``factor`` times finer along ``axis`` (the volume's voxel axis i=x,
    j=y, k=z; ``auto`` takes the coarsest). ``mode`` ``supervised`` learns from high-resolution
    training volumes degraded on the fly; ``self-supervised`` learns from the input's own finer
    in-plane axes. ``method`` ``ddpm`` samples a conditional diffusion model; ``regression`` trains
    the same network as a plain L1 regressor (a baseline, with no uncertainty). ``downsampling``
    is how pairs are degraded: ``spline`` samples a cubic spline at the coarse voxel centres,
    ``area`` averages each block of ``factor`` voxels (a thick slice's box profile). ``cascade``
    splits a power-of-two factor into x2 stages, each its own model."""

    factor: int = 4
    axis: str = "z"
    mode: str = "supervised"
    method: str = "ddpm"
    downsampling: str = "spline"
    cascade: bool = False
    model: SuperResModelConfig = field(default_factory=SuperResModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    training: SuperResTrainingConfig = field(default_factory=SuperResTrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_field_types(self)
        in_range("factor", self.factor, 2, 16)
        choice("axis", self.axis, SUPERRES_AXES)
        choice("mode", self.mode, SUPERRES_MODES)
        choice("method", self.method, SUPERRES_METHODS)
        choice("downsampling", self.downsampling, DOWNSAMPLINGS)
        if self.cascade and self.factor & (self.factor - 1):
            raise ValueError(f"a cascade splits the factor into x2 stages, so it must be a power of two; got {self.factor}")
        self.model.validate()
        self.diffusion.validate()
        self.training.validate()
        self.sampling.validate()
        self.normalization.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuperResConfig:
        return build_section(cls, data, "")

    @classmethod
    def from_json(cls, text: str) -> SuperResConfig:
        return cls.from_dict(parse_json(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> SuperResConfig:
        return load_file(cls, path)
