"""What every run on files does around its work: check the outputs and the inputs' sizes before reading
anything, read an input with progress, write all outputs or none, and say that it is done.

>>> check_outputs(["in.nii.gz"], "out.nii.gz", residual_path="residual.nii.gz")
>>> volume = load_volume("in.nii.gz", progress)
>>> summary = write_outputs_and_finish([(denoised, "out.nii.gz")], summary, progress)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from DeepDenoiseLib.core.atomic_write import FileWriter, write_files
from DeepDenoiseLib.core.output_paths import check_output_paths
from DeepDenoiseLib.core.progress import ProgressCallback, ProgressEvent, report
from DeepDenoiseLib.core.sheared_nifti import check_grid_writable
from DeepDenoiseLib.core.validation import check_voxel_count
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.core.volume_io import read_header, read_volume, volume_writer

PathLike = Union[str, "os.PathLike[str]"]


def check_outputs(
    input_paths: Union[PathLike, Sequence[PathLike]],
    output_path: Optional[PathLike],
    residual_path: Optional[PathLike] = None,
    uncertainty_path: Optional[PathLike] = None,
    force: bool = False,
    save_model_path: Optional[PathLike] = None,
) -> None:
    """The checks every file run makes before it reads anything: the output paths (output_paths.py)
    against each other and the inputs, then each input's size from its header (volume_io.read_header,
    validation.check_voxel_count), so that a volume too large is refused without reading its voxels."""
    inputs = [input_paths] if isinstance(input_paths, (str, os.PathLike)) else list(input_paths)
    check_output_paths(
        {"output": output_path, "residual (--residual)": residual_path, "uncertainty (--uncertainty)": uncertainty_path},
        inputs=inputs,
        force=force,
        models={"saved model (--save-model)": save_model_path},
    )
    for path in inputs:
        check_voxel_count(read_header(path), what=f"'{Path(path).name}'")


def load_volume(
    path: PathLike, progress: Optional[ProgressCallback], allow_4d: bool = True, outputs: Sequence[Optional[PathLike]] = ()
) -> Volume:
    """The volume (or, with ``allow_4d``, a 4D series) at ``path``, with a ``loading`` event before
    and after that names its size. ``outputs``: the paths that will take its grid, refused now when
    they cannot keep it (sheared_nifti.check_grid_writable: a sheared grid is NIfTI's alone)."""
    report(progress, ProgressEvent("loading", 0.0, message=str(path)))
    volume = read_volume(path, allow_4d=allow_4d)
    check_grid_writable(volume, outputs)
    frames = f", {volume.array.shape[0]} frames" if volume.is_4d else ""
    report(progress, ProgressEvent("loading", 1.0, message="x".join(map(str, volume.array.shape[-3:][::-1])) + frames))
    return volume


def write_outputs(
    outputs: Sequence[tuple[Volume, PathLike]],
    progress: Optional[ProgressCallback] = None,
    other_files: Optional[Sequence[tuple[Path, FileWriter]]] = None,
) -> list[Path]:
    """Writes each volume to its path, then ``other_files`` (paths and writers: a saved model), all
    or none (atomic_write.write_files): if any write fails or the run is interrupted, every path is
    left as it was, files that were there before included. Returns the paths, in order. Once they
    are all in place, an interrupt no longer cancels the command (interrupts.py)."""
    files = [volume_writer(volume, path) for volume, path in outputs] + list(other_files or [])

    def on_file(index: int, path: Path) -> None:
        report(progress, ProgressEvent("writing", index / len(files), message=str(path)))

    written = write_files(files, on_file, final=True)
    report(progress, ProgressEvent("writing", 1.0, message="done"))
    return written


def write_outputs_and_finish(
    outputs: Sequence[tuple[Volume, PathLike]],
    summary: dict[str, Any],
    progress: Optional[ProgressCallback] = None,
    other_files: Optional[Sequence[tuple[Path, FileWriter]]] = None,
) -> dict[str, Any]:
    """:func:`write_outputs`, then the ``done`` event; returns ``summary`` with the ``output`` written
    (and the ``saved_model``, the last of ``other_files``, if any)."""
    written = write_outputs(outputs, progress, other_files)
    summary = dict(summary, output=str(written[0]))
    if other_files:
        summary["saved_model"] = str(written[-1])
    report(progress, ProgressEvent("done", 1.0, message="finished", summary=summary))
    return summary
