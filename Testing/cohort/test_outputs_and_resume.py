"""Planning a cohort's outputs (DeepDenoiseLib.cohort.outputs) and what --resume skips (.resume): names
beside each other, inside the output folder only, no two scans on one output, every path checked
before any work, and the folders made for a refused cohort removed again."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from DeepDenoiseLib.cohort.outputs import ScanOutputs, plan_outputs, prepare_output_folders
from DeepDenoiseLib.cohort.report import ScanRow, read_report_rows
from DeepDenoiseLib.cohort.resume import scans_to_skip
from DeepDenoiseLib.cohort.scans import Scan
from DeepDenoiseLib.core.validation import InputError


def scan(tmp_path: Path, relative: str, dicom: bool = False) -> Scan:
    return Scan(tmp_path / "in" / relative, PurePosixPath(relative), dicom)


def test_outputs_keep_the_relative_path_and_take_a_writable_format_with_suffixes_beside_them(tmp_path) -> None:
    scans = [scan(tmp_path, "a.nii.gz"), scan(tmp_path, "x/b.nhdr"), scan(tmp_path, "p1/series3", dicom=True), scan(tmp_path, "c.mhd")]
    plans = plan_outputs(scans, tmp_path / "out", bids=False, residual=True, uncertainty=True)
    out = tmp_path / "out"
    assert plans[0] == ScanOutputs(out / "a.nii.gz", out / "a_residual.nii.gz", out / "a_uncertainty.nii.gz")
    assert plans[1].output == out / "x" / "b.nrrd" and plans[1].residual == out / "x" / "b_residual.nrrd"
    assert plans[2].output == out / "p1" / "series3.nii.gz" and plans[3].output == out / "c.mha"
    assert plan_outputs(scans[:1], out, bids=False, residual=False, uncertainty=False)[0].paths == [out / "a.nii.gz"]


def test_bids_outputs_are_derivatives_with_the_entities_and_folders_of_their_source(tmp_path) -> None:
    source = scan(tmp_path, "sub-01/ses-2/anat/sub-01_ses-2_run-1_T1w.nii.gz")
    (plan,) = plan_outputs([source], tmp_path / "d", bids=True, residual=True, uncertainty=False)
    folder = tmp_path / "d" / "sub-01" / "ses-2" / "anat"
    assert plan.output == folder / "sub-01_ses-2_run-1_desc-denoised_T1w.nii.gz"
    assert plan.residual == folder / "sub-01_ses-2_run-1_desc-residual_T1w.nii.gz" and plan.uncertainty is None


def test_two_scans_on_one_output_are_refused_before_anything_is_made(tmp_path) -> None:
    scans = [scan(tmp_path, "a.nhdr"), scan(tmp_path, "a.nrrd")]
    with pytest.raises(InputError, match="would both be written to"):
        plan_outputs(scans, tmp_path / "out", bids=False, residual=False, uncertainty=False)
    clash = [scan(tmp_path, "a.nii.gz"), scan(tmp_path, "a_residual.nii.gz")]
    with pytest.raises(InputError, match="would both be written to"):
        plan_outputs(clash, tmp_path / "out", bids=False, residual=True, uncertainty=False)
    assert not (tmp_path / "out").exists()


def test_an_output_on_another_scans_input_is_refused(tmp_path) -> None:
    scans = [scan(tmp_path, "a.nhdr"), Scan(tmp_path / "in" / "a.nrrd", PurePosixPath("other/a.nrrd"))]
    with pytest.raises(InputError, match="is the input of another scan"):
        plan_outputs(scans, tmp_path / "in", bids=False, residual=False, uncertainty=False)


def test_an_output_that_would_leave_the_output_folder_is_refused(tmp_path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InputError, match="outside the output folder"):
        plan_outputs([scan(tmp_path, "x/a.nii")], tmp_path / "out", bids=False, residual=False, uncertainty=False)
    with pytest.raises(InputError, match="outside the output folder"):
        plan_outputs([Scan(tmp_path / "a.nii", PurePosixPath("../a.nii"))], tmp_path / "out", bids=False, residual=False, uncertainty=False)


def test_the_folders_are_made_and_a_refused_output_removes_them_again(tmp_path) -> None:
    scans = [scan(tmp_path, "s/a.nii.gz"), scan(tmp_path, "t/b.nii.gz")]
    plans = plan_outputs(scans, tmp_path / "out", bids=False, residual=False, uncertainty=False)
    prepare_output_folders(scans, plans, tmp_path / "out", force=False)
    assert (tmp_path / "out" / "s").is_dir() and (tmp_path / "out" / "t").is_dir()
    (tmp_path / "out2" / "t").mkdir(parents=True)
    (tmp_path / "out2" / "t" / "b.nii.gz").mkdir()  # a folder where an output should go
    plans = plan_outputs(scans, tmp_path / "out2", bids=False, residual=False, uncertainty=False)
    with pytest.raises(InputError, match="is a folder"):
        prepare_output_folders(scans, plans, tmp_path / "out2", force=False)
    assert sorted(path.name for path in (tmp_path / "out2").iterdir()) == ["t"]


def test_resume_skips_a_scan_with_every_output_unless_its_earlier_row_failed(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    plans = [ScanOutputs(out / f"{name}.nii", out / f"{name}_residual.nii") for name in "abcd"]
    for name in "abc":
        (out / f"{name}.nii").write_bytes(b"x")
        (out / f"{name}_residual.nii").write_bytes(b"x")
    (out / "c_residual.nii").unlink()
    previous = {"b": ScanRow("b", "", "failed", "boom"), "a": ScanRow("a", "", "done", device="cuda", noise_sigma_before=0.5)}
    skipped = scans_to_skip(plans, previous, ["a", "b", "c", "d"])
    assert list(skipped) == [0]
    assert skipped[0].status == "skipped" and skipped[0].device == "cuda" and skipped[0].noise_sigma_before == 0.5
    assert list(scans_to_skip(plans, {}, ["a", "b", "c", "d"])) == [0, 1]


def test_an_unreadable_earlier_report_leaves_resume_to_the_outputs_alone(tmp_path) -> None:
    (tmp_path / "deepdenoise_report.json").write_text("{not json", encoding="utf-8")
    assert read_report_rows(tmp_path) == {}
    (tmp_path / "deepdenoise_report.json").write_text(json.dumps({"scans": [{"input": "a", "output": "o", "status": "done", "new": 1}]}))
    assert read_report_rows(tmp_path)["a"].status == "done"
