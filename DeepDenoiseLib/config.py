"""Every setting of a denoising run, as typed dataclasses: the one place where defaults live.

A :class:`DenoiseConfig` is validated on creation, round-trips through JSON (unknown keys are refused,
so a typo never passes silently), and is what the CLI's ``--config`` file and the Slicer worker carry.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

METHODS = ("blindspot", "n2v", "n2v2", "structn2v", "noise2noise", "supervised")
#: Methods that learn from pairs of volumes (an input and its target) rather than from one noisy volume.
PAIRED_METHODS = ("noise2noise", "supervised")
ARCHITECTURES = ("unet", "dae")
LOSSES = ("l2", "l1")
NOISE2NOISE_INPUTS = ("each", "mean")
DIMENSIONS = ("2d", "3d")
DEVICES = ("auto", "cuda", "mps", "cpu")
NORMS = ("batch", "instance", "group", "none")
SLICE_AXES = ("auto", "k", "kji")
REPLACEMENTS = ("uniform", "median")
AXES = ("x", "y", "z")
NOISE_MODELS = ("gaussian", "rician", "poisson", "speckle")


@dataclass
class ModelConfig:
    """The network: ``dimensions`` 2d works slice by slice (with ``context_slices`` neighbours on each
    side fed as extra channels), 3d convolves in all three axes. A 2D network cuts slices across
    ``slice_axes``: ``k`` (the array's slice axis) or ``kji`` (all three, trained together and
    averaged at prediction); ``auto`` picks kji for voxels isotropic within 20 %.
    ``noise_fusion`` (blindspot method only) predicts a prior mean and variance for each voxel and
    fuses them with the voxel's own noisy value under the noise model; off, the result is the
    blind-spot prediction alone. ``blurpool``/``top_skip`` give N2V2's UNet. ``architecture``
    (paired methods only): ``unet`` (residual: it learns the correction to its input), or ``dae``, a
    denoising autoencoder: the same encoder and decoder without any skip connection or residual
    path, so every output passes through the bottleneck."""

    noise_fusion: bool = True
    dimensions: str = "2d"
    slice_axes: str = "auto"
    context_slices: int = 2
    depth: int = 2
    base_channels: int = 16
    norm: str = "batch"
    blurpool: bool = False
    top_skip: bool = True
    architecture: str = "unet"

    def validate(self) -> None:
        _choice("model.dimensions", self.dimensions, DIMENSIONS)
        _choice("model.architecture", self.architecture, ARCHITECTURES)
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
    """Training. It stops at whichever comes first of ``max_epochs`` and ``budget_seconds`` (users
    think in minutes, so the budget is the usual limit), but a budget that runs out before
    ``min_steps`` steps is extended to them: fewer leave the network under-trained (the default's
    result at 10 % Rician noise on the benchmark volume: 21.4 dB after 300 steps, 24.2 after 600,
    26.5 after 1000, 28.0 after 1500; bench/benchmark_steps.py). The paired methods also take the
    reconstruction ``loss`` (``l2`` learns the mean of the targets, ``l1`` their median) and, for
    ``supervised``, an ``adversarial_weight`` (0 = off): a patch discriminator's loss is added, scaled
    so that its gradient at the network's output layer is this fraction of the reconstruction loss's
    (0.1: a tenth), which keeps the reconstruction loss in charge whatever the intensity scale."""

    patch_size: int = 64
    batch_size: int = 4
    learning_rate: float = 1e-3
    steps_per_epoch: int = 50
    max_epochs: int = 1000
    budget_seconds: Optional[float] = 240.0
    min_steps: int = 1000
    validation_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    loss: str = "l2"
    adversarial_weight: float = 0.0

    def validate(self) -> None:
        _range("training.patch_size", self.patch_size, 8, 512)
        _range("training.batch_size", self.batch_size, 1, 1024)
        _range("training.learning_rate", self.learning_rate, 1e-6, 1.0)
        _range("training.steps_per_epoch", self.steps_per_epoch, 1, 100000)
        _range("training.max_epochs", self.max_epochs, 1, 100000)
        if self.budget_seconds is not None:
            _range("training.budget_seconds", self.budget_seconds, 1.0, 7 * 24 * 3600.0)
        _range("training.min_steps", self.min_steps, 0, 10_000_000)
        _range("training.validation_fraction", self.validation_fraction, 0.0, 0.5)
        _choice("training.device", self.device, DEVICES)
        if self.threads is not None:
            _range("training.threads", self.threads, 1, 1024)
        _choice("training.loss", self.loss, LOSSES)
        _range("training.adversarial_weight", self.adversarial_weight, 0.0, 10.0)


@dataclass
class PredictionConfig:
    """Tiled inference: tiles of ``tile_size`` voxels per axis overlapping by ``tile_overlap``, blended
    with smooth weights; ``tta`` averages the 8 flips/rotations of each tile. Noise2Noise on two
    acquisitions predicts from ``noise2noise_input``: ``each`` acquisition, averaging the two
    predictions, or their voxel-wise ``mean`` (one prediction, from an input less noisy than any the
    network trained on)."""

    tile_size: int = 128
    tile_overlap: int = 32
    batch_size: int = 4
    tta: bool = False
    noise2noise_input: str = "each"

    def validate(self) -> None:
        _choice("prediction.noise2noise_input", self.noise2noise_input, NOISE2NOISE_INPUTS)
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
    """The noise in the volume (noise_models.py); parameters left ``None`` are estimated from the volume.

    - ``gaussian``: additive, ``sigma`` in intensity units (reconstructed CT, generic images).
    - ``rician``: magnitude MRI; denoised like Gaussian noise of ``sigma`` (close to it in tissue) and
      then corrected for the Rician bias, which lifts dark regions off the noise floor (rician.py).
    - ``poisson``: photon counting (PET, SPECT, low-dose imaging, microscopy), ``variance = gain *
      intensity + sigma**2`` (``gain``: intensity per photon; ``sigma``: Gaussian read noise);
      denoised after the generalised Anscombe transform, inverted without bias (vst.py).
    - ``speckle``: multiplicative ultrasound speckle, ``sigma`` its relative std (1/sqrt(looks));
      denoised in the log domain, inverted without bias.
    """

    model: str = "rician"
    sigma: Optional[float] = None
    gain: Optional[float] = None

    def validate(self) -> None:
        _choice("noise.model", self.model, NOISE_MODELS)
        if self.sigma is not None:
            _range("noise.sigma", self.sigma, 0.0, float("inf"))
            if self.model == "speckle" and not self.sigma > 0:
                raise ValueError("noise.sigma for speckle is its relative spread and must be positive")
        if self.gain is not None:
            if self.model != "poisson":
                raise ValueError("noise.gain (intensity per photon) applies to the poisson model only")
            _range("noise.gain", self.gain, 1e-30, float("inf"))


@dataclass
class DenoiseConfig:
    """One denoising run. ``method`` picks how the network learns. From the noisy volume alone (a
    Noise2Void flavour): ``blindspot`` (the default) builds the blind spot into the network and
    learns from every voxel (Laine et al. 2019); ``n2v``, ``n2v2`` and ``structn2v`` hide voxels by
    masking (Krull et al. 2019, Höck et al. 2022, Broaddus et al. 2020). From pairs of volumes:
    ``noise2noise`` maps one noisy acquisition to another of the same anatomy (Lehtinen et al.
    2018), ``supervised`` maps noisy volumes to clean ones; these mask nothing, so the masking
    settings do not apply to them."""

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
        check_field_types(self)
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
        self._validate_pair_settings()

    def _validate_pair_settings(self) -> None:
        """Settings of one family of methods refused in the other, rather than silently ignored."""
        paired = self.method in PAIRED_METHODS
        if paired and self.masking != MaskingConfig():
            raise ValueError(
                f"method '{self.method}' learns from pairs of volumes and masks nothing: leave the masking "
                "settings at their defaults (they apply to n2v, n2v2 and structn2v)"
            )
        if not paired and self.model.architecture != "unet":
            raise ValueError(
                f"model.architecture '{self.model.architecture}' needs targets to learn from: use it with method noise2noise or supervised"
            )
        if not paired and self.training.loss != "l2":
            raise ValueError(
                f"training.loss '{self.training.loss}' applies to methods noise2noise and supervised; "
                f"method '{self.method}' has its own loss"
            )
        if self.training.adversarial_weight > 0 and self.method != "supervised":
            raise ValueError(
                "the adversarial loss teaches the network what clean volumes look like, so it needs clean "
                "targets: use training.adversarial_weight with method supervised only (0 turns it off)"
            )

    @classmethod
    def for_method(cls, method: str, **overrides: Any) -> DenoiseConfig:
        """The defaults for ``method``: N2V2 adds blur-pool, drops the top skip and uses median
        replacement; structN2V masks a line along ``x`` unless told otherwise; the paired methods
        (``noise2noise``, ``supervised``) take the plain defaults."""
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
    def from_dict(cls, data: dict[str, Any]) -> DenoiseConfig:
        return _build(cls, data, "")

    @classmethod
    def from_json(cls, text: str) -> DenoiseConfig:
        return cls.from_dict(_parse_json(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> DenoiseConfig:
        return _load_file(cls, path)


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


def check_field_types(settings: Any, prefix: str = "", display: Optional[Callable[[str], str]] = None) -> None:
    """Refuses a value of the wrong type in the dataclass ``settings`` and its nested sections with a
    ValueError naming the setting (as ``display`` spells a field name, if given): booleans must be
    ``true``/``false`` (the string "false" would otherwise switch a setting on), whole numbers must be
    integers (not 2.5, not true), numbers may be integers or floats, strings strings; ``Optional``
    settings also take ``None``."""
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        name = prefix + (display(item.name) if display is not None else item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_field_types(value, f"{name}.", display)
        else:
            _check_type(name, value, hints[item.name])


def _check_type(name: str, value: Any, hint: Any) -> None:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        if value is None and type(None) in arguments:
            return
        hint = next(argument for argument in arguments if argument is not type(None))
        origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false (a JSON boolean, not a string or number); got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number; got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number; got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {value!r}")
    elif origin is tuple:
        if not isinstance(value, (tuple, list)) or len(value) != len(arguments):
            raise ValueError(f"{name} must be a list of {len(arguments)} values; got {value!r}")
        for index, (element, element_hint) in enumerate(zip(value, arguments)):
            _check_type(f"{name}[{index}]", element, element_hint)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from error


def _load_file(cls: Any, path: Union[str, Path]) -> Any:
    """``cls.from_json`` of the file at ``path``; every refusal names the file."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"no configuration file at '{path}'") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"could not read the configuration file '{path}': {error}") from error
    try:
        return cls.from_json(text)
    except (ValueError, TypeError) as error:
        raise ValueError(f"the configuration file '{path}': {error}") from error


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
        if isinstance(self.patch_size, list):  # JSON has no tuples
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
        check_field_types(self)
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
    def from_dict(cls, data: dict[str, Any]) -> SuperResConfig:
        if not isinstance(data, dict):
            raise ValueError(f"config must be a mapping, got {type(data).__name__}")
        nested = {name: _build(section, data[name], f"{name}.") for name, section in _SUPERRES_NESTED.items() if name in data}
        return _build(cls, {**data, **nested}, "")

    @classmethod
    def from_json(cls, text: str) -> SuperResConfig:
        return cls.from_dict(_parse_json(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> SuperResConfig:
        return _load_file(cls, path)


_SUPERRES_NESTED: dict[str, type] = {
    "model": SuperResModelConfig,
    "diffusion": DiffusionConfig,
    "training": SuperResTrainingConfig,
    "sampling": SamplingConfig,
    "normalization": NormalizationConfig,
}
