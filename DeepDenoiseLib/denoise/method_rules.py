"""The rules that tie one denoising setting to another, each in one function that the configuration,
the command line, the Python API and the Slicer panel all call, each in its own words.

- Blind-spot N2V and R2R are 2D (:func:`check_dimensions`).
- A network's bottleneck stays within :data:`MAX_WIDEST_CHANNELS` (:func:`check_network_width`),
  and its training patch passes through all its levels (:func:`check_patch_size`).
- R2R started from the pretrained prior keeps the prior's architecture, and only R2R has a starting
  point to choose (:func:`check_initialisation`).
- The paired methods mask nothing, and the settings of one family of methods are refused in the
  other (:func:`check_method_settings`); the panel leaves a setting out for the methods that do not
  take it (:data:`METHODS_TAKING`) and locks it for those it changes nothing for (:data:`METHODS_USING`).
- Only R2R trains in bfloat16 (:func:`check_precision`); ``auto`` means float32 for the others.
- structN2V needs the axis of its line mask (:func:`check_struct_axis`).
- An uncertainty output needs test-time augmentation (:func:`check_uncertainty_request`).
- MP-PCA (``mppca``) denoises a 4D series only, of at least :data:`MPPCA_MIN_FRAMES` frames, and
  trains no model to save (:func:`check_series_method`, :func:`check_saves_model`); its patch
  settings (``series.*``) apply to it alone (:func:`check_series_settings`). It is the default for a
  series of at least that many frames (:func:`default_method`); the default for one volume, and for a
  shorter series, stays ``r2r``.
"""

from __future__ import annotations

from typing import Callable, Optional

METHODS = ("r2r", "blindspot", "n2v", "n2v2", "structn2v", "noise2noise", "supervised", "mppca")
#: Methods that learn from pairs of volumes (an input and its target) rather than from one noisy volume.
PAIRED_METHODS = ("noise2noise", "supervised")
#: Methods that denoise a whole 4D series at once (no network: nothing trains, nothing to save).
SERIES_ONLY_METHODS = ("mppca",)
#: The method a run takes when none is chosen: for one volume, and for a 4D series.
VOLUME_DEFAULT_METHOD = "r2r"
SERIES_DEFAULT_METHOD = "mppca"
#: MP-PCA splits each patch's eigenvalues into a noise bulk and signal; with fewer frames than this the
#: bulk has too few eigenvalues to fit the Marchenko–Pastur law.
MPPCA_MIN_FRAMES = 10
#: Methods whose network is 2D only (3D context comes from neighbouring slices as channels).
METHODS_2D_ONLY = ("r2r", "blindspot")
#: Where a network starts: ``auto`` (the pretrained prior for method r2r, random weights for the
#: others), the ``prior`` shipped with the package (r2r only), or ``random`` weights.
INITIALISATIONS = ("auto", "prior", "random")
#: The network methods that learn from one noisy volume; of these, those that hide voxels by masking
#: (R2R and the blind-spot network, like the paired methods, mask nothing).
SINGLE_VOLUME_METHODS = tuple(method for method in METHODS if method not in PAIRED_METHODS + SERIES_ONLY_METHODS)
MASKING_METHODS = tuple(method for method in SINGLE_VOLUME_METHODS if method not in METHODS_2D_ONLY)
#: The settings that only some methods take, and those methods: the configuration refuses them for
#: the others (check_method_settings), and the panel leaves them out of the others' configurations.
METHODS_TAKING = {
    "masking.masked_fraction": SINGLE_VOLUME_METHODS,
    "model.architecture": PAIRED_METHODS,
    "training.adversarial_weight": ("supervised",),
}
#: Of those, the methods each setting changes something for: the panel's control is editable for these
#: only (the blind-spot network takes a masked fraction but masks nothing).
METHODS_USING = {**METHODS_TAKING, "masking.masked_fraction": MASKING_METHODS}


