"""The rules that tie one denoising setting to another, each in one function that the configuration,
the command line, the Python API and the Slicer panel all call, each in its own words."""

from __future__ import annotations


def check_uncertainty_request(wanted: bool, test_time_augmentation: bool, turn_on: str, leave_out: str) -> None:
    """An uncertainty output is the per-voxel spread across test-time augmentations, so asking for one
    needs them on: ``turn_on`` says where to switch them on, ``leave_out`` how to drop the output."""
    if wanted and not test_time_augmentation:
        raise ValueError(
            f"the uncertainty output is the spread across test-time augmentations: turn test-time augmentation on "
            f"({turn_on}), or {leave_out}"
        )
