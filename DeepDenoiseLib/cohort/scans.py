"""The scans of a cohort: the volume files and DICOM series folders found in the inputs of ``deepdenoise
batch`` (files, and folders searched with an optional pattern), each with the path it was found at
relative to its input folder, which names its outputs (outputs.py). BIDS datasets are bids.py's.

>>> found = find_scans([Path("study"), Path("extra/scan.nrrd")], pattern="*_T1w.nii.gz", skip=Path("out"))
>>> [str(scan.relative) for scan in found.scans]  # the file given keeps its name; the folder's are relative to it
['scan.nrrd', 'site1/a_T1w.nii.gz', 'site2/b_T1w.nii.gz']
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

from DeepDenoiseLib.core.file_checks import EXTENSION_FORMATS
from DeepDenoiseLib.core.output_paths import matching_extension
from DeepDenoiseLib.core.validation import InputError

#: The volume files a folder search takes (a folder holding DICOM files is a series of its own).
VOLUME_FILE_EXTENSIONS = tuple(EXTENSION_FORMATS)


@dataclass(frozen=True)
class Scan:
    """One scan: ``source`` is a volume file or a folder holding a DICOM series (absolute);
    ``relative`` is where it was found, relative to the folder searched (a file given on its own: its
    name); ``dicom_folder`` says whether ``source`` is a DICOM folder."""

    source: Path
    relative: PurePosixPath
    dicom_folder: bool = False


@dataclass
class FoundScans:
    """The scans found, sorted by source path, and what was passed over (one sentence each)."""

    scans: list[Scan]
    passed_over: list[str] = field(default_factory=list)


def find_scans(inputs: Sequence[Path], pattern: Optional[str] = None, skip: Optional[Path] = None) -> FoundScans:
    """The scans in ``inputs``: each file given (a volume file), and in each folder given every volume
    file and every folder holding DICOM files, at any depth, whose path relative to that folder
    matches ``pattern`` (shell-style, ``*`` also crosses ``/``; None: all). Hidden files and folders
    and anything inside ``skip`` (the output folder) are passed over; a scan found twice counts once.
    Raises :class:`InputError` for an input that does not exist or a file of an unsupported type."""
    scans: list[Scan] = []
    for given in inputs:
        path = Path(given).expanduser().absolute()
        if not path.exists():
            raise InputError(f"no file or folder at '{given}'")
        if path.is_dir():
            scans += _search_folder(path, pattern, skip)
        elif matching_extension(path, VOLUME_FILE_EXTENSIONS) is None:
            raise InputError(
                f"cannot denoise '{path.name}': unsupported file type; give files ending in {', '.join(VOLUME_FILE_EXTENSIONS)}, "
                "or folders to search"
            )
        else:
            scans.append(Scan(path, PurePosixPath(path.name)))
    return FoundScans(unique_scans(scans))


def unique_scans(scans: Iterable[Scan]) -> list[Scan]:
    """``scans`` sorted by source path, each source once (the first way it was found)."""
    seen: dict[Path, Scan] = {}
    for scan in scans:
        seen.setdefault(scan.source.resolve(), scan)
    return sorted(seen.values(), key=lambda scan: str(scan.source))


def matches(relative: PurePosixPath, pattern: Optional[str]) -> bool:
    """Whether the relative path matches the shell-style ``pattern`` (None matches everything)."""
    return pattern is None or fnmatch.fnmatchcase(relative.as_posix(), pattern)


def is_inside(path: Path, folder: Optional[Path]) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved); False without a folder."""
    if folder is None:
        return False
    resolved, top = path.resolve(), folder.resolve()
    return resolved == top or top in resolved.parents


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file: the ``DICM`` marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as stream:
            return stream.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _search_folder(top: Path, pattern: Optional[str], skip: Optional[Path]) -> list[Scan]:
    found = []
    for folder, folder_names, file_names in os.walk(top, followlinks=False):
        here = Path(folder)
        folder_names[:] = sorted(name for name in folder_names if not name.startswith(".") and not is_inside(here / name, skip))
        if is_inside(here, skip):
            continue
        files = sorted(here / name for name in file_names if not name.startswith("."))
        relative_folder = PurePosixPath(here.relative_to(top).as_posix())
        volumes = {path for path in files if matching_extension(path, VOLUME_FILE_EXTENSIONS) is not None}
        for path in sorted(volumes):
            relative = relative_folder / path.name
            if matches(relative, pattern):
                found.append(Scan(path, relative))
        others = (path for path in files if path not in volumes)
        if any(is_dicom_file(path) for path in others):
            relative = PurePosixPath(top.name) if here == top else relative_folder
            if matches(relative, pattern):
                found.append(Scan(here, relative, dicom_folder=True))
    return found