def check_dimensions(method: str, dimensions: str, label: Callable[[str], str] = str) -> None:
    """Refuses a 2D-only method with 3D dimensions, naming methods as ``label`` words them."""
    if method in METHODS_2D_ONLY and dimensions != "2d":
        methods_3d = ", ".join(label(other) for other in METHODS if other not in METHODS_2D_ONLY)
        raise ValueError(
            f"{label(method)} is a 2D method (it takes 3D context from neighbouring slices); "
            f"choose 2D dimensions, or one of {methods_3d} for a 3D network"
        )


#: The widest layer a network may have (``base_channels * 2**depth`` at its bottleneck): wider ones do
#: not fit a laptop's memory in 3D and take hours per epoch on a CPU, for no measured gain.
MAX_WIDEST_CHANNELS = 1024


def check_network_width(depth: int, base_channels: int) -> None:
    """Refuses a network whose bottleneck would be wider than :data:`MAX_WIDEST_CHANNELS`."""
    widest = base_channels * 2**depth
    if widest > MAX_WIDEST_CHANNELS:
        raise ValueError(
            f"model.base_channels {base_channels} with model.depth {depth} makes a bottleneck of {widest} channels, "
            f"more than {MAX_WIDEST_CHANNELS}: lower one of them (e.g. base_channels {MAX_WIDEST_CHANNELS // 2**depth} at this depth)"
        )


def check_patch_size(patch_size: int, depth: int) -> None:
    """Each level of a network halves its patch: a patch smaller than ``2**depth`` cannot pass through."""
    if patch_size < 2**depth:
        raise ValueError(
            f"training.patch_size {patch_size} is too small for model.depth {depth}: each of its levels halves the patch, "
            f"so it needs at least {2**depth} voxels; raise training.patch_size or lower model.depth"
        )


def check_method_settings(method: str, default_masking: bool, architecture: str, loss: str, adversarial_weight: float) -> None:
    """Settings of one family of methods are refused in the other, rather than silently ignored:
    masking (``default_masking``: the masking settings are at their defaults) for the paired methods;
    the architecture and the reconstruction loss for the single-volume methods; the adversarial loss
    for all but supervised, which alone has clean targets."""
    paired = method in PAIRED_METHODS
    if paired and not default_masking:
        raise ValueError(
            f"method '{method}' learns from pairs of volumes and masks nothing: leave the masking "
            "settings at their defaults (they apply to n2v, n2v2 and structn2v)"
        )
    if method in SERIES_ONLY_METHODS and not default_masking:
        raise ValueError(
            f"method '{method}' trains no network and masks nothing: leave the masking settings at their defaults "
            "(they apply to n2v, n2v2 and structn2v)"
        )
    if not paired and architecture != "unet":
        raise ValueError(f"model.architecture '{architecture}' needs targets to learn from: use it with method noise2noise or supervised")
    if not paired and loss != "l2":
        raise ValueError(f"training.loss '{loss}' applies to methods noise2noise and supervised; method '{method}' has its own loss")
    if adversarial_weight > 0 and method != "supervised":
        raise ValueError(
            "the adversarial loss teaches the network what clean volumes look like, so it needs clean "
            "targets: use training.adversarial_weight with method supervised only (0 turns it off)"
        )


def check_precision(method: str, precision: str) -> None:
    """bfloat16 training is measured for method r2r only (bench/README.md), so it is refused for the
    others, which train in float32 (``auto`` picks float32 for them)."""
    if precision == "bfloat16" and method != "r2r":
        raise ValueError(f"training.precision 'bfloat16' applies to method r2r; method '{method}' trains in float32 (use auto or float32)")


