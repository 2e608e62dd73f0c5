"""The ``deepdenoise`` command line: ``denoise`` a volume file, run the ``demo`` on the bundled sample,
or make a volume finer along one axis (``superres``, see superres_cli.py).

``--progress json`` prints one JSON progress event per line on stdout (see progress.py) so another
process can follow the run; the last line is a ``done`` event with the summary or an ``error`` event.
Exit codes: 0 done, 1 the run failed, 2 bad arguments or input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from DeepDenoiseLib.config import DEVICES, DIMENSIONS, METHODS, DenoiseConfig, deep_merge
from DeepDenoiseLib.progress import Cancelled, JsonLinesReporter, ProgressCallback, ProgressEvent, TextProgressBar
from DeepDenoiseLib.superres_cli import add_superres_parser, run_superres
from DeepDenoiseLib.validation import InputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method (each overrides the --config file)")
    group.add_argument("--config", type=Path, help="a JSON run configuration (see DenoiseConfig)")
    group.add_argument("--method", choices=METHODS, help=f"Noise2Void flavour (default {DenoiseConfig.method})")
    group.add_argument("--dims", choices=DIMENSIONS, help="2d: slice-wise with neighbouring slices as context; 3d: true 3D")
    group.add_argument("--struct-axis", choices=("x", "y", "z"), help="structN2V: axis along which the noise is correlated")
    group.add_argument("--budget-minutes", type=float, help="training time budget in minutes")
    group.add_argument("--epochs", type=int, help="maximum number of training epochs")
    group.add_argument("--device", choices=DEVICES, help="where to run (default auto: GPU if there is one)")
    group.add_argument("--threads", type=int, help="CPU threads for torch")
    group.add_argument("--seed", type=int, help="random seed")
    group.add_argument("--patch-size", type=int, help="training patch edge in voxels")
    group.add_argument("--batch-size", type=int, help="training patches per step")
    group.add_argument("--learning-rate", type=float, help="initial learning rate")
    group.add_argument("--masked-fraction", type=float, help="share of voxels hidden per patch")
    group.add_argument("--tta", action="store_true", default=None, help="average 8 in-plane flips/rotations at prediction")
    group.add_argument("--force", action="store_true", help="denoise even if the volume looks like a label map")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="how to report progress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdenoise", description="Self-supervised denoising of medical image volumes.")
    commands = parser.add_subparsers(dest="command", required=True)
    denoise = commands.add_parser("denoise", help="train Noise2Void on a volume and write it denoised")
    denoise.add_argument("input", type=Path, help="noisy volume: .nii, .nii.gz, .nrrd, .mha, or a DICOM series folder")
    denoise.add_argument("output", type=Path, help="denoised volume (.nii, .nii.gz, .nrrd, .mha)")
    denoise.add_argument("--residual", type=Path, help="also write input minus output here")
    denoise.add_argument("--uncertainty", type=Path, help="also write the per-voxel spread across TTA (needs --tta)")
    _add_run_options(denoise)
    demo = commands.add_parser("demo", help="denoise the bundled sample and score it against its clean truth")
    demo.add_argument("--output-dir", type=Path, default=Path("demo_output"), help="where results go (default demo_output)")
    _add_run_options(demo)
    add_superres_parser(commands)
    return parser


def config_from_args(args: argparse.Namespace) -> DenoiseConfig:
    """The run configuration: the --config file (or the method's defaults), then each flag given."""
    if args.config is not None:
        base = DenoiseConfig.load(args.config).to_dict()
        if args.method is not None and args.method != base["method"]:
            base = deep_merge(DenoiseConfig.for_method(args.method).to_dict(), _non_method_settings(base))
    else:
        base = DenoiseConfig.for_method(args.method or DenoiseConfig.method).to_dict()
    overrides: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(section, {})[key] = value

    put("model", "dimensions", args.dims)
    put("masking", "struct_axis", args.struct_axis)
    put("training", "budget_seconds", None if args.budget_minutes is None else args.budget_minutes * 60.0)
    put("training", "max_epochs", args.epochs)
    put("training", "device", args.device)
    put("training", "threads", args.threads)
    put("training", "seed", args.seed)
    put("training", "patch_size", args.patch_size)
    put("training", "batch_size", args.batch_size)
    put("training", "learning_rate", args.learning_rate)
    put("masking", "masked_fraction", args.masked_fraction)
    put("prediction", "tta", args.tta)
    if args.force:
        overrides["allow_label_map"] = True
    return DenoiseConfig.from_dict(deep_merge(base, overrides))


def _non_method_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A config file's settings less those a method choice decides (masking style, N2V2 layers)."""
    kept = {k: v for k, v in config.items() if k not in ("method", "masking", "model")}
    kept["model"] = {k: v for k, v in config["model"].items() if k not in ("blurpool", "top_skip")}
    kept["masking"] = {k: v for k, v in config["masking"].items() if k not in ("replacement", "struct_axis", "struct_half_length")}
    return kept


def _reporter(kind: str) -> Optional[ProgressCallback]:
    if kind == "json":
        return JsonLinesReporter(sys.stdout)
    if kind == "bar":
        return TextProgressBar(sys.stderr)
    return None


def _print_summary(summary: dict[str, Any]) -> None:
    lines = [
        f"done in {summary.get('seconds', 0):.1f} s "
        f"(training {summary.get('training_seconds', 0):.1f} s, {summary.get('training_steps', 0)} steps on {summary.get('device', '-')}; "
        f"prediction {summary.get('prediction_seconds', 0):.1f} s)",
    ]
    if "noise_sigma_before" in summary:
        lines.append(
            f"estimated noise sigma: {summary['noise_sigma_before']:.4g} before, {summary['noise_sigma_after']:.4g} after"
        )
    for warning in summary.get("warnings", []):
        lines.append(f"warning: {warning}")
    if "output" in summary:
        lines.append(f"wrote {summary['output']}")
    print("\n".join(lines), file=sys.stderr)


def _run_denoise(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.pipeline import denoise_file

    return denoise_file(
        args.input, args.output, config_from_args(args), args.residual, args.uncertainty, progress=progress
    )


def _run_demo(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.demo import run_demo

    return run_demo(args.output_dir, config_from_args(args), progress=progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads starve the
    # others (measured 6x slower runs on a loaded 2-core machine). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = _reporter(args.progress)
    try:
        if args.command == "denoise":
            summary = _run_denoise(args, progress)
        elif args.command == "superres":
            summary = run_superres(args, progress)
        else:
            summary = _run_demo(args, progress)
    except (InputError, FileNotFoundError, ValueError) as error:
        return _fail(args.progress, f"{error}", EXIT_BAD_INPUT)
    except (KeyboardInterrupt, Cancelled):
        return _fail(args.progress, "cancelled; no output was written", EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - every failure must reach the user as one clear line
        return _fail(args.progress, f"{type(error).__name__}: {error}", EXIT_FAILED)
    if args.progress != "json":
        _print_summary(summary)
    return EXIT_OK


def _fail(progress_kind: str, message: str, code: int) -> int:
    if progress_kind == "json":
        JsonLinesReporter(sys.stdout)(ProgressEvent("error", 0.0, message=message))
    print(f"deepdenoise: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
