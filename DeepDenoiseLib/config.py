"""Every setting of a denoising run, as typed dataclasses: the one place where defaults live.

A :class:`DenoiseConfig` is validated on creation, round-trips through JSON (unknown keys are refused,
so a typo never passes silently), and is what the CLI's ``--config`` file and the Slicer worker carry.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

METHODS = ("blindspot", "n2v", "n2v2", "structn2v")
DIMENSIONS = ("2d", "3d")
DEVICES = ("auto", "cuda", "mps", "cpu")
NORMS = ("batch", "instance", "group", "none")
SLICE_AXES = ("auto", "k", "kji")
REPLACEMENTS = ("uniform", "median")
AXES = ("x", "y", "z")
NOISE_MODELS = ("gaussian", "rician")


@dataclass
class ModelConfig:
    """The network: ``dimensions`` 2d works slice by slice (with ``context_slices`` neighbours on each
    side fed as extra channels), 3d convolves in all three axes. A 2D network cuts slices across
    ``slice_axes``: ``k`` (the array's slice axis) or ``kji`` (all three, trained together and
    averaged at prediction); ``auto`` picks kji for voxels isotropic within 20 %.
    ``noise_fusion`` (blindspot method only) predicts a prior mean and variance for each voxel and
    fuses them with the voxel's own noisy value under the noise model; off, the result is the
    blind-spot prediction alone. ``blurpool``/``top_skip`` give N2V2's UNet."""

    noise_fusion: bool = True
    dimensions: str = "2d"
    slice_axes: str = "auto"
    context_slices: int = 2
    depth: int = 2
    base_channels: int = 16
    norm: str = "batch"
    blurpool: bool = False
    top_skip: bool = True

    def validate(self) -> None:
        _choice("model.dimensions", self.dimensions, DIMENSIONS)
        _choice("model.slice_axes", self.slice_axes, SLICE_AXES)
        _choice("model.norm", self.norm, NORMS)
        _range("model.depth", self.depth, 1, 5)
        _range("model.base_channels", self.base_channels, 4, 256)
        _range("model.context_slices", self.context_slices, 0, 8)


@dataclass
class MaskingConfig:
    """Blind-spot masking: the share of voxels hidden per patch, what replaces them, and structN2V's
    line mask (``struct_axis`` with ``struct_half_length`` voxels each side also hidden)."""

    masked_fraction: float = 0.02
    replacement: str = "uniform"
    neighbourhood_radius: int = 2
    struct_axis: Optional[str] = None
    struct_half_length: int = 0

    def validate(self) -> None:
        _range("masking.masked_fraction", self.masked_fraction, 1e-4, 0.25)
        _choice("masking.replacement", self.replacement, REPLACEMENTS)
        _range("masking.neighbourhood_radius", self.neighbourhood_radius, 1, 5)
        if self.struct_axis is not None:
            _choice("masking.struct_axis", self.struct_axis, AXES)
        _range("masking.struct_half_length", self.struct_half_length, 0, 16)


@dataclass
class TrainingConfig:
    """Self-supervised training on the volume itself. Training stops at whichever comes first of
    ``max_epochs`` and ``budget_seconds`` (users think in minutes, so the budget is the usual limit)."""

    patch_size: int = 64
    batch_size: int = 4
    learning_rate: float = 1e-3
    steps_per_epoch: int = 50
    max_epochs: int = 1000
    budget_seconds: Optional[float] = 180.0
    validation_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None

    def validate(self) -> None:
        _range("training.patch_size", self.patch_size, 8, 512)
        _range("training.batch_size", self.batch_size, 1, 1024)
        _range("training.learning_rate", self.learning_rate, 1e-6, 1.0)
        _range("training.steps_per_epoch", self.steps_per_epoch, 1, 100000)
        _range("training.max_epochs", self.max_epochs, 1, 100000)
        if self.budget_seconds is not None:
            _range("training.budget_seconds", self.budget_seconds, 1.0, 7 * 24 * 3600.0)
        _range("training.validation_fraction", self.validation_fraction, 0.0, 0.5)
        _choice("training.device", self.device, DEVICES)
        if self.threads is not None:
            _range("training.threads", self.threads, 1, 1024)


