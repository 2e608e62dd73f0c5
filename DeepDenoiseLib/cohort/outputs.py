"""Where each scan's outputs go, and the checks made on all of them before any work starts.

A scan's denoised volume goes to the output folder at the scan's relative path (scans.py), in the
same format where it can be written (``.nhdr`` becomes ``.nrrd``, ``.mhd`` ``.mha``, a DICOM folder
``.nii.gz``); its residual and uncertainty go beside it with ``_residual`` and ``_uncertainty`` after
the name. In a BIDS derivative dataset the three are ``desc-denoised``, ``desc-residual`` and
``desc-uncertainty`` (bids.py).

Before any work: every output must lie inside the output folder (resolved: no ``..``, no symbolic
link out of it), no two outputs may share a path and no output may be another scan's input; then the
folders are made and every scan's outputs pass the checks of every run (core/output_paths.py).

>>> plans = plan_outputs(found.scans, Path("out"), bids=False, residual=True, uncertainty=False)
>>> prepare_output_folders(found.scans, plans, Path("out"), force=False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from DeepDenoiseLib.cohort.bids import parse_bids_name
from DeepDenoiseLib.cohort.scans import VOLUME_FILE_EXTENSIONS, Scan, is_inside
from DeepDenoiseLib.core.output_paths import check_output_paths, matching_extension
from DeepDenoiseLib.core.validation import InputError

#: The extension a scan's outputs take, by the extension of its source (the others keep theirs).
WRITTEN_AS = {".nhdr": ".nrrd", ".mhd": ".mha"}
#: What a DICOM series folder's outputs are written as.
DICOM_OUTPUT_EXTENSION = ".nii.gz"


@dataclass(frozen=True)
class ScanOutputs:
    """The files one scan writes: the denoised ``output``, and its ``residual`` and ``uncertainty``
    when asked for."""

    output: Path
    residual: Optional[Path] = None
    uncertainty: Optional[Path] = None

    @property
    def paths(self) -> list[Path]:
        return [path for path in (self.output, self.residual, self.uncertainty) if path is not None]


def plan_outputs(scans: Sequence[Scan], output_dir: Path, bids: bool, residual: bool, uncertainty: bool) -> list[ScanOutputs]:
    """Each scan's outputs in ``output_dir`` (in the order of ``scans``); refuses (InputError) an
    output outside ``output_dir``, two outputs on one path, and an output on any scan's input."""
    output_dir = Path(output_dir).expanduser().absolute()
    plans = [_plan(scan, output_dir, bids, residual, uncertainty) for scan in scans]
    inputs = {scan.source.resolve(): scan for scan in scans}
    outputs: dict[Path, Scan] = {}
    for scan, plan in zip(scans, plans):
        for path in plan.paths:
            resolved = path.resolve()
            if not is_inside(path, output_dir) or resolved == output_dir.resolve():
                raise InputError(f"the output '{path}' of '{scan.source}' would lie outside the output folder '{output_dir}'")
            other = outputs.setdefault(resolved, scan)
            if other is not scan:
                raise InputError(
                    f"'{other.source}' and '{scan.source}' would both be written to '{path}': rename one, or denoise them "
                    "into different output folders"
                )
            source = inputs.get(resolved)
            if source is not None and source is not scan:
                raise InputError(
                    f"the output '{path}' of '{scan.source}' is the input of another scan: choose an output folder apart from the inputs"
                )
    return plans


def prepare_output_folders(
    scans: Sequence[Scan],
    plans: Sequence[ScanOutputs],
    output_dir: Path,
    force: bool,
    model_path: Optional[Path] = None,
) -> None:
    """Makes the output folder and every folder the outputs need, then checks each scan's outputs as
    every run does (a folder that can be written to, a supported extension, not the scan's input
    unless ``force``), and ``model_path`` as a model file. On a refusal the folders made here are
    removed again."""
    made: list[Path] = []
    try:
        for folder in sorted({Path(output_dir).expanduser().absolute(), *(path.parent for plan in plans for path in plan.paths)}):
            made += _make_folder(folder)
        for scan, plan in zip(scans, plans):
            roles = {f"output of '{scan.relative}'": plan.output, f"residual of '{scan.relative}'": plan.residual}
            roles[f"uncertainty of '{scan.relative}'"] = plan.uncertainty
            check_output_paths(roles, inputs=[scan.source], force=force)
        if model_path is not None:
            check_output_paths({}, models={"shared model": model_path})
    except BaseException:
        for folder in sorted(made, key=lambda path: len(path.parts), reverse=True):
            _remove_empty(folder)
        raise


def output_extension(scan: Scan) -> str:
    """The extension ``scan``'s outputs are written with."""
    if scan.dicom_folder:
        return DICOM_OUTPUT_EXTENSION
    extension = matching_extension(scan.source, VOLUME_FILE_EXTENSIONS)
    if extension is None:
        raise InputError(f"cannot name the output of '{scan.source}': unsupported file type")
    return WRITTEN_AS.get(extension, extension)


def _plan(scan: Scan, output_dir: Path, bids: bool, residual: bool, uncertainty: bool) -> ScanOutputs:
    extension = output_extension(scan)
    if bids:
        name = parse_bids_name(scan.relative.name)
        if name is None:
            raise InputError(f"'{scan.relative}' is not a BIDS file name")
        folder = output_dir / PurePosixPath(scan.relative.parent)

        def named(description: str) -> Path:
            return folder / name.derivative_name(description, extension)
    else:
        name_extension = "" if scan.dicom_folder else matching_extension(scan.relative.name, VOLUME_FILE_EXTENSIONS) or ""
        stem = scan.relative.name[: len(scan.relative.name) - len(name_extension)]
        base = output_dir / PurePosixPath(scan.relative.parent)

        def named(description: str) -> Path:
            suffix = "" if description == "denoised" else f"_{description}"
            return base / f"{stem}{suffix}{extension}"

    return ScanOutputs(
        named("denoised"),
        named("residual") if residual else None,
        named("uncertainty") if uncertainty else None,
    )


def _make_folder(folder: Path) -> list[Path]:
    """Makes ``folder`` and its missing parents; the folders made, outermost first."""
    missing = [path for path in [folder, *folder.parents] if not path.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot make the output folder '{folder}' ({error.strerror or type(error).__name__})") from error
    return missing


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
