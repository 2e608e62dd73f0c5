"""Finding a cohort's scans (DeepDenoiseLib.cohort.scans, .bids): files and folders with a pattern,
DICOM series folders, BIDS datasets with their entities kept, and names the strict pattern passes over."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from DeepDenoiseLib.cohort.bids import dataset_description, find_bids_scans, parse_bids_name
from DeepDenoiseLib.cohort.scans import find_scans
from DeepDenoiseLib.core.validation import InputError


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def dicom_file(path: Path) -> Path:
    return touch(path, b"\0" * 128 + b"DICM" + b"\0" * 16)


def test_a_folder_yields_every_volume_file_and_dicom_series_folder_sorted_and_relative(tmp_path) -> None:
    for name in ("b.nii.gz", "a.nrrd", "x/c.mha", "x/c.raw", "x/notes.txt", ".hidden/e.nii", "x/.f.nii", "out/old.nii.gz"):
        touch(tmp_path / "study" / name)
    dicom_file(tmp_path / "study" / "p1" / "series3" / "IM0001")
    given = touch(tmp_path / "elsewhere" / "g.nhdr")
    found = find_scans([tmp_path / "study", given, tmp_path / "study" / "a.nrrd"], skip=tmp_path / "study" / "out")
    assert [str(scan.relative) for scan in found.scans] == ["g.nhdr", "a.nrrd", "b.nii.gz", "p1/series3", "x/c.mha"]
    assert [scan.dicom_folder for scan in found.scans] == [False, False, False, True, False]
    assert all(scan.source.is_absolute() for scan in found.scans)


def test_a_pattern_selects_by_the_path_relative_to_the_folder(tmp_path) -> None:
    for name in ("s1/sub-01_T1w.nii.gz", "s1/sub-01_T2w.nii.gz", "s2/sub-02_T1w.nii.gz"):
        touch(tmp_path / name)
    assert [str(s.relative) for s in find_scans([tmp_path], pattern="*_T1w.nii.gz").scans] == [
        "s1/sub-01_T1w.nii.gz",
        "s2/sub-02_T1w.nii.gz",
    ]
    assert [str(s.relative) for s in find_scans([tmp_path], pattern="s2/*").scans] == ["s2/sub-02_T1w.nii.gz"]


def test_a_folder_that_is_itself_a_dicom_series_is_one_scan_named_after_it(tmp_path) -> None:
    dicom_file(tmp_path / "series7" / "1.dcm")
    (scan,) = find_scans([tmp_path / "series7"]).scans
    assert scan.dicom_folder and scan.relative == PurePosixPath("series7")


@pytest.mark.parametrize("problem", ["missing", "unsupported"])
def test_an_input_that_is_missing_or_of_an_unsupported_type_is_refused(tmp_path, problem) -> None:
    path = tmp_path / "scan.nii.gz" if problem == "missing" else touch(tmp_path / "scan.png")
    with pytest.raises(InputError, match="no file or folder" if problem == "missing" else "unsupported file type"):
        find_scans([path])


def test_bids_names_are_taken_apart_and_given_a_description_before_the_suffix() -> None:
    name = parse_bids_name("sub-01_ses-1_acq-fast_run-2_T1w.nii.gz")
    assert name is not None and name.entity("acq") == "fast" and name.suffix == "T1w" and name.extension == ".nii.gz"
    assert name.derivative_name("denoised") == "sub-01_ses-1_acq-fast_run-2_desc-denoised_T1w.nii.gz"
    assert name.derivative_name("residual", ".nii") == "sub-01_ses-1_acq-fast_run-2_desc-residual_T1w.nii"
    own = parse_bids_name("sub-01_desc-preproc_bold.nii")
    assert own is not None and own.derivative_name("denoised") == "sub-01_desc-preprocDenoised_bold.nii"


@pytest.mark.parametrize(
    "name",
    ["sub-01_acq-a..b_T1w.nii.gz", "sub-01_T1w.nii.gz.json", "ses-1_T1w.nii.gz", "sub-01_sub-02_T1w.nii.gz", "sub-0/1_T1w.nii",
     "sub-01_acq-_T1w.nii", "sub-01_ACQ-x_T1w.nii", "sub-01__T1w.nii", "sub-01_T1w.nii.gz/../../x.nii"],
)  # fmt: skip
def test_names_outside_the_bids_pattern_are_not_taken(name) -> None:
    assert parse_bids_name(name) is None


def test_a_bids_dataset_yields_its_images_and_passes_over_the_rest_saying_why(tmp_path) -> None:
    root = tmp_path / "ds"
    touch(root / "dataset_description.json", b"{}")
    touch(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    touch(root / "sub-01" / "anat" / "sub-01_T1w.json")
    touch(root / "sub-01" / "anat" / "sub-01_acq-x..y_T1w.nii.gz")
    touch(root / "sub-02" / "ses-1" / "func" / "sub-02_ses-1_task-rest_bold.nii")
    touch(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-2_T1w.nii.gz")
    touch(root / "sub-03" / "anat" / "sub-01_T1w.nii.gz")
    touch(root / "sub-03" / "fmap" / "sub-03_phasediff.nii.gz")
    touch(root / "derivatives" / "x" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    touch(root / "sourcedata" / "sub-01_T1w.nii.gz")
    found = find_bids_scans(root)
    assert [str(scan.relative) for scan in found.scans] == [
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.nii",
    ]
    passed = "\n".join(found.passed_over)
    assert len(found.passed_over) == 3
    assert "sub-01_acq-x..y_T1w.nii.gz': not a BIDS file name" in passed
    assert "sub-02_ses-2_T1w.nii.gz': its session" in passed and "sub-03/anat/sub-01_T1w.nii.gz': its subject" in passed
    assert [str(s.relative) for s in find_bids_scans(root, pattern="*_bold.nii").scans] == [
        "sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.nii"
    ]


def test_the_derivative_dataset_description_says_what_made_it_from_what(tmp_path) -> None:
    description = dataset_description(tmp_path / "ds", "9.9")
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["GeneratedBy"][0]["Name"] == "DeepDenoise" and description["GeneratedBy"][0]["Version"] == "9.9"
    assert description["SourceDatasets"] == [{"URL": (tmp_path / "ds").as_uri()}]
