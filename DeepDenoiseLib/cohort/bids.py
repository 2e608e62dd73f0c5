"""BIDS datasets: finding the images of ``sub-*/[ses-*/]{anat,func,dwi,pet}/``, reading their entities
with a strict pattern, naming their derivatives, and the derivative dataset's description.

Names follow the BIDS specification: ``sub-<label>[_<key>-<label>...]_<suffix>.nii[.gz]``, labels
alphanumeric, keys lower-case letters. A derivative keeps the source's folders and entities and adds
``desc-<label>`` just before the suffix (``desc`` is the last entity in BIDS' order):
``sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz`` becomes ``sub-01/ses-1/anat/sub-01_ses-1_desc-denoised_T1w.nii.gz``.
A name the pattern refuses is passed over, so no crafted file name can steer an output anywhere else.

>>> parse_bids_name("sub-01_ses-1_acq-fast_T1w.nii.gz").derivative_name("denoised")
'sub-01_ses-1_acq-fast_desc-denoised_T1w.nii.gz'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from DeepDenoiseLib.cohort.scans import FoundScans, Scan, is_inside, matches, unique_scans
from DeepDenoiseLib.core.validation import InputError

#: The BIDS data types whose images are denoised.
DATATYPES = ("anat", "func", "dwi", "pet")
#: The BIDS version the derivative dataset's description names.
BIDS_VERSION = "1.10.0"
_LABEL = "[a-zA-Z0-9]+"
_ENTITY = re.compile(rf"^(?P<key>[a-z]+)-(?P<label>{_LABEL})$")
_NAME = re.compile(rf"^(?P<entities>sub-{_LABEL}(?:_[a-z]+-{_LABEL})*)_(?P<suffix>[a-zA-Z0-9]+)(?P<extension>\.nii(?:\.gz)?)$")
_FOLDER = {"sub": re.compile(rf"^sub-(?P<label>{_LABEL})$"), "ses": re.compile(rf"^ses-(?P<label>{_LABEL})$")}


@dataclass(frozen=True)
class BidsName:
    """A BIDS file name taken apart: its ``entities`` in order (key, label), ``suffix`` and ``extension``."""

    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str

    def entity(self, key: str) -> Optional[str]:
        return dict(self.entities).get(key)

    def derivative_name(self, description: str, extension: Optional[str] = None) -> str:
        """The name of a derivative described by ``description`` (``denoised``, ``residual``): the
        same entities with ``desc-<description>`` before the suffix; a ``desc`` of the source's own
        stays in front of it (``desc-preproc`` becomes ``desc-preprocDenoised``)."""
        own = self.entity("desc")
        label = description if own is None else own + description[:1].upper() + description[1:]
        entities = [f"{key}-{value}" for key, value in self.entities if key != "desc"] + [f"desc-{label}"]
        return "_".join(entities) + f"_{self.suffix}{extension or self.extension}"


def parse_bids_name(name: str) -> Optional[BidsName]:
    """The BIDS name ``name`` taken apart, or None when it is not one (the pattern is strict: no
    character outside the specification's, no entity twice)."""
    match = _NAME.match(name)
    if match is None:
        return None
    entities = []
    for part in match.group("entities").split("_"):
        entity = _ENTITY.match(part)
        if entity is None:
            return None
        entities.append((entity.group("key"), entity.group("label")))
    keys = [key for key, _ in entities]
    if len(set(keys)) != len(keys):
        return None
    return BidsName(tuple(entities), match.group("suffix"), match.group("extension"))


def find_bids_scans(root: Path, pattern: Optional[str] = None, skip: Optional[Path] = None) -> FoundScans:
    """The NIfTI images of the BIDS dataset at ``root``: ``sub-*/[ses-*/]<datatype>/*.nii[.gz]`` for the
    datatypes of :data:`DATATYPES`, each with its path relative to ``root``, filtered by ``pattern``
    (as in scans.py). Images whose names are not BIDS names, or whose subject or session is not the
    folder's, are passed over and listed in ``passed_over``."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise InputError(f"--bids takes the root folder of a BIDS dataset; '{root}' is not a folder")
    found, passed_over = [], []
    for subject_folder in _labelled_folders(root, "sub"):
        sessions = [(None, subject_folder)] + [(folder, folder) for folder in _labelled_folders(subject_folder, "ses")]
        for session_folder, folder in sessions:
            for datatype in DATATYPES:
                for path in sorted((folder / datatype).glob("*.nii*")) if (folder / datatype).is_dir() else []:
                    if path.name.startswith(".") or not path.is_file() or is_inside(path, skip):
                        continue
                    problem = _name_problem(path.name, subject_folder, session_folder)
                    relative = PurePosixPath(path.relative_to(root).as_posix())
                    if problem is not None:
                        passed_over.append(f"'{relative}': {problem}")
                    elif matches(relative, pattern):
                        found.append(Scan(path, relative))
    return FoundScans(unique_scans(found), passed_over)


def dataset_description(source_root: Path, version: str) -> dict[str, Any]:
    """The ``dataset_description.json`` of the derivative dataset made from ``source_root``."""
    return {
        "Name": f"DeepDenoise outputs of {Path(source_root).name}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "DeepDenoise", "Version": version, "Description": "deepdenoise batch --bids"}],
        "SourceDatasets": [{"URL": Path(source_root).absolute().as_uri()}],
    }


def _labelled_folders(parent: Path, key: str) -> list[Path]:
    return sorted(path for path in parent.iterdir() if path.is_dir() and _FOLDER[key].match(path.name))


def _name_problem(name: str, subject_folder: Path, session_folder: Optional[Path]) -> Optional[str]:
    parsed = parse_bids_name(name)
    if parsed is None:
        return "not a BIDS file name (sub-<label>[_<key>-<label>...]_<suffix>.nii[.gz], labels of letters and digits)"
    if f"sub-{parsed.entity('sub')}" != subject_folder.name:
        return f"its subject is not that of its folder {subject_folder.name}"
    session = parsed.entity("ses")
    if (session_folder is None) != (session is None) or (session_folder is not None and f"ses-{session}" != session_folder.name):
        return "its session entity does not match its folder"
    return None
