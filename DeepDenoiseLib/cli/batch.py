"""The ``deepdenoise batch`` command: a cohort of scans denoised on Dask (DeepDenoiseLib/cohort).

It offers the setting flags ``denoise`` offers, from the same rows of the settings table (flags.py),
so every method, noise model and training setting of ``denoise`` works per cohort unchanged.

>>> deepdenoise batch study/ --output-dir out --residual                      # one shared model, 2 workers...
>>> deepdenoise batch bids_root/ --bids --per-scan --budget-minutes 2 --scheduler tcp://head:8786
>>> deepdenoise batch scans/ --output-dir out --model brain-t1 --tta --uncertainty --resume
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.cli.common import EXIT_INTERRUPTED, add_progress_flag, config_from_args, fail
from DeepDenoiseLib.cli.flags import add_setting_flags, flag_rows, setting_overrides
from DeepDenoiseLib.core.progress import Cancelled
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.model_record import MODEL_EXTENSION

#: The sub-command whose setting flags ``batch`` offers.
FLAGS_OF = "denoise"


def add_batch_parser(commands: Any) -> argparse.ArgumentParser:
    """Adds the ``batch`` sub-command to ``commands`` (the CLI's sub-parsers)."""
    parser = commands.add_parser(
        "batch",
        help="denoise a cohort (files, folders, a BIDS dataset) on a Dask cluster, with a report",
        description=(
            "Denoise every scan of the inputs, each as a task on Dask: an embedded local cluster sized to the machine, "
            "or an existing cluster (--scheduler). By default one model is trained on one scan and applied to the "
            "others; --per-scan trains one per scan; --model applies a saved model. A scan that fails is recorded in "
            "DIR/deepdenoise_report.csv and .json and the others go on. Exit codes: 0 every scan done, 1 some failed, "
            "2 bad arguments, 130 cancelled."
        ),
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="volume files, folders to search, or with --bids a BIDS root")
    parser.add_argument(
        "--output-dir", type=Path, help="where the outputs and the report go (--bids: default ROOT/derivatives/deepdenoise)"
    )
    parser.add_argument("--bids", action="store_true", help="INPUT is a BIDS dataset: write a BIDS derivative dataset")
    parser.add_argument("--pattern", help="only what matches this shell pattern, relative to its folder (e.g. '*_T1w.nii.gz')")
    learn = parser.add_mutually_exclusive_group()
    learn.add_argument("--per-scan", action="store_true", help="train a network on every scan (default: one shared model)")
    learn.add_argument(
        "--model", metavar="MODEL", help=f"apply this saved model to every scan: a path ending in {MODEL_EXTENSION}, or a NAME"
    )
    learn.add_argument(
        "--train-scan",
        type=Path,
        action="append",
        metavar="PATH",
        help="a scan the shared model learns from; repeat for several (default: up to 4 spread over the cohort)",
    )
    parser.add_argument("--residual", action="store_true", help="also write each scan's input minus output beside it")
    parser.add_argument("--uncertainty", action="store_true", help="also write each scan's spread across TTA beside it (needs --tta)")
    parser.add_argument("--resume", action="store_true", help="skip the scans whose outputs an earlier run wrote")
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--workers", type=int, help="worker processes of the embedded cluster (default: one per GPU, else cores / 2)")
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="run on the existing Dask cluster at ADDRESS (tcp://host:8786)")
    group = parser.add_argument_group("method (each overrides the --config file; --threads: torch threads per worker)")
    group.add_argument("--config", type=Path, help="a JSON run configuration (see DenoiseConfig)")
    add_setting_flags(group, DenoiseConfig, FLAGS_OF)
    add_progress_flag(parser)
    return parser


def run_batch(args: argparse.Namespace) -> int:
    """Runs the cohort the arguments describe; the exit code (0 all done, 1 some failed, 130 cancelled)."""
    from DeepDenoiseLib.cohort.api import batch_denoise
    from DeepDenoiseLib.cohort.progress import CohortBar, CohortEvent, CohortJsonLines

    if args.workers is not None and args.scheduler is not None:
        raise ValueError("--workers sizes the embedded cluster; an existing cluster (--scheduler) has its own workers")
    finished: dict[str, Any] = {}
    shown = CohortJsonLines(sys.stdout) if args.progress == "json" else CohortBar(sys.stderr) if args.progress == "bar" else None

    def progress(event: CohortEvent) -> None:
        if event.stage == "done":
            finished.update(event.fields["summary"])
        if shown is not None:
            shown(event)

    common = dict(
        bids=args.bids, pattern=args.pattern, residual=args.residual, uncertainty=args.uncertainty, workers=args.workers,
        scheduler=args.scheduler, resume=args.resume, force=bool(args.force), progress=progress,
    )  # fmt: skip
    try:
        if args.model is not None:
            _refuse_training_settings(args)
            report = batch_denoise(
                args.inputs, args.output_dir, model=args.model, tta=args.tta, device=args.device, threads=args.threads, **common
            )
        else:
            config, settings = _method(args)
            report = batch_denoise(
                args.inputs, args.output_dir, config, settings=settings, per_scan=args.per_scan, train_scans=args.train_scan or (), **common
            )
    except (KeyboardInterrupt, Cancelled) as error:
        how = f" ({error.args[0]})" if error.args else ""
        if finished:
            counts = finished["counts"]
            said = f"{counts['done']} scans done before stay; the report {finished['report']} lists the {counts['cancelled']} cancelled"
        else:
            said = "no scan was started"
        return fail(args.progress, f"cancelled{how}: {said}", EXIT_INTERRUPTED)
    if args.progress != "json":
        _print_summary(report.counts, report.rows, report.seconds, report.workers, str(report.csv_path))
    return report.exit_code


def _method(args: argparse.Namespace) -> tuple[Optional[DenoiseConfig], Optional[dict[str, Any]]]:
    """The cohort's configuration when a --method or a --config chooses one; else none, and the
    settings the flags give, over each scan's default method (as ``denoise`` takes it)."""
    if args.method is not None or args.config is not None:
        return config_from_args(args, FLAGS_OF), None
    return None, setting_overrides(args, DenoiseConfig, FLAGS_OF, skip=("method",))


def _refuse_training_settings(args: argparse.Namespace) -> None:
    """With --model the model's own settings are used: only the flags of ``apply`` (and --force) may be given."""
    allowed = {row.path for _, row in flag_rows(DenoiseConfig, "apply")} | {"allow_label_map"}
    given = list(
        flag.name
        for flag, row in flag_rows(DenoiseConfig, FLAGS_OF)
        if row.path not in allowed and getattr(args, flag.dest, None) is not None
    )
    if args.config is not None:
        given.insert(0, "--config")
    if given:
        raise ValueError(
            f"{', '.join(dict.fromkeys(given))} cannot be used with --model: the model's own settings are used (--tta, --device and --threads may be)"
        )


def _print_summary(counts: dict[str, int], rows: list[Any], seconds: float, workers: str, report: str) -> None:
    total = sum(counts.values())
    lines = [
        f"{total} scans: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled in {seconds:.1f} s ({workers})"
    ]
    lines += [f"failed: {row.input}: {row.message}" for row in rows if row.status == "failed"]
    lines.append(f"report: {report} (and .json)")
    print("\n".join(lines), file=sys.stderr)
