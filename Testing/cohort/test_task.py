"""One scan as a task (DeepDenoiseLib.cohort.task), run here in the test's process: a training of its
own, the shared model's training, or a saved model applied, each ending in its report row; a failure
becomes the row's message, and a cohort cancelled as the files are about to be written leaves none."""

from __future__ import annotations

from pathlib import Path

from DeepDenoiseLib.cohort import task
from DeepDenoiseLib.cohort.outputs import ScanOutputs
from DeepDenoiseLib.cohort.task import ScanJob, run_scan
from DeepDenoiseLib.core.volume_io import read_volume
from Testing.support.cohort import CORRUPT_NAME, SHAPE, files_under, quick_config, write_cohort
from Testing.support.phantoms import single_thread  # noqa: F401


def job(source: Path, out: Path, action: str = "denoise", **fields) -> ScanJob:
    outputs = ScanOutputs(out / source.name, out / f"r_{source.name}")
    config = None if action == "apply" else quick_config().to_dict()
    return ScanJob(str(source), outputs, action, config=config, **fields)


def test_a_scan_trained_on_its_own_is_written_and_reported(tmp_path) -> None:
    source = write_cohort(tmp_path / "in", ("b.nii.gz",), corrupt=False)[0]
    row = run_scan(job(source, tmp_path))
    assert row.status == "done", row.message
    assert read_volume(tmp_path / "b.nii.gz").array.shape == SHAPE and (tmp_path / "r_b.nii.gz").is_file()
    assert row.worker == "local" and row.device == "cpu" and row.training_steps == 4 and row.seconds > 0
    assert row.model.startswith("per-scan ") and row.noise_sigma_before is not None and row.noise_sigma_after is not None


def test_the_shared_model_is_saved_with_its_scans_outputs_then_applied_to_another(tmp_path) -> None:
    first, second = write_cohort(tmp_path / "in", ("b.nii.gz", "c.nrrd"), corrupt=False)
    model = tmp_path / "model.safetensors"
    trained = run_scan(job(first, tmp_path, "train", model_path=str(model)))
    assert trained.status == "done" and trained.model == str(model) and model.is_file()
    applied = run_scan(job(second, tmp_path, "apply", model_path=str(model), threads=1))
    assert applied.status == "done", applied.message
    assert applied.model == str(model) and applied.training_steps == 0 and (tmp_path / "c.nrrd").is_file()


def test_the_shared_model_learns_from_its_companions_and_one_that_cannot_be_read_is_left_out_and_said(tmp_path) -> None:
    paths = write_cohort(tmp_path / "in", ("b.nii.gz", "c.nrrd"))
    corrupt, first, second = paths  # the corrupt file sorts first
    model = tmp_path / "model.safetensors"
    row = run_scan(job(first, tmp_path, "train", model_path=str(model), companions=(str(second), str(corrupt))))
    assert row.status == "done" and model.is_file() and row.training_steps == 4
    assert "left out of the shared model's training" in row.message and CORRUPT_NAME in row.message
    assert "c.nrrd" not in row.message


def test_a_scan_that_cannot_be_read_is_a_failed_row_and_writes_nothing(tmp_path) -> None:
    corrupt = [path for path in write_cohort(tmp_path / "in", ("b.nii.gz",)) if path.name == CORRUPT_NAME][0]
    (tmp_path / "out").mkdir()
    row = run_scan(job(corrupt, tmp_path / "out"))
    assert row.status == "failed" and f"could not read '{CORRUPT_NAME}'" in row.message
    assert files_under(tmp_path / "out") == []


def test_a_cohort_cancelled_as_a_scan_is_about_to_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    source = write_cohort(tmp_path / "in", ("b.nii.gz",), corrupt=False)[0]
    (tmp_path / "out").mkdir()
    seen: list[str] = []
    watch = task.CohortCancelWatcher.__call__

    def watching(self, event) -> None:
        seen.append(event.stage)
        watch(self, event)

    monkeypatch.setattr(task.CohortCancelWatcher, "__call__", watching)
    monkeypatch.setattr(task.CohortCancelWatcher, "_cohort_cancelled", lambda self: "writing" in seen)
    row = run_scan(job(source, tmp_path / "out", cancel_event="unused"))
    assert row.status == "cancelled" and "training" in seen and seen[-1] == "writing"
    assert files_under(tmp_path / "out") == []
