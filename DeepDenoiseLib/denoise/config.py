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

from DeepDenoiseLib.core.normalization import NormalizationConfig
from DeepDenoiseLib.core.settings import DEVICES, build_section, check_field_types, choice, deep_merge, in_range, load_file, parse_json

METHODS = ("blindspot", "n2v", "n2v2", "structn2v", "noise2noise", "supervised")
#: Methods that learn from pairs of volumes (an input and its target) rather than from one noisy volume.
PAIRED_METHODS = ("noise2noise", "supervised")
ARCHITECTURES = ("unet", "dae")
LOSSES = ("l2", "l1")
NOISE2NOISE_INPUTS = ("each", "mean")
DIMENSIONS = ("2d", "3d")
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
        choice("model.dimensions", self.dimensions, DIMENSIONS)
        choice("model.architecture", self.architecture, ARCHITECTURES)
        choice("model.slice_axes", self.slice_axes, SLICE_AXES)
        choice("model.norm", self.norm, NORMS)
        in_range("model.depth", self.depth, 1, 5)
        in_range("model.base_channels", self.base_channels, 4, 256)
        in_range("model.context_slices", self.context_slices, 0, 8)


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
        in_range("masking.masked_fraction", self.masked_fraction, 1e-4, 0.25)
        choice("masking.replacement", self.replacement, REPLACEMENTS)
        in_range("masking.neighbourhood_radius", self.neighbourhood_radius, 1, 5)
        if self.struct_axis is not None:
            choice("masking.struct_axis", self.struct_axis, AXES)
        in_range("masking.struct_half_length", self.struct_half_length, 0, 16)


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
        in_range("training.patch_size", self.patch_size, 8, 512)
        in_range("training.batch_size", self.batch_size, 1, 1024)
        in_range("training.learning_rate", self.learning_rate, 1e-6, 1.0)
        in_range("training.steps_per_epoch", self.steps_per_epoch, 1, 100000)
        in_range("training.max_epochs", self.max_epochs, 1, 100000)
        if self.budget_seconds is not None:
            in_range("training.budget_seconds", self.budget_seconds, 1.0, 7 * 24 * 3600.0)
        in_range("training.min_steps", self.min_steps, 0, 10_000_000)
        in_range("training.validation_fraction", self.validation_fraction, 0.0, 0.5)
        choice("training.device", self.device, DEVICES)
        if self.threads is not None:
            in_range("training.threads", self.threads, 1, 1024)
        choice("training.loss", self.loss, LOSSES)
        in_range("training.adversarial_weight", self.adversarial_weight, 0.0, 10.0)


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
        choice("prediction.noise2noise_input", self.noise2noise_input, NOISE2NOISE_INPUTS)
        in_range("prediction.tile_size", self.tile_size, 16, 1024)
        in_range("prediction.tile_overlap", self.tile_overlap, 0, self.tile_size // 2)
        in_range("prediction.batch_size", self.batch_size, 1, 256)


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
        choice("noise.model", self.model, NOISE_MODELS)
        if self.sigma is not None:
            in_range("noise.sigma", self.sigma, 0.0, float("inf"))
            if self.model == "speckle" and not self.sigma > 0:
                raise ValueError("noise.sigma for speckle is its relative spread and must be positive")
        if self.gain is not None:
            if self.model != "poisson":
                raise ValueError("noise.gain (intensity per photon) applies to the poisson model only")
            in_range("noise.gain", self.gain, 1e-30, float("inf"))


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
        choice("method", self.method, METHODS)
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
        choice("method", method, METHODS)
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
        return build_section(cls, data, "")

    @classmethod
    def from_json(cls, text: str) -> DenoiseConfig:
        return cls.from_dict(parse_json(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> DenoiseConfig:
        return load_file(cls, path)
