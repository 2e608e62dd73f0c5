"""Every setting of a denoising run, declared once: the settings table of :class:`DenoiseConfig`.

Each field is a row (core/settings.py): its type and default, its bounds or choices, the command-line
flags that set it (and the sub-commands offering them), and its place in the Slicer panel. A
:class:`DenoiseConfig` is validated on creation, round-trips through JSON (unknown keys are refused,
so a typo never passes silently), and is what the CLI's ``--config`` file and the Slicer worker carry.
The rules between settings are method_rules.py's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from DeepDenoiseLib.core.normalization import NormalizationConfig
from DeepDenoiseLib.core.settings import (
    DEVICE_NAMES,
    DEVICES,
    MINUTES,
    PRECISIONS,
    WEEK_SECONDS,
    Configuration,
    Flag,
    Panel,
    Section,
    choice,
    deep_merge,
    setting,
)
from DeepDenoiseLib.denoise.commands import PAIRED_COMMANDS, PREDICTION_COMMANDS, SINGLE_VOLUME_COMMANDS, TRAINING_COMMANDS
from DeepDenoiseLib.denoise.method_rules import (
    INITIALISATIONS,
    METHODS,
    PAIRED_METHODS,
    SERIES_ONLY_METHODS,
    check_dimensions,
    check_initialisation,
    check_method_settings,
    check_network_width,
    check_patch_size,
    check_precision,
    check_series_settings,
    check_struct_axis,
    default_method,
)
from DeepDenoiseLib.denoise.noise_config import NoiseConfig
from DeepDenoiseLib.denoise.series_config import SeriesConfig

ARCHITECTURES = ("unet", "dae")
LOSSES = ("l2", "l1")
NOISE2NOISE_INPUTS = ("each", "mean")
DIMENSIONS = ("2d", "3d")
NORMS = ("batch", "instance", "group", "none")
SLICE_AXES = ("auto", "k", "kji")
#: The step floor of the methods that train a network from random weights (TrainingConfig).
NETWORK_FROM_SCRATCH_MIN_STEPS = 1000
#: Their epoch limit: 50000 steps, beyond any budget on a CPU (r2r, from its prior, stops at 8000).
NETWORK_FROM_SCRATCH_MAX_EPOCHS = 1000
#: Their learning rate: R2R fine-tunes its prior at the table's lower rate (3e-4 beat 1e-3 by 0.3 dB
#: at 600 steps on the benchmark's Gaussian and Rician variants; bench/README.md).
NETWORK_FROM_SCRATCH_LEARNING_RATE = 1e-3
REPLACEMENTS = ("uniform", "median")
AXES = ("x", "y", "z")

#: The panel's words for the methods: the library's default method first, then the other
#: single-volume methods, then those that learn from pairs of volumes.
METHOD_NAMES = {
    "Pretrained R2R": "r2r",
    "Blind-spot N2V": "blindspot",
    "N2V": "n2v",
    "N2V2": "n2v2",
    "structN2V": "structn2v",
    "MP-PCA (series)": "mppca",
    "Noise2Noise": "noise2noise",
    "Supervised": "supervised",
}
#: The paired methods' networks: a UNet, or a denoising autoencoder (the UNet without skips).
ARCHITECTURE_NAMES = {"UNet": "unet", "DAE": "dae"}
DIMENSION_NAMES = {"2D": "2d", "3D": "3d"}


@dataclass
class ModelConfig(Section):
    """The network: ``dimensions`` 2d works slice by slice (with ``context_slices`` neighbours on each
    side fed as extra channels), 3d convolves in all three axes. A 2D network cuts slices across
    ``slice_axes``: ``k`` (the array's slice axis) or ``kji`` (all three, trained together and
    averaged at prediction); ``auto`` picks kji for voxels isotropic within 20 %.
    ``noise_fusion`` (blindspot method only) predicts a prior mean and variance for each voxel and
    fuses them with the voxel's own noisy value under the noise model; off, the result is the
    blind-spot prediction alone. ``blurpool``/``top_skip`` give N2V2's UNet. ``architecture``
    (paired methods only): ``unet`` (residual: it learns the correction to its input), or ``dae``, a
    denoising autoencoder: the same encoder and decoder without any skip connection or residual
    path, so every output passes through the bottleneck. ``init`` (method r2r): start from the
    pretrained prior (``auto``/``prior``; its network has a fixed size) or from ``random`` weights."""

    SECTION: ClassVar[str] = "model"

    noise_fusion: bool = setting(True)
    dimensions: str = setting(
        "2d",
        choices=DIMENSIONS,
        flags=[Flag("--dims", "2d: slice-wise with neighbouring slices as context; 3d: true 3D", TRAINING_COMMANDS)],
        panel=Panel("dimensions", labels=DIMENSION_NAMES),
    )
    slice_axes: str = setting("auto", choices=SLICE_AXES)
    context_slices: int = setting(2, low=0, high=8)
    depth: int = setting(2, low=1, high=5)
    base_channels: int = setting(16, low=4, high=256)
    norm: str = setting("batch", choices=NORMS)
    blurpool: bool = setting(False)
    top_skip: bool = setting(True)
    init: str = setting(
        "auto",
        choices=INITIALISATIONS,
        flags=[Flag("--init", "r2r: start from the pretrained prior (auto, prior) or from random weights", SINGLE_VOLUME_COMMANDS)],
    )
    architecture: str = setting(
        "unet",
        choices=ARCHITECTURES,
        flags=[Flag("--architecture", "unet (default) or dae: a denoising autoencoder, no skip connections", PAIRED_COMMANDS)],
        panel=Panel("architecture", labels=ARCHITECTURE_NAMES),
    )


@dataclass
class MaskingConfig(Section):
    """Blind-spot masking: the share of voxels hidden per patch, what replaces them, and structN2V's
    line mask (``struct_axis`` with ``struct_half_length`` voxels each side also hidden)."""

    SECTION: ClassVar[str] = "masking"

    masked_fraction: float = setting(
        0.02,
        low=1e-4,
        high=0.25,
        flags=[Flag("--masked-fraction", "share of voxels hidden per patch", SINGLE_VOLUME_COMMANDS)],
        panel=Panel("maskedFraction"),
    )
    replacement: str = setting("uniform", choices=REPLACEMENTS)
    neighbourhood_radius: int = setting(2, low=1, high=5)
    struct_axis: Optional[str] = setting(
        None, choices=AXES, flags=[Flag("--struct-axis", "structN2V: axis along which the noise is correlated", SINGLE_VOLUME_COMMANDS)]
    )
    struct_half_length: int = setting(0, low=0, high=16)


@dataclass
class TrainingConfig(Section):
    """Training. It stops at whichever comes first of ``max_epochs`` and ``budget_seconds`` (users
    think in minutes, so the budget is the usual limit) or, with ``patience``, once the held-out loss
    has not improved for that many epochs; a budget that runs out before ``min_steps`` steps is
    extended to them. The table's defaults are r2r's: from its pretrained network it needs no floor and
    trains to the budget, at most 8000 steps (a fast GPU stops after about a minute), with no early
    stop (its held-out loss is too noisy to see the late gains: 0.08 to 0.37 dB over patience 10 on the
    benchmark; bench/README.md). The methods that train from random weights take a floor of 1000 steps
    and up to 1000 epochs (DenoiseConfig.for_method; bench/benchmark_steps.py). The paired methods also
    take the reconstruction ``loss`` (``l2`` learns the mean of the targets, ``l1`` their median) and,
    for ``supervised``, an ``adversarial_weight`` (0 = off): a patch discriminator's loss is added, scaled
    so that its gradient at the network's output layer is this fraction of the reconstruction loss's
    (0.1: a tenth), which keeps the reconstruction loss in charge whatever the intensity scale."""

    SECTION: ClassVar[str] = "training"

    patch_size: int = setting(
        64, low=8, high=512, flags=[Flag("--patch-size", "training patch edge in voxels", TRAINING_COMMANDS)], panel=Panel("patchSize")
    )
    batch_size: int = setting(
        4, low=1, high=1024, flags=[Flag("--batch-size", "training patches per step", TRAINING_COMMANDS)], panel=Panel("batchSize")
    )
    learning_rate: float = setting(
        3e-4, low=1e-6, high=1.0, flags=[Flag("--learning-rate", "initial learning rate", TRAINING_COMMANDS)], panel=Panel("learningRate")
    )
    steps_per_epoch: int = setting(50, low=1, high=100000)
    max_epochs: int = setting(
        160, low=1, high=100000, flags=[Flag("--epochs", "train at most this many epochs (r2r: 160, others: 1000)", TRAINING_COMMANDS)]
    )
    budget_seconds: Optional[float] = setting(
        240.0,
        low=1.0,
        high=WEEK_SECONDS,
        flags=[Flag("--budget-minutes", "training time budget in minutes", TRAINING_COMMANDS, unit=MINUTES)],
        panel=Panel("budgetMinutes", unit=MINUTES, low=0.05, high=1440.0),
    )
    min_steps: int = setting(
        0,
        low=0,
        high=10_000_000,
        flags=[
            Flag(
                "--min-steps",
                "train at least this many steps even past the budget (default: 0 for r2r, 1000 for the other methods; 0: stop at the budget)",
                TRAINING_COMMANDS,
            )
        ],
    )
    validation_fraction: float = setting(0.1, low=0.0, high=0.5)
    patience: Optional[int] = setting(
        None,
        low=1,
        high=100000,
        flags=[
            Flag(
                "--patience",
                "stop once the held-out loss has not improved for this many epochs (default: never, train to the budget)",
                SINGLE_VOLUME_COMMANDS,
            )
        ],
    )
    seed: int = setting(
        0, flags=[Flag("--seed", "random seed", TRAINING_COMMANDS)], panel=Panel("seed", low=0, high=2**31 - 1, shared=True)
    )
    device: str = setting(
        "auto",
        choices=DEVICES,
        flags=[
            Flag("--device", "where to run (default auto: GPU if there is one)", TRAINING_COMMANDS),
            Flag("--device", "where to run (default: the model's setting, auto)", ("apply",)),
        ],
        panel=Panel("device", labels=DEVICE_NAMES, shared=True),
    )
    threads: Optional[int] = setting(None, low=1, high=1024, flags=[Flag("--threads", "CPU threads for torch", PREDICTION_COMMANDS)])
    precision: str = setting(
        "auto",
        choices=PRECISIONS,
        flags=[
            Flag(
                "--precision",
                "r2r's training arithmetic: auto (bfloat16 where a timed step says it is faster), float32 or bfloat16",
                SINGLE_VOLUME_COMMANDS,
            )
        ],
    )
    loss: str = setting(
        "l2", choices=LOSSES, flags=[Flag("--loss", "reconstruction loss: l2 (default, the mean) or l1 (the median)", PAIRED_COMMANDS)]
    )
    adversarial_weight: float = setting(
        0.0,
        low=0.0,
        high=10.0,
        flags=[
            Flag(
                "--adversarial-weight",
                "add a patch discriminator's loss at this fraction of the reconstruction loss's gradient (e.g. 0.1; default 0: off)",
                ("supervised",),
            )
        ],
        panel=Panel("adversarialWeight"),
    )


@dataclass
class PredictionConfig(Section):
    """Tiled inference: tiles of ``tile_size`` voxels per axis overlapping by ``tile_overlap``, blended
    with smooth weights; ``tta`` averages the 8 flips/rotations of each tile. Noise2Noise on two
    acquisitions predicts from ``noise2noise_input``: ``each`` acquisition, averaging the two
    predictions, or their voxel-wise ``mean`` (one prediction, from an input less noisy than any the
    network trained on)."""

    SECTION: ClassVar[str] = "prediction"

    tile_size: int = setting(128, low=16, high=1024)
    tile_overlap: int = setting(32, low=0, high=lambda prediction: prediction.tile_size // 2)
    batch_size: int = setting(4, low=1, high=256)
    tta: bool = setting(
        False,
        flags=[Flag("--tta", "average 8 in-plane flips/rotations at prediction", PREDICTION_COMMANDS)],
        panel=Panel("testTimeAugmentation"),
    )
    noise2noise_input: str = setting("each", choices=NOISE2NOISE_INPUTS)


@dataclass
class DenoiseConfig(Configuration):
    """One denoising run. ``method`` picks how the network learns. From the noisy volume alone:
    ``r2r`` (the default) starts from a pretrained noise-conditioned network and trains it further on
    the volume with the Recorrupted-to-Recorrupted loss (r2r_training.py); the Noise2Void flavours
    train from random weights: ``blindspot`` builds the blind spot into the network and
    learns from every voxel (Laine et al. 2019); ``n2v``, ``n2v2`` and ``structn2v`` hide voxels by
    masking (Krull et al. 2019, Höck et al. 2022, Broaddus et al. 2020). From pairs of volumes:
    ``noise2noise`` maps one noisy acquisition to another of the same anatomy (Lehtinen et al.
    2018), ``supervised`` maps noisy volumes to clean ones; these mask nothing, so the masking
    settings do not apply to them. For a 4D series only: ``mppca``, local PCA across frames with
    the Marchenko–Pastur threshold (local_pca.py, settings in ``series``), the default there."""

    method: str = setting(
        "r2r",
        choices=METHODS,
        flags=[
            Flag(
                "--method",
                "how to denoise: a network that learns from the noisy volume (default {default}), or mppca for a 4D series (its default)",
                SINGLE_VOLUME_COMMANDS,
                choices=tuple(method for method in METHODS if method not in PAIRED_METHODS),
            )
        ],
        panel=Panel("method", labels=METHOD_NAMES),
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    series: SeriesConfig = field(default_factory=SeriesConfig)
    allow_label_map: bool = setting(
        False,
        flags=[
            Flag("--force", "denoise even if the volume looks like a label map, and let an output replace its input", TRAINING_COMMANDS)
        ],
    )

    def check_rules(self) -> None:
        check_dimensions(self.method, self.model.dimensions)
        check_network_width(self.model.depth, self.model.base_channels)
        check_patch_size(self.training.patch_size, self.model.depth)
        defaults = ModelConfig()
        changed = [
            field.name for field in dataclasses.fields(ModelConfig) if getattr(self.model, field.name) != getattr(defaults, field.name)
        ]
        check_initialisation(self.method, self.model.init, changed)
        check_struct_axis(self.method, self.masking.struct_axis)
        architecture, loss, adversarial_weight = self.model.architecture, self.training.loss, self.training.adversarial_weight
        check_method_settings(self.method, self.masking == MaskingConfig(), architecture, loss, adversarial_weight)
        check_precision(self.method, self.training.precision)
        check_series_settings(self.method, self.series == SeriesConfig(), self.prediction.tta)

    @classmethod
    def for_method(cls, method: str, **overrides: Any) -> DenoiseConfig:
        """The defaults for ``method``: the table's defaults are the default method's (r2r); the
        methods that train from random weights instead train at least ``NETWORK_FROM_SCRATCH_MIN_STEPS``
        steps, up to ``NETWORK_FROM_SCRATCH_MAX_EPOCHS`` epochs, and learn at ``NETWORK_FROM_SCRATCH_LEARNING_RATE``; N2V2 adds blur-pool, drops the top skip and uses median
        replacement; structN2V masks a line along ``x`` unless told otherwise."""
        choice("method", method, METHODS)
        model = ModelConfig()
        masking = MaskingConfig()
        training: dict[str, Any] = {}
        if method not in ("r2r",) + SERIES_ONLY_METHODS:  # mppca trains nothing
            training = {
                "min_steps": NETWORK_FROM_SCRATCH_MIN_STEPS,
                "max_epochs": NETWORK_FROM_SCRATCH_MAX_EPOCHS,
                "learning_rate": NETWORK_FROM_SCRATCH_LEARNING_RATE,
            }
        if method == "n2v2":
            model = dataclasses.replace(model, blurpool=True, top_skip=False)
            masking = dataclasses.replace(masking, replacement="median")
        if method == "structn2v":
            masking = dataclasses.replace(masking, struct_axis="x", struct_half_length=2)
        data = {"method": method, "model": dataclasses.asdict(model), "masking": dataclasses.asdict(masking), "training": training}
        return cls.from_dict(deep_merge(data, overrides))

    @classmethod
    def for_input(cls, series: bool, frames: Optional[int] = None, settings: Optional[Mapping[str, Any]] = None) -> DenoiseConfig:
        """The configuration of a run whose method was not chosen: the input's default method's
        (MP-PCA for a 4D ``series`` of at least 10 ``frames``, else R2R; method_rules.default_method),
        with ``settings`` (a nested mapping, as in a configuration file) over it."""
        return cls.for_method(default_method(series, frames), **dict(settings or {}))


#: The settings :meth:`DenoiseConfig.for_method` decides for a method (masking style, N2V2's layers,
#: the step floor and limit, early stopping and the learning rate) and MP-PCA's own settings, which a change of
#: method on the command line resets.
METHOD_DECIDES = (
    "model.blurpool", "model.top_skip", "masking.replacement", "masking.struct_axis", "masking.struct_half_length",
    "training.min_steps", "training.max_epochs", "training.patience", "training.learning_rate",
    "series.patch_radius", "series.patch_stride", "series.wiener",
)  # fmt: skip
