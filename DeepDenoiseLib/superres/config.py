"""Every setting of a super-resolution run, declared once: the settings table of :class:`SuperResConfig`
(each field a row, as in denoise/config.py: type, default, bounds or choices, command-line flags,
place in the Slicer panel's Super-resolution section). Validated on creation; round-trips through JSON.
The rules between settings are the functions at the end of this module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from DeepDenoiseLib.core.normalization import NormalizationConfig
from DeepDenoiseLib.core.settings import DEVICE_NAMES, DEVICES, MINUTES, WEEK_SECONDS, Configuration, Flag, Panel, Section, setting

SUPERRES_MODES = ("supervised", "self-supervised")
SUPERRES_METHODS = ("ddpm", "regression")
SUPERRES_AXES = ("x", "y", "z", "auto")
DOWNSAMPLINGS = ("spline", "area")
SAMPLERS = ("ddim", "ddpm")
PREDICTIONS = ("v", "eps", "x0")

#: The sub-command that sets these settings.
COMMANDS = ("superres",)
#: The panel's words for the modes, methods and axes (the voxel axes, or the one with the thickest voxels).
MODE_NAMES = {"Self-supervised": "self-supervised", "Supervised": "supervised"}
SUPERRES_METHOD_NAMES = {"DDPM": "ddpm", "Regression": "regression"}
AXIS_NAMES = {"auto": "auto", "I (x)": "x", "J (y)": "y", "K (z)": "z"}
#: The panel section's parameters start with this, but for those it shares with denoising (device, seed).
PANEL_PREFIX = "superres"


@dataclass
class SuperResModelConfig(Section):
    """The conditional 3D UNet (residual blocks, GroupNorm, time embedding): ``depth`` poolings,
    ``base_channels`` at full resolution, optional self-attention at the coarsest level."""

    SECTION: ClassVar[str] = "model"

    depth: int = setting(2, low=1, high=4)
    base_channels: int = setting(16, low=8, high=256)
    attention: bool = setting(False)


@dataclass
class DiffusionConfig(Section):
    """The forward process: Nichol & Dhariwal's cosine schedule over ``timesteps`` steps (offset
    ``cosine_offset``, betas clipped at ``max_beta``); the network predicts ``v``, ``eps`` or ``x0``;
    ``variance_scale`` multiplies the variance of every noise draw of the sampler (starting noise and
    each step's): a sampling temperature, 1 for the textbook sampler; 0.3, as in the design this
    follows, gave the more accurate mean of 4 samples in the benchmark (bench/benchmark_superres.py).
    ``prior_share`` of the training budget goes to a regression prior (the same UNet, L1) whose
    estimate replaces the spline as the diffusion model's condition, so the diffusion model only
    samples what the prior cannot predict (predict-and-refine); 0 conditions it on the spline alone."""

    SECTION: ClassVar[str] = "diffusion"

    timesteps: int = setting(1000, low=10, high=100000)
    cosine_offset: float = setting(0.008, low=0.0, high=1.0)
    max_beta: float = setting(0.999, low=0.5, high=0.9999)
    prediction: str = setting(
        "v", choices=PREDICTIONS, flags=[Flag("--prediction", "what the network predicts: v (default), eps or x0", COMMANDS)]
    )
    variance_scale: float = setting(
        0.3, low=0.0, high=1.0, flags=[Flag("--variance-scale", "sampling temperature: scales every noise draw's variance (0-1)", COMMANDS)]
    )
    prior_share: float = setting(
        0.5, low=0.0, high=0.9, flags=[Flag("--prior-share", "share of the training budget for the regression prior (0: none)", COMMANDS)]
    )


@dataclass
class SuperResTrainingConfig(Section):
    """Training on pairs made on the fly: patches of ``patch_size`` voxels of the fine grid (along
    the upsampled axis, then across it), ``batch_size`` per step, Adam with a cosine decay; stops at
    ``max_steps`` or ``budget_seconds``, whichever comes first (per cascade stage, the budget is
    shared between the stages), but a budget that runs out before ``min_steps`` steps is extended to
    them (0, the default: stop at the budget; the prior and the diffusion model share it as they
    share the budget)."""

    SECTION: ClassVar[str] = "training"

    patch_size: tuple[int, int] = setting((32, 32), low=8, high=256)
    batch_size: int = setting(4, low=1, high=256)
    learning_rate: float = setting(2e-3, low=1e-6, high=1.0)
    max_steps: int = setting(20000, low=1, high=10_000_000, flags=[Flag("--max-steps", "training steps at most", COMMANDS)])
    budget_seconds: Optional[float] = setting(
        300.0,
        low=1.0,
        high=WEEK_SECONDS,
        flags=[Flag("--budget-minutes", "training time budget in minutes", COMMANDS, unit=MINUTES)],
        panel=Panel("budgetMinutes", unit=MINUTES, low=0.05, high=1440.0),
    )
    min_steps: int = setting(
        0,
        low=0,
        high=10_000_000,
        flags=[Flag("--min-steps", "train at least this many steps even past the budget (default 0: stop at the budget)", COMMANDS)],
    )
    seed: int = setting(
        0,
        flags=[Flag("--seed", "random seed (training and sampling)", COMMANDS)],
        panel=Panel("seed", low=0, high=2**31 - 1, shared=True),
    )
    device: str = setting(
        "auto",
        choices=DEVICES,
        flags=[Flag("--device", "where to run (default auto: GPU if there is one)", COMMANDS)],
        panel=Panel("device", labels=DEVICE_NAMES, shared=True),
    )
    threads: Optional[int] = setting(None, low=1, high=1024, flags=[Flag("--threads", "CPU threads for torch", COMMANDS)])

    def __post_init__(self) -> None:
        if isinstance(self.patch_size, list):  # JSON has no tuples
            self.patch_size = tuple(self.patch_size)


@dataclass
class SamplingConfig(Section):
    """Patch-wise sampling on the fine grid: ``sampler`` (DDIM, deterministic for ``eta`` 0, or DDPM
    ancestral) over ``steps`` respaced steps; ``samples`` draws per patch whose mean is the result and
    whose per-voxel standard deviation is the uncertainty; patches of ``patch_size`` voxels overlap by
    ``patch_overlap`` and are blended with smooth weights."""

    SECTION: ClassVar[str] = "sampling"

    sampler: str = setting("ddim", choices=SAMPLERS, flags=[Flag("--sampler", "ddim (default) or ddpm (ancestral)", COMMANDS)])
    steps: int = setting(
        25, low=1, high=1000, flags=[Flag("--steps", "sampling steps (25-100 typical)", COMMANDS)], panel=Panel("samplingSteps")
    )
    eta: float = setting(0.0, low=0.0, high=1.0, flags=[Flag("--eta", "DDIM noise (0: deterministic given the starting noise)", COMMANDS)])
    samples: int = setting(
        4,
        low=1,
        high=64,
        flags=[Flag("--samples", "samples averaged into the result; their spread is the uncertainty", COMMANDS)],
        panel=Panel("samples"),
    )
    patch_size: int = setting(48, low=16, high=512, flags=[Flag("--patch-size", "sampling patch edge in fine voxels", COMMANDS)])
    patch_overlap: int = setting(8, low=0, high=lambda sampling: sampling.patch_size // 2)
    seed: int = setting(
        0, flags=[Flag("--seed", "random seed (training and sampling)", COMMANDS)], panel=Panel("seed", low=0, high=2**31 - 1, shared=True)
    )


@dataclass
class SuperResConfig(Configuration):
    """One super-resolution run: ``factor`` times finer along ``axis`` (the volume's voxel axis i=x,
    j=y, k=z; ``auto`` takes the coarsest). ``mode`` ``supervised`` learns from high-resolution
    training volumes degraded on the fly; ``self-supervised`` learns from the input's own finer
    in-plane axes. ``method`` ``ddpm`` samples a conditional diffusion model; ``regression`` trains
    the same network as a plain L1 regressor (a baseline, with no uncertainty). ``downsampling``
    is how pairs are degraded: ``spline`` samples a cubic spline at the coarse voxel centres,
    ``area`` averages each block of ``factor`` voxels (a thick slice's box profile). ``cascade``
    splits a power-of-two factor into x2 stages, each its own model."""

    factor: int = setting(
        4, low=2, high=16, flags=[Flag("--factor", "how many times finer (default {default})", COMMANDS)], panel=Panel("factor")
    )
    axis: str = setting(
        "z",
        choices=SUPERRES_AXES,
        flags=[Flag("--axis", "voxel axis to refine: x (i), y (j), z (k), or auto (the coarsest; default z)", COMMANDS)],
        panel=Panel("axis", labels=AXIS_NAMES, default="auto"),
    )
    mode: str = setting("supervised", choices=SUPERRES_MODES, panel=Panel("mode", labels=MODE_NAMES, default="Self-supervised"))
    method: str = setting(
        "ddpm",
        choices=SUPERRES_METHODS,
        flags=[Flag("--method", "ddpm (default) or regression (the L1 prior alone)", COMMANDS)],
        panel=Panel("method", labels=SUPERRES_METHOD_NAMES),
    )
    downsampling: str = setting(
        "spline", choices=DOWNSAMPLINGS, flags=[Flag("--downsampling", "how training pairs are degraded: spline or area", COMMANDS)]
    )
    cascade: bool = setting(
        False, flags=[Flag("--cascade", "x2 stages, each its own model (x4 = x2, x2)", COMMANDS)], panel=Panel("cascade")
    )
    model: SuperResModelConfig = field(default_factory=SuperResModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    training: SuperResTrainingConfig = field(default_factory=SuperResTrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)

    def check_rules(self) -> None:
        check_cascade(self.factor, self.cascade)


def cascade_fits(factor: int) -> bool:
    """Whether a cascade of x2 stages can make ``factor``: a power of two."""
    return factor >= 2 and not factor & (factor - 1)


def check_cascade(factor: int, cascade: bool) -> None:
    if cascade and not cascade_fits(factor):
        raise ValueError(f"a cascade splits the factor into x2 stages, so it must be a power of two; got {factor}")


def check_uncertainty_request(wanted: bool, method: str, choose_ddpm: str) -> None:
    """An uncertainty output is the spread of the diffusion model's samples: the regression baseline
    draws none. ``choose_ddpm`` says how to choose the diffusion model, in the asker's words."""
    if wanted and method != "ddpm":
        raise ValueError(
            f"the uncertainty output needs the ddpm method: it is the spread of diffusion samples, and the regression "
            f"baseline draws none; {choose_ddpm}"
        )
