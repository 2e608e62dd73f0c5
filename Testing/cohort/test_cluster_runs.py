"""Cohorts on a real Dask cluster of two worker processes (DeepDenoiseLib.cohort.api, .engine): a
corrupt file recorded as failed while the rest is written, resume, the shared model and a given one,
a BIDS-shaped tree round trip with its entities kept, a worker that dies, and a cancelled cohort
that leaves nothing half-written."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from DeepDenoiseLib.cohort.api import batch_denoise
from DeepDenoiseLib.cohort.engine import run_jobs
from DeepDenoiseLib.cohort.outputs import ScanOutputs
from DeepDenoiseLib.cohort.progress import CohortEvent, CohortTally
from DeepDenoiseLib.cohort.task import ScanJob, library_location
from DeepDenoiseLib.core.progress import Cancelled, CancelToken
from DeepDenoiseLib.core.volume_io import read_volume
from Testing.core.test_volume_io import write_dicom_series
from Testing.support import REPO
from Testing.support.cohort import (
    CORRUPT_NAME,
    SHAPE,
    files_under,
    quick_config,
    slow_config,
    task_that_kills_its_worker_on_corrupt_files,
    write_cohort,
    write_scan,
)
from Testing.support.phantoms import noisy_phantom


def statuses(report) -> dict[str, str]:
    return {Path(row.input).name: row.status for row in report.rows}


def test_the_workers_run_this_checkouts_library(client) -> None:
    locations = client.run(library_location)
    assert len(locations) == 2
    assert all(location.startswith(str(REPO / "DeepDenoiseLib" / "__init__.py")) for location in locations.values()), locations


def test_the_embedded_workers_have_the_plans_threads_and_not_dasks_malloc_trim_threshold(client) -> None:
    """Dask sets MALLOC_TRIM_THRESHOLD_ in its workers by default; torch then trains 2 to 3 times slower."""
    seen = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
    assert list(seen.values()) == [(None, "1"), (None, "1")]


def test_a_dicom_series_folder_is_one_scan_written_as_nifti(tmp_path, cluster) -> None:
    write_cohort(tmp_path / "in", ("a.nii.gz",), corrupt=False)
    series = tmp_path / "in" / "p1" / "series3"
    series.mkdir(parents=True)
    array = (np.abs(noisy_phantom(SHAPE, sigma=0.1, seed=5)[1]) * 1000).astype(np.int16)
    write_dicom_series(series, array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "1.2.826.0.1.3680043.2.1125.50")
    (tmp_path / "in" / "notes.txt").write_text("not a scan")
    out = tmp_path / "out"
    report = batch_denoise([tmp_path / "in"], out, quick_config(), per_scan=True, scheduler=cluster.scheduler_address)
    assert statuses(report) == {"a.nii.gz": "done", "series3": "done"} and report.exit_code == 0
    assert files_under(out) == ["a.nii.gz", "deepdenoise_report.csv", "deepdenoise_report.json", "p1/series3.nii.gz"]
    denoised = read_volume(out / "p1" / "series3.nii.gz")
    assert denoised.array.shape == SHAPE and tuple(denoised.spacing) == (1.0, 1.0, 2.0)


def test_a_corrupt_scan_is_reported_failed_the_others_written_and_resume_skips_them(tmp_path, cluster) -> None:
    write_cohort(tmp_path / "in")
    out = tmp_path / "out"
    report = batch_denoise([tmp_path / "in"], out, quick_config(), per_scan=True, residual=True, scheduler=cluster.scheduler_address)
    assert statuses(report) == {CORRUPT_NAME: "failed", "b.nii.gz": "done", "c.nrrd": "done", "d.mha": "done"}
    assert report.exit_code == 1 and report.mode == "per-scan"
    failed = next(row for row in report.rows if row.status == "failed")
    assert f"could not read '{CORRUPT_NAME}'" in failed.message
    assert files_under(out) == [
        "b.nii.gz", "b_residual.nii.gz", "c.nrrd", "c_residual.nrrd", "deepdenoise_report.csv", "deepdenoise_report.json",
        "sub/d.mha", "sub/d_residual.mha",
    ]  # fmt: skip
    assert read_volume(out / "sub" / "d.mha").array.shape == SHAPE
    done = [row for row in report.rows if row.status == "done"]
    assert {row.worker for row in report.rows} <= {"0", "1"} and all(row.device == "cpu" and row.training_steps == 4 for row in done)
    assert json.loads((out / "deepdenoise_report.json").read_text())["counts"]["failed"] == 1

    written = {name: (out / name).stat().st_mtime_ns for name in ("b.nii.gz", "c.nrrd")}
    (out / "sub" / "d_residual.mha").unlink()
    again = batch_denoise(
        [tmp_path / "in"], out, quick_config(), per_scan=True, residual=True, resume=True, scheduler=cluster.scheduler_address
    )
    assert statuses(again) == {CORRUPT_NAME: "failed", "b.nii.gz": "skipped", "c.nrrd": "skipped", "d.mha": "done"}
    assert {name: (out / name).stat().st_mtime_ns for name in written} == written
    assert (out / "sub" / "d_residual.mha").is_file()
    skipped = next(row for row in again.rows if row.status == "skipped")
    assert skipped.noise_sigma_before is not None and skipped.device == "cpu"  # the earlier run's figures


def test_the_shared_model_trains_once_skipping_an_unreadable_first_scan_then_is_applied_to_the_rest(tmp_path, cluster) -> None:
    write_cohort(tmp_path / "in")
    out = tmp_path / "out"
    events: list[CohortEvent] = []
    report = batch_denoise([tmp_path / "in"], out, quick_config(), scheduler=cluster.scheduler_address, progress=events.append)
    assert report.mode == "shared" and statuses(report)[CORRUPT_NAME] == "failed" and report.counts["done"] == 3
    model = out / "deepdenoise_model.safetensors"
    rows = {Path(row.input).name: row for row in report.rows}
    assert rows["b.nii.gz"].training_steps == 4 and rows["c.nrrd"].training_steps == 0 and rows["d.mha"].training_steps == 0
    assert {rows[name].model for name in ("b.nii.gz", "c.nrrd", "d.mha")} == {str(model)} and model.is_file()
    actions = [(event.fields["scan"], event.fields["action"]) for event in events if event.fields.get("event") == "start"]
    assert actions[:2] == [(CORRUPT_NAME, "train"), ("b.nii.gz", "train")] and sorted(actions[2:]) == [
        ("c.nrrd", "apply"),
        ("sub/d.mha", "apply"),
    ]
    cohort = [event.fields for event in events if event.stage == "cohort"]
    assert cohort[-1]["done"] == 3 and cohort[-1]["failed"] == 1 and cohort[-1]["total"] == 4 and events[-1].stage == "done"

    given = batch_denoise([tmp_path / "in" / "b.nii.gz"], tmp_path / "out2", model=model, scheduler=cluster.scheduler_address)
    assert given.mode == "model" and given.rows[0].status == "done" and given.rows[0].model == str(model)


def test_without_a_method_a_4d_series_takes_mppca_and_the_shared_model_learns_from_a_sample_of_the_volumes(tmp_path, cluster) -> None:
    from Testing.support.phantoms import tiny_config_dict

    names = ("s1.nii.gz", "s2.nii.gz", "s3.nii.gz", "s4.nii.gz", "s5.nii.gz")
    for seed, name in enumerate(names):
        write_scan(tmp_path / "in" / name, seed)
    write_scan(tmp_path / "in" / "bold.nii.gz", 9, frames=12)
    settings = tiny_config_dict("r2r")
    report = batch_denoise([tmp_path / "in"], tmp_path / "out", settings=settings, scheduler=cluster.scheduler_address)
    rows = {Path(row.input).name: row for row in report.rows}
    assert report.counts["done"] == 6, [(row.input, row.message) for row in report.rows]
    assert rows["bold.nii.gz"].model == "per-scan mppca" and rows["bold.nii.gz"].training_steps == 0
    assert read_volume(tmp_path / "out" / "bold.nii.gz", allow_4d=True).array.shape == (12, *SHAPE)
    model = str(tmp_path / "out" / "deepdenoise_model.safetensors")
    assert {rows[name].model for name in names} == {model} and rows["s1.nii.gz"].training_steps == 4
    sample = [str(tmp_path / "in" / name) for name in ("s1.nii.gz", "s2.nii.gz", "s4.nii.gz", "s5.nii.gz")]
    assert report.shared_model == {"path": model, "sample": sample}  # four spread over the five volumes
    assert json.loads(report.json_path.read_text())["shared_model"]["sample"] == sample


def test_a_setting_that_the_cohorts_default_method_refuses_is_refused_before_any_work(tmp_path) -> None:
    write_cohort(tmp_path / "in", corrupt=False)
    with pytest.raises(ValueError, match="apply to method mppca only.*default for b.nii.gz; choose a --method"):
        batch_denoise([tmp_path / "in"], tmp_path / "out", settings={"series": {"patch_radius": 3}}, workers=1)
    assert not (tmp_path / "out").exists()


def test_a_bids_tree_becomes_a_derivative_dataset_with_the_entities_and_folders_kept(tmp_path, cluster) -> None:
    root = tmp_path / "ds"
    (root).mkdir()
    (root / "dataset_description.json").write_text('{"Name": "tiny", "BIDSVersion": "1.10.0"}')
    write_scan(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", seed=1)
    write_scan(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_acq-fast_run-1_T1w.nii.gz", seed=2)
    write_scan(root / "sub-02" / "ses-1" / "func" / "sub-02_ses-1_task-rest_bold.nii.gz", seed=3, frames=3)
    write_scan(root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_acq-a..b_T1w.nii.gz", seed=4)
    report = batch_denoise([root], None, quick_config(), bids=True, residual=True, scheduler=cluster.scheduler_address)
    assert report.counts["done"] == 3 and report.exit_code == 0
    out = root / "derivatives" / "deepdenoise"
    assert files_under(out) == [
        ".bidsignore", "dataset_description.json", "deepdenoise_model.safetensors", "deepdenoise_report.csv", "deepdenoise_report.json",
        "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz", "sub-01/anat/sub-01_desc-residual_T1w.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-fast_run-1_desc-denoised_T1w.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_acq-fast_run-1_desc-residual_T1w.nii.gz",
        "sub-02/ses-1/func/sub-02_ses-1_task-rest_desc-denoised_bold.nii.gz",
        "sub-02/ses-1/func/sub-02_ses-1_task-rest_desc-residual_bold.nii.gz",
    ]  # fmt: skip
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["SourceDatasets"] == [{"URL": root.as_uri()}]
    bold = read_volume(out / "sub-02" / "ses-1" / "func" / "sub-02_ses-1_task-rest_desc-denoised_bold.nii.gz", allow_4d=True)
    assert bold.array.shape == (3, *SHAPE)
    assert any("acq-a..b" in warning and "not a BIDS file name" in warning for warning in report.warnings)


def test_workers_are_refused_for_an_existing_cluster_before_connecting(tmp_path) -> None:
    write_cohort(tmp_path / "in", ("b.nii.gz",), corrupt=False)
    with pytest.raises(ValueError, match="sizes the embedded cluster"):
        batch_denoise([tmp_path / "in"], tmp_path / "out", quick_config(), workers=2, scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "out").exists()


def test_a_scan_whose_worker_dies_is_failed_and_the_cohort_goes_on(tmp_path, client) -> None:
    paths = write_cohort(tmp_path / "in", ("b.nii.gz",))
    (tmp_path / "out").mkdir()
    jobs = [ScanJob(str(path), ScanOutputs(tmp_path / "out" / path.name), "denoise", config=quick_config().to_dict()) for path in paths]
    outcome = run_jobs(client, jobs, CohortTally(len(jobs)), task=task_that_kills_its_worker_on_corrupt_files)
    assert outcome.interruption is None
    died, done = outcome.rows
    assert died.status == "failed" and "the worker running it died (out of memory, or killed)" in died.message
    assert done.status == "done" and (tmp_path / "out" / "b.nii.gz").is_file()
    client.wait_for_workers(2, timeout=60)  # the nanny replaced the worker


def test_a_cancelled_cohort_stops_its_running_scans_writes_nothing_and_reports_them(tmp_path, cluster) -> None:
    write_cohort(tmp_path / "in", ("b.nii.gz", "c.nrrd", "d.mha", "e.nii"), corrupt=False)
    out = tmp_path / "out"
    token = CancelToken()

    def cancel_once_two_run(event: CohortEvent) -> None:
        if event.fields.get("event") == "start" and event.fields["scan"] == "c.nrrd":
            threading.Timer(2.0, token.cancel).start()

    with pytest.raises(Cancelled):
        batch_denoise(
            [tmp_path / "in"],
            out,
            slow_config(),
            per_scan=True,
            scheduler=cluster.scheduler_address,
            progress=cancel_once_two_run,
            cancel=token,
        )
    assert files_under(out) == ["deepdenoise_report.csv", "deepdenoise_report.json"]
    scans = json.loads((out / "deepdenoise_report.json").read_text())["scans"]
    assert [(Path(row["input"]).name, row["status"]) for row in scans] == [
        ("b.nii.gz", "cancelled"), ("c.nrrd", "cancelled"), ("d.mha", "cancelled"), ("e.nii", "cancelled"),
    ]  # fmt: skip
    assert [row["message"] for row in scans][1:] == ["cancelled before its outputs were written", "not started", "not started"]
