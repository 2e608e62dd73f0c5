"""The rules that tie one denoising setting to another, each in one function that the configuration,
the command line, the Python API and the Slicer panel all call, each in its own words.

- Blind-spot N2V is 2D (:func:`check_dimensions`).
- The paired methods mask nothing, and the settings of one family of methods are refused in the
  other (:func:`check_method_settings`); the panel leaves a setting out for the methods that do not
  take it (:data:`METHODS_TAKING`) and locks it for those it changes nothing for (:data:`METHODS_USING`).
- structN2V needs the axis of its line mask (:func:`check_struct_axis`).
- An uncertainty output needs test-time augmentation (:func:`check_uncertainty_request`).
"""

from __future__ import annotations

from typing import Callable, Optional

METHODS = ("blindspot", "n2v", "n2v2", "structn2v", "noise2noise", "supervised")
#: Methods that learn from pairs of volumes (an input and its target) rather than from one noisy volume.
PAIRED_METHODS = ("noise2noise", "supervised")
#: Methods whose network is 2D only (3D context comes from neighbouring slices as channels).
METHODS_2D_ONLY = ("blindspot",)
#: Methods that learn from one noisy volume; of these, those that hide voxels by masking (the
#: blind-spot network, like the paired methods, masks nothing).
SINGLE_VOLUME_METHODS = tuple(method for method in METHODS if method not in PAIRED_METHODS)
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
    if not paired and architecture != "unet":
        raise ValueError(f"model.architecture '{architecture}' needs targets to learn from: use it with method noise2noise or supervised")
    if not paired and loss != "l2":
        raise ValueError(f"training.loss '{loss}' applies to methods noise2noise and supervised; method '{method}' has its own loss")
    if adversarial_weight > 0 and method != "supervised":
        raise ValueError(
            "the adversarial loss teaches the network what clean volumes look like, so it needs clean "
            "targets: use training.adversarial_weight with method supervised only (0 turns it off)"
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