@dataclass
class PredictionConfig:
    """Tiled inference: tiles of ``tile_size`` voxels per axis overlapping by ``tile_overlap``, blended
    with smooth weights; ``tta`` averages the 8 flips/rotations of each tile."""

    tile_size: int = 128
    tile_overlap: int = 32
    batch_size: int = 4
    tta: bool = False

    def validate(self) -> None:
        _range("prediction.tile_size", self.tile_size, 16, 1024)
        _range("prediction.tile_overlap", self.tile_overlap, 0, self.tile_size // 2)
        _range("prediction.batch_size", self.batch_size, 1, 256)


@dataclass
class NormalizationConfig:
    """Percentile normalisation: the ``low``/``high`` percentiles map to 0/1 (inverted exactly after)."""

    low_percentile: float = 0.5
    high_percentile: float = 99.5

    def validate(self) -> None:
        _range("normalization.low_percentile", self.low_percentile, 0.0, 50.0)
        _range("normalization.high_percentile", self.high_percentile, 50.0, 100.0)
        if self.high_percentile <= self.low_percentile:
            raise ValueError("normalization.high_percentile must exceed low_percentile")


@dataclass
class NoiseConfig:
    """The noise in the volume. The fusion step treats it as Gaussian with ``sigma`` (in the volume's
    intensity units; ``None`` estimates it from the volume's foreground, where Rician noise is close
    to Gaussian). ``rician`` (magnitude MRI) also removes the Rician bias from the result, which
    lifts dark regions off the noise floor (rician.py); ``gaussian`` does not."""

    model: str = "rician"
    sigma: Optional[float] = None

    def validate(self) -> None:
        _choice("noise.model", self.model, NOISE_MODELS)
        if self.sigma is not None:
            _range("noise.sigma", self.sigma, 0.0, float("inf"))


@dataclass
class DenoiseConfig:
    """One denoising run. ``method`` picks the Noise2Void flavour: ``blindspot`` (the default) builds
    the blind spot into the network and learns from every voxel (Laine et al. 2019); ``n2v``,
    ``n2v2`` and ``structn2v`` hide voxels by masking (Krull et al. 2019, Höck et al. 2022,
    Broaddus et al. 2020)."""

    method: str = "blindspot"
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    allow_label_map: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _choice("method", self.method, METHODS)
        self.model.validate()
        self.masking.validate()
        self.training.validate()
        self.prediction.validate()
        self.normalization.validate()
        self.noise.validate()
        if self.method == "blindspot" and self.model.dimensions != "2d":
            raise ValueError(
                "the blindspot method is 2D with neighbouring slices as context; for true 3D use method n2v, n2v2 or structn2v"
            )
        if self.method == "structn2v" and self.masking.struct_axis is None:
            raise ValueError("method 'structn2v' needs masking.struct_axis (x, y or z)")

    @classmethod
    def for_method(cls, method: str, **overrides: Any) -> "DenoiseConfig":
        """The defaults for ``method``: N2V2 adds blur-pool, drops the top skip and uses median
        replacement; structN2V masks a line along ``x`` unless told otherwise."""
        _choice("method", method, METHODS)
        model = ModelConfig()
        masking = MaskingConfig()
        if method == "n2v2":
            model = dataclasses.replace(model, blurpool=True, top_skip=False)
            masking = dataclasses.replace(masking, replacement="median")
        if method == "structn2v":
            masking = dataclasses.replace(masking, struct_axis="x", struct_half_length=2)
        data = {"method": method, "model": dataclasses.asdict(model), "masking": dataclasses.asdict(masking)}
        return cls.from_dict(deep_merge(data, overrides))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DenoiseConfig":
        return _build(cls, data, "")

    @classmethod
    def from_json(cls, text: str) -> "DenoiseConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "DenoiseConfig":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        nested = _NESTED.get(name) if cls is DenoiseConfig else None
        kwargs[name] = _build(nested, value, f"{name}.") if nested is not None else value
    return cls(**kwargs)


_NESTED: dict[str, type] = {
    "model": ModelConfig,
    "masking": MaskingConfig,
    "training": TrainingConfig,
    "prediction": PredictionConfig,
    "normalization": NormalizationConfig,
    "noise": NoiseConfig,
}


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _range(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}]; got {value}")