def check_initialisation(method: str, init: str, changed_model_settings: list[str]) -> None:
    """Only method r2r has a pretrained prior to start from (``init`` auto or prior; auto means the
    prior for r2r and random weights for the others). R2R's network is always bias-free without
    normalisation, and started from the prior it has the prior's shape: ``changed_model_settings``
    (the model settings set away from their defaults) must not include what it does not use."""
    if init == "prior" and method != "r2r":
        raise ValueError(f"model.init 'prior': only method r2r has a pretrained prior; method '{method}' starts from random weights")
    if method != "r2r":
        return
    fixed = ["norm", "blurpool", "top_skip", "noise_fusion"]
    if init != "random":
        fixed += ["depth", "base_channels", "context_slices"]
    refused = [f"model.{name}" for name in changed_model_settings if name in fixed]
    if refused:
        where = (
            "its network is bias-free without normalisation"
            if init == "random"
            else "it starts from the pretrained prior, whose network is fixed"
        )
        raise ValueError(
            f"method r2r does not take {', '.join(refused)}: {where}; leave them at their defaults"
            + ("" if init == "random" else ", or set model.init to 'random' to train a network of another size from scratch")
        )


def check_struct_axis(method: str, struct_axis: Optional[str]) -> None:
    """structN2V hides a line of voxels along ``struct_axis``, so it needs one."""
    if method == "structn2v" and struct_axis is None:
        raise ValueError("method 'structn2v' needs masking.struct_axis (x, y or z)")


def check_uncertainty_request(wanted: bool, test_time_augmentation: bool, turn_on: str, leave_out: str) -> None:
    """An uncertainty output is the per-voxel spread across test-time augmentations, so asking for one
    needs them on: ``turn_on`` says where to switch them on, ``leave_out`` how to drop the output."""
    if wanted and not test_time_augmentation:
        raise ValueError(
            f"the uncertainty output is the spread across test-time augmentations: turn test-time augmentation on "
            f"({turn_on}), or {leave_out}"
        )


def default_method(series: bool, frames: Optional[int] = None) -> str:
    """The method a run takes when none was chosen: MP-PCA for a 4D series (of ``frames``, when
    known, at least :data:`MPPCA_MIN_FRAMES`: a shorter one takes the volume default, frame by
    frame), R2R for one volume."""
    if series and (frames is None or frames >= MPPCA_MIN_FRAMES):
        return SERIES_DEFAULT_METHOD
    return VOLUME_DEFAULT_METHOD


def check_series_method(method: str, frames: Optional[int]) -> None:
    """MP-PCA needs a 4D series (``frames`` None: one 3D volume) of at least :data:`MPPCA_MIN_FRAMES`
    frames: it finds the noise in how the frames vary together."""
    if method not in SERIES_ONLY_METHODS:
        return
    if frames is None:
        raise ValueError(
            f"method '{method}' (local PCA across frames) denoises 4D series only; this input is one 3D volume: "
            f"use another method (the default for one volume is {VOLUME_DEFAULT_METHOD})"
        )
    if frames < MPPCA_MIN_FRAMES:
        raise ValueError(
            f"method '{method}' needs at least {MPPCA_MIN_FRAMES} frames to tell noise from signal (the "
            f"Marchenko–Pastur fit of each patch's eigenvalues); this series has {frames}: choose a network method "
            f"(e.g. {VOLUME_DEFAULT_METHOD} or blindspot), which denoises frame by frame"
        )


def check_saves_model(method: str) -> None:
    """Only a method that trains a network has a model to save."""
    if method in SERIES_ONLY_METHODS:
        raise ValueError(
            f"method '{method}' trains no network, so there is no model to save: leave out --save-model "
            "(save_model_path), or choose a network method to train one"
        )


def check_series_settings(method: str, default_series_settings: bool, test_time_augmentation: bool = False) -> None:
    """The local PCA's patch settings (``series.*``) are refused for the methods that do not use them,
    and test-time augmentation (a network's) for MP-PCA."""
    if method in SERIES_ONLY_METHODS and test_time_augmentation:
        raise ValueError(
            f"method '{method}' has no test-time augmentation, so no uncertainty output either: turn prediction.tta "
            "off (leave out --tta), or choose a network method"
        )
    if method not in SERIES_ONLY_METHODS and not default_series_settings:
        raise ValueError(
            f"the series.* settings (patch radius, stride, Wiener pass) apply to method mppca only; method '{method}' "
            "is a network: leave them at their defaults"
        )
