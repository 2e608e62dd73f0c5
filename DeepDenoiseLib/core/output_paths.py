"""The one check of the paths a run will write, made before any work starts.

Every command (denoise, apply, n2n, supervised, superres) and the Slicer worker check all their
output paths here, before reading the input or training, so that a run never trains for minutes and
then fails at the write: each path must name a file (not a folder) of a supported type, in a folder
that exists and can be written to; no two outputs may share a path; and no output may be an input
unless the caller allows it (``force``, ``--force``), since it would replace the input.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional, Union

from DeepDenoiseLib.core.validation import InputError

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions volumes are written as: single-file formats only, so a write can be atomic.
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".mha")
#: The extension of saved models (model_record.MODEL_EXTENSION, repeated to keep this module light).
MODEL_EXTENSIONS = (".safetensors",)


def matching_extension(path: PathLike, allowed: Sequence[str]) -> Optional[str]:
    """The longest of ``allowed`` that ``path``'s name ends with (case-insensitively), or None."""
    name = Path(path).name.lower()
    return next((e for e in sorted(allowed, key=len, reverse=True) if name.endswith(e)), None)


def check_output_paths(
    outputs: Mapping[str, Optional[PathLike]],
    inputs: Sequence[PathLike] = (),
    force: bool = False,
    models: Optional[Mapping[str, Optional[PathLike]]] = None,
) -> dict[str, Path]:
    """Refuses (InputError) output paths a run could not write, or should not.

    ``outputs`` maps a role the user knows (``"output"``, ``"residual (--residual)"``) to a volume
    path (None: not asked for); ``models`` the same for model files. Returns the given paths by role,
    with ``~`` expanded. ``force`` allows an output to be an input (it will replace it).
    """
    checked: dict[str, Path] = {}
    for role, path in outputs.items():
        if path is not None:
            checked[role] = _check_one(role, Path(path).expanduser(), VOLUME_EXTENSIONS)
    for role, path in (models or {}).items():
        if path is not None:
            checked[role] = _check_one(role, Path(path).expanduser(), MODEL_EXTENSIONS)
    roles = list(checked)
    for index, role in enumerate(roles):
        for other in roles[index + 1 :]:
            if _same_file(checked[role], checked[other]):
                raise InputError(
                    f"the {role} and the {other} are the same file '{checked[role]}': one would overwrite the "
                    "other; give each output its own path"
                )
    for role, path in checked.items():
        for source in inputs:
            if _same_file(path, Path(source).expanduser()) and not force:
                raise InputError(
                    f"the {role} '{path}' is the input file: writing it would replace the input. Give another "
                    "path, or pass --force (force=True in Python) to overwrite the input when the run succeeds"
                )
    return checked


def _check_one(role: str, path: Path, extensions: Sequence[str]) -> Path:
    if path.is_dir():
        raise InputError(f"the {role} '{path}' is a folder; give a file name in it ending in {', '.join(extensions)}")
    if matching_extension(path, extensions) is None:
        raise InputError(f"cannot write the {role} '{path.name}': unsupported file type; use one of {', '.join(extensions)}")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist; create it first"
        raise InputError(f"the folder of the {role}, '{folder}', {what}")
    _check_writable(role, folder)
    return path


def _check_writable(role: str, folder: Path) -> None:
    """Creates and removes a hidden file in ``folder``: the one test that answers for permissions,
    access control lists and read-only file systems alike."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".deepdenoise-write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"cannot write the {role} in the folder '{folder}' ({reason}); choose a folder you can write to") from error


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same path once resolved (symbolic links, ``..``), or,
    for files that exist, the same file on disk (hard links, case-insensitive file systems)."""
    if first.resolve() == second.resolve():
        return True
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False