# --- Super-resolution -------------------------------------------------------------------------------

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
        _range("model.depth", self.depth, 1, 4)
        _range("model.base_channels", self.base_channels, 8, 256)


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
        _range("diffusion.timesteps", self.timesteps, 10, 100000)
        _range("diffusion.cosine_offset", self.cosine_offset, 0.0, 1.0)
        _range("diffusion.max_beta", self.max_beta, 0.5, 0.9999)
        _choice("diffusion.prediction", self.prediction, PREDICTIONS)
        _range("diffusion.variance_scale", self.variance_scale, 0.0, 1.0)
        _range("diffusion.prior_share", self.prior_share, 0.0, 0.9)


@dataclass
class SuperResTrainingConfig:
    """Training on pairs made on the fly: patches of ``patch_size`` voxels of the fine grid (along
    the upsampled axis, then across it), ``batch_size`` per step, Adam with a cosine decay; stops at
    ``max_steps`` or ``budget_seconds``, whichever comes first (per cascade stage, the budget is
    shared between the stages)."""

    patch_size: tuple[int, int] = (32, 32)
    batch_size: int = 4
    learning_rate: float = 2e-3
    max_steps: int = 20000
    budget_seconds: Optional[float] = 300.0
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None

    def __post_init__(self) -> None:
        self.patch_size = tuple(self.patch_size)  # type: ignore[assignment]

    def validate(self) -> None:
        if len(self.patch_size) != 2:
            raise ValueError(f"training.patch_size needs two sizes (along, across); got {self.patch_size}")
        for size in self.patch_size:
            _range("training.patch_size", size, 8, 256)
        _range("training.batch_size", self.batch_size, 1, 256)
        _range("training.learning_rate", self.learning_rate, 1e-6, 1.0)
        _range("training.max_steps", self.max_steps, 1, 10_000_000)
        if self.budget_seconds is not None:
            _range("training.budget_seconds", self.budget_seconds, 1.0, 7 * 24 * 3600.0)
        _choice("training.device", self.device, DEVICES)
        if self.threads is not None:
            _range("training.threads", self.threads, 1, 1024)


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
        _choice("sampling.sampler", self.sampler, SAMPLERS)
        _range("sampling.steps", self.steps, 1, 1000)
        _range("sampling.eta", self.eta, 0.0, 1.0)
        _range("sampling.samples", self.samples, 1, 64)
        _range("sampling.patch_size", self.patch_size, 16, 512)
        _range("sampling.patch_overlap", self.patch_overlap, 0, self.patch_size // 2)


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
        if isinstance(self.factor, bool) or not isinstance(self.factor, int):
            raise ValueError(f"factor must be a whole number; got {self.factor!r}")
        _range("factor", self.factor, 2, 16)
        _choice("axis", self.axis, SUPERRES_AXES)
        _choice("mode", self.mode, SUPERRES_MODES)
        _choice("method", self.method, SUPERRES_METHODS)
        _choice("downsampling", self.downsampling, DOWNSAMPLINGS)
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
    def from_dict(cls, data: dict[str, Any]) -> "SuperResConfig":
        if not isinstance(data, dict):
            raise ValueError(f"config must be a mapping, got {type(data).__name__}")
        nested = {name: _build(section, data[name], f"{name}.") for name, section in _SUPERRES_NESTED.items() if name in data}
        return _build(cls, {**data, **nested}, "")

    @classmethod
    def from_json(cls, text: str) -> "SuperResConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "SuperResConfig":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


_SUPERRES_NESTED: dict[str, type] = {
    "model": SuperResModelConfig,
    "diffusion": DiffusionConfig,
    "training": SuperResTrainingConfig,
    "sampling": SamplingConfig,
    "normalization": NormalizationConfig,
}
