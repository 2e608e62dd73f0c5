"""``batch_denoise``: denoise a cohort of scans on a Dask cluster and return its report (what
``deepdenoise batch`` runs; usable from any Python, the Slicer console included).

Each scan is one task (task.py) on an embedded ``LocalCluster`` sized to the machine, or on an
existing cluster (``scheduler``). Each scan takes the method ``denoise`` would give it when no
``config`` is given (MP-PCA for a 4D series of at least 10 frames, else R2R; ``settings`` over
it). Per scan (``per_scan``) every scan trains its own network; by default one shared model learns
from a sample of the scans and is applied to the others (shared_model.py), while the scans whose
method trains no network (MP-PCA) are denoised on their own; with ``model`` a saved model is
applied to all. Every output is checked before any work starts; a scan
that fails is recorded and the others go on; ``resume`` skips the scans an earlier run completed.
The report (report.py) is written in the output folder, a cancelled cohort's too (its unfinished
scans say ``cancelled``), after which the interrupt or ``Cancelled`` is raised again.

>>> report = batch_denoise(["study/"], "out", DenoiseConfig(), residual=True, workers=2)
>>> report.counts
{'done': 15, 'skipped': 0, 'failed': 1, 'cancelled': 0}
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from DeepDenoiseLib.cohort.bids import dataset_description, find_bids_scans
from DeepDenoiseLib.cohort.cluster import check_workers_import_library, cohort_client
from DeepDenoiseLib.cohort.engine import EngineOutcome, new_cancel_event_name, run_jobs
from DeepDenoiseLib.cohort.outputs import ScanOutputs, plan_outputs, prepare_output_folders
from DeepDenoiseLib.cohort.progress import CohortEvent, CohortProgress, CohortTally
from DeepDenoiseLib.cohort.report import CohortReport, ScanRow, read_report_rows, text_writer
from DeepDenoiseLib.cohort.resume import scans_to_skip
from DeepDenoiseLib.cohort.scans import FoundScans, Scan, find_scans
from DeepDenoiseLib.cohort.shared_model import shared_model_path, training_sample, training_tries
from DeepDenoiseLib.cohort.task import ScanJob
from DeepDenoiseLib.cohort.workers import GPU_DEVICES, WorkerPlan, cpu_cores, plan_workers, visible_gpus
from DeepDenoiseLib.core.atomic_write import write_files
from DeepDenoiseLib.core.progress import CancelToken
from DeepDenoiseLib.core.validation import InputError
from DeepDenoiseLib.core.volume_io import header_frames
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.method_rules import SERIES_ONLY_METHODS, check_uncertainty_request, default_method
from DeepDenoiseLib.denoise.model_folder import resolve_model_path
from DeepDenoiseLib.denoise.model_record import read_model_record

PathLike = Union[str, "os.PathLike[str]"]
#: Files of the report and the model that a BIDS validator should pass over in a derivative dataset.
BIDS_IGNORED = ("deepdenoise_report.csv", "deepdenoise_report.json", "deepdenoise_model.safetensors")


@dataclasses.dataclass
class _Cohort:
    """A cohort ready to run: its scans, their outputs, what each task gets, and the rows so far."""

    scans: list[Scan]
    plans: list[ScanOutputs]
    job: ScanJob  # the fields every job shares (source, outputs and configuration are each scan's)
    configs: list[dict[str, Any]]
    rows: dict[int, ScanRow]
    tally: CohortTally
    cancel: Optional[CancelToken]
    direct: frozenset[int] = frozenset()  # scans whose method trains no network: always denoised on their own

    def jobs(self, indices: Sequence[int], **changes: Any) -> list[ScanJob]:
        return [
            dataclasses.replace(
                self.job,
                source=str(self.scans[index].source),
                outputs=self.plans[index],
                config=self.configs[index],
                **dict(changes, action="denoise") if index in self.direct else changes,
            )
            for index in indices
        ]

    def run(self, client: Any, indices: Sequence[int], **changes: Any) -> EngineOutcome:
        labels = [str(self.scans[index].relative) for index in indices]
        outcome = run_jobs(client, self.jobs(indices, **changes), self.tally, self.cancel, self.job.cancel_event, labels=labels)
        self.rows.update(zip(indices, outcome.rows))
        return outcome

    def give_up(self, indices: Sequence[int], status: str, message: str) -> None:
        for index in indices:
            self.rows[index] = ScanRow(str(self.scans[index].source), str(self.plans[index].output), status, message)
            self.tally.finished(self.rows[index], str(self.scans[index].relative))


def batch_denoise(
    inputs: Sequence[PathLike],
    output_dir: Optional[PathLike] = None,
    config: Optional[DenoiseConfig] = None,
    *,
    bids: bool = False,
    pattern: Optional[str] = None,
    settings: Optional[Mapping[str, Any]] = None,
    per_scan: bool = False,
    model: Optional[PathLike] = None,
    train_scans: Sequence[PathLike] = (),
    residual: bool = False,
    uncertainty: bool = False,
    tta: Optional[bool] = None,
    device: Optional[str] = None,
    workers: Optional[int] = None,
    threads: Optional[int] = None,
    scheduler: Union[str, Any, None] = None,
    resume: bool = False,
    force: bool = False,
    progress: Optional[CohortProgress] = None,
    cancel: Optional[CancelToken] = None,
) -> CohortReport:
    """Denoises every scan of ``inputs`` into ``output_dir`` and returns the report (also written there).

    ``inputs``: volume files and folders (searched with ``pattern``), or with ``bids`` the root of
    one BIDS dataset (``output_dir`` then defaults to its ``derivatives/deepdenoise``). ``config``:
    the method, noise model, training and prediction settings for every scan; without it each scan
    takes its own default method (as ``denoise`` does: MP-PCA for a 4D series of at least 10
    frames, else R2R) with ``settings`` (a nested mapping, as in a configuration file) over it.
    ``per_scan``: every scan trains its own network; ``model`` (a path or a saved model's name):
    apply it to every scan, with ``tta`` and ``device`` overriding its settings; neither: one
    shared model learns from ``train_scans`` (default: a sample spread over the cohort) and is
    applied to the others, and the scans whose method trains no network are denoised on their own.
    ``residual``, ``uncertainty``: also write these beside each output. ``workers``, ``threads``: the embedded cluster's worker processes and torch
    threads per worker (default: workers.py); ``scheduler``: an existing cluster's address, or a
    ``distributed.Client``. ``resume``: skip the scans an earlier run completed. ``force``: let an
    output replace its own input. ``progress`` receives :class:`CohortEvent` s; ``cancel`` stops the
    cohort as Ctrl-C does. Raises :class:`InputError` (or ``ValueError``) before any work for bad
    arguments, inputs or output paths.
    """
    started = time.perf_counter()
    if sum((per_scan, model is not None, bool(train_scans))) > 1:
        raise ValueError("choose one way to learn: per_scan (--per-scan), model (--model) or train_scans (--train-scan)")
    if model is not None and settings:
        raise ValueError("a given model (model, --model) denoises with its own settings; leave out settings")
    if config is not None and settings:
        raise ValueError("settings go over each scan's default method when no config is given; with a config, put them in it")
    if scheduler is not None and workers is not None:
        raise ValueError("workers (--workers) sizes the embedded cluster; an existing cluster (scheduler, --scheduler) has its own workers")
    if model is None and (tta is not None or device is not None):
        raise ValueError("tta and device override a given model's settings; without a model, set them in config")
    folder, found = _find(inputs, output_dir, bids, pattern)
    scans = found.scans
    plans = plan_outputs(scans, folder, bids, residual, uncertainty)
    mode = "per-scan" if per_scan else "model" if model is not None else "shared"
    configs = [DenoiseConfig()] * len(scans) if mode == "model" else _scan_configs(scans, config, settings)
    config = configs[0]
    model_path = resolve_model_path(model) if model is not None else shared_model_path(folder) if mode == "shared" else None
    for each in {id(each): each for each in configs}.values():
        _check_prediction(mode, model_path, tta, each, uncertainty)
    direct = frozenset(index for index, each in enumerate(configs) if each.method in SERIES_ONLY_METHODS and mode != "model")
    networked = [index for index in range(len(scans)) if index not in direct]
    tries: list[list[int]] = []
    if mode == "shared" and networked:
        sample = training_sample([scan.source for scan in scans], networked, [Path(path) for path in train_scans])
        tries = training_tries(sample, configs[sample[0]].method)
    previous = read_report_rows(folder) if resume else {}
    prepare_output_folders(scans, plans, folder, force, model_path if mode == "shared" else None)
    if bids:
        _describe_derivatives(Path(inputs[0]), folder)
    wanted_device = (device if mode == "model" else config.training.device) or "auto"
    plan = _plan(wanted_device, workers, threads or config.training.threads) if scheduler is None else None
    shared_job = _shared_job(mode, config, model_path, tta, device, threads, plan, force)
    cohort = _Cohort(
        scans,
        plans,
        shared_job,
        [_job_settings(each, shared_job) for each in configs],
        {},
        CohortTally(len(scans), progress),
        cancel,
        direct,
    )
    skipped = scans_to_skip(plans, previous, [str(scan.source) for scan in scans])
    model_ready = mode != "shared" or not tries or (resume and model_path is not None and model_path.is_file())
    if not model_ready:
        heads = {one[0] for one in tries}
        skipped = {index: row for index, row in skipped.items() if index not in heads}
    cohort.rows.update(skipped)
    cohort.tally.skipped(len(skipped))
    interruption = None
    with cohort_client(scheduler, plan) as client:
        check_workers_import_library(client)
        todo = [index for index in range(len(scans)) if index not in skipped]
        trained_on: list[int] = []
        if mode == "per-scan":
            interruption = cohort.run(client, todo, action="denoise").interruption
        else:
            interruption, trained_on = _shared(cohort, client, todo, [] if model_ready else tries)
    report = CohortReport(
        [cohort.rows[index] for index in range(len(scans))],
        folder,
        mode,
        plan.describe() if plan is not None else f"the cluster at {getattr(scheduler, 'scheduler', scheduler)}",
        time.perf_counter() - started,
        found.passed_over,
        _shared_model_record(model_path, [str(scans[index].source) for index in trained_on]) if mode == "shared" and trained_on else None,
    )
    report.write()
    summary = {"counts": report.counts, "report": str(report.csv_path), "seconds": round(report.seconds, 2), "mode": mode}
    if progress is not None:
        progress(CohortEvent("done", {"summary": dict(summary, workers=report.workers)}))
    if interruption is not None:
        raise interruption
    return report


def _find(inputs: Sequence[PathLike], output_dir: Optional[PathLike], bids: bool, pattern: Optional[str]) -> tuple[Path, FoundScans]:
    if not inputs:
        raise InputError("give the scans to denoise: files, folders, or a BIDS dataset's root with --bids")
    if bids and len(inputs) != 1:
        raise InputError(f"--bids takes the root folder of one BIDS dataset; got {len(inputs)} inputs")
    if output_dir is None and not bids:
        raise InputError("give the folder to write to: --output-dir DIR")
    root = Path(inputs[0]).expanduser().absolute()
    folder = Path(output_dir).expanduser().absolute() if output_dir is not None else root / "derivatives" / "deepdenoise"
    found = find_bids_scans(root, pattern, skip=folder) if bids else find_scans([Path(path) for path in inputs], pattern, skip=folder)
    if not found.scans:
        what = "BIDS images (sub-*/[ses-*/]anat|func|dwi|pet/*.nii[.gz])" if bids else "volume files or DICOM folders"
        pattern_words = f" matching '{pattern}'" if pattern is not None else ""
        raise InputError(f"found no {what}{pattern_words} in {', '.join(str(path) for path in inputs)}")
    return folder, found


def _check_prediction(mode: str, model_path: Optional[Path], tta: Optional[bool], config: DenoiseConfig, uncertainty: bool) -> None:
    """Refuses, before any work, a given model that cannot be read and an uncertainty map without
    test-time augmentation."""
    if mode == "model" and model_path is not None:
        saved_tta = bool(read_model_record(model_path)["config"]["prediction"]["tta"])
        check_uncertainty_request(uncertainty, saved_tta if tta is None else tta, "--tta", "leave out --uncertainty")
    else:
        check_uncertainty_request(uncertainty, config.prediction.tta, "--tta", "leave out --uncertainty")


def _plan(device: str, workers: Optional[int], threads: Optional[int]) -> WorkerPlan:
    gpus = visible_gpus() if device in GPU_DEVICES else []
    return plan_workers(cpu_cores(), gpus, device, workers, threads)


def _shared_job(
    mode: str,
    config: DenoiseConfig,
    model_path: Optional[Path],
    tta: Optional[bool],
    device: Optional[str],
    threads: Optional[int],
    plan: Optional[WorkerPlan],
    force: bool,
) -> ScanJob:
    """What every job of the cohort gets: on the embedded cluster the plan's torch threads, and
    ``cuda`` when its workers have GPUs and the device was left to choose."""
    threads = threads or config.training.threads or (plan.threads if plan is not None else None)
    on_gpus = plan is not None and plan.uses_gpus
    settings = config.to_dict()
    settings["training"]["threads"] = threads
    if on_gpus and settings["training"]["device"] == "auto":
        settings["training"]["device"] = "cuda"
    if mode == "model" and on_gpus and device in (None, "auto"):
        device = "cuda"
    return ScanJob(
        source="",
        outputs=ScanOutputs(Path()),
        action="denoise",
        config=settings,
        model_path=None if model_path is None else str(model_path),
        tta=tta,
        device=device,
        threads=threads,
        force=force,
        cancel_event=new_cancel_event_name(),
    )


def _shared(cohort: _Cohort, client: Any, todo: list[int], tries: list[list[int]]) -> tuple[Optional[BaseException], list[int]]:
    """Trains the shared model on the first of ``tries`` whose first scan succeeds (none: the model
    is there), denoising the scans that need no model beside it, then applies the model to the other
    scans of ``todo``; returns the interruption, if any, and the scans the model learnt from."""
    sources = [str(scan.source) for scan in cohort.scans]
    on_their_own = [index for index in todo if index in cohort.direct]
    trained_on: list[int] = []
    for sample in tries:
        head, companions = sample[0], tuple(sources[index] for index in sample[1:])
        outcome = cohort.run(
            client, [head] + [index for index in on_their_own if index not in cohort.rows], action="train", companions=companions
        )
        if outcome.interruption is not None:
            cohort.give_up([other for other in todo if other not in cohort.rows], "cancelled", "not started")
            return outcome.interruption, trained_on
        if cohort.rows[head].status == "done":
            trained_on = sample
            break
    else:
        if tries:
            tried = ", ".join(str(cohort.scans[one[0]].relative) for one in tries)
            rest = [other for other in todo if other not in cohort.rows and other not in cohort.direct]
            cohort.give_up(rest, "failed", f"not denoised: the shared model could not be trained (tried {tried}; see their rows)")
    rest = [index for index in todo if index not in cohort.rows]
    return cohort.run(client, rest, action="apply").interruption, trained_on


def _shared_model_record(model_path: Optional[Path], sample: list[str]) -> dict[str, Any]:
    """What the report says of the shared model: its file and the sample of scans it learnt from
    (the first was denoised with it; one of the others that could not be read is named in the first
    one's message)."""
    return {"path": str(model_path), "sample": sample}


def _scan_configs(scans: Sequence[Scan], config: Optional[DenoiseConfig], settings: Optional[Mapping[str, Any]]) -> list[DenoiseConfig]:
    """Every scan's configuration: ``config`` for all, else the method ``denoise`` would give each
    (from its header: MP-PCA for a 4D series of at least 10 frames, else R2R) with ``settings`` over
    it. A setting that a method needed by some scan refuses is refused here, before any work."""
    if config is not None:
        return [config] * len(scans)
    by_method: dict[str, DenoiseConfig] = {}
    configs = []
    for scan in scans:
        frames = header_frames(scan.source)  # None for a volume, or a header its task will say is unreadable
        method = default_method(frames is not None, frames)
        if method not in by_method:
            try:
                by_method[method] = DenoiseConfig.for_method(method, **dict(settings or {}))
            except ValueError as error:
                raise ValueError(
                    f"{error} (method {method} is the default for {scan.relative}; choose a --method for the cohort)"
                ) from error
        configs.append(by_method[method])
    return configs


def _job_settings(config: DenoiseConfig, shared_job: ScanJob) -> dict[str, Any]:
    """A scan's configuration as its job carries it, with the cohort's threads and device."""
    settings = config.to_dict()
    assert shared_job.config is not None
    settings["training"]["threads"] = shared_job.config["training"]["threads"]
    if config.training.device == "auto":
        settings["training"]["device"] = shared_job.config["training"]["device"]
    return settings


def _describe_derivatives(source_root: Path, folder: Path) -> None:
    """Writes the derivative dataset's ``dataset_description.json`` and ``.bidsignore``."""
    from DeepDenoiseLib import __version__

    description = json.dumps(dataset_description(source_root.expanduser().absolute(), __version__), indent=2) + "\n"
    ignored = "".join(f"{name}\n" for name in BIDS_IGNORED)
    write_files(
        [
            (folder / "dataset_description.json", text_writer(description)),
            (folder / ".bidsignore", text_writer(ignored)),
        ]
    )
