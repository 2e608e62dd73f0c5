"""The ``deepdenoise`` command line: ``denoise`` a volume file (or a 4D series), ``apply`` a saved model
to another one, list the saved ``models``, run the ``demo`` on the bundled sample, denoise two
acquisitions or a 4D series with Noise2Noise (``n2n``), train on (noisy, clean) pairs and apply the
model (``supervised``), make a volume finer along one axis (``superres``, see superres.py), or denoise
a cohort on Dask (``batch``, see batch.py). The flags of the settings come from the settings tables
(flags.py).

``--progress json`` prints one JSON progress event per line on stdout (see core/progress.py) so another
process can follow the run; the last line is a ``done`` event with the summary or an ``error`` event.
Exit codes: 0 done, 1 the run failed, 2 bad arguments or input, 130 interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.cli.batch import add_batch_parser, run_batch
from DeepDenoiseLib.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_progress_flag,
    config_from_args,
    fail,
    reporter,
)
from DeepDenoiseLib.cli.flags import add_setting_flags
from DeepDenoiseLib.cli.superres import add_superres_parser, run_superres
from DeepDenoiseLib.core import interrupts
from DeepDenoiseLib.core.progress import Cancelled, ProgressCallback
from DeepDenoiseLib.core.validation import InputError, ResultError
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.model_folder import MODELS_FOLDER_VARIABLE, default_model_folder, list_models, resolve_model_path
from DeepDenoiseLib.denoise.model_record import MODEL_EXTENSION


def _add_training_parser(parser: argparse.ArgumentParser, command: str, title: str) -> None:
    """The settings a training command offers (from the settings table), after ``--config``."""
    group = parser.add_argument_group(f"{title} (each overrides the --config file)")
    group.add_argument("--config", type=Path, help="a JSON run configuration (see DenoiseConfig)")
    add_setting_flags(group, DenoiseConfig, command)
    add_progress_flag(parser)


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--residual", type=Path, help="also write input minus output here")
    parser.add_argument("--uncertainty", type=Path, help="also write the per-voxel spread across TTA (needs --tta)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdenoise", description="Self-supervised denoising of medical image volumes.")
    commands = parser.add_subparsers(dest="command", required=True)
    denoise = commands.add_parser("denoise", help="train Noise2Void on a volume and write it denoised")
    denoise.add_argument("input", type=Path, help="noisy volume: .nii, .nii.gz, .nrrd, .mha, or a DICOM series folder")
    denoise.add_argument("output", type=Path, help="denoised volume (.nii, .nii.gz, .nrrd, .mha)")
    _add_output_flags(denoise)
    denoise.add_argument(
        "--save-model",
        metavar="MODEL",
        help=f"also save the trained model: a path ending in {MODEL_EXTENSION}, or a NAME kept in the per-user model folder",
    )
    _add_training_parser(denoise, "denoise", "method")
    apply = commands.add_parser("apply", help="denoise a volume (or a 4D series) with a saved model, without training")
    apply.add_argument("model", help=f"a saved model: a path ending in {MODEL_EXTENSION}, or a NAME from 'deepdenoise models'")
    apply.add_argument("input", type=Path, help="noisy volume or 4D series: .nii, .nii.gz, .nrrd, .mha, or a DICOM series folder")
    apply.add_argument("output", type=Path, help="denoised volume (.nii, .nii.gz, .nrrd, .mha)")
    _add_output_flags(apply)
    add_setting_flags(apply, DenoiseConfig, "apply")
    apply.add_argument("--force", action="store_true", help="let an output replace the input file")
    add_progress_flag(apply)
    models = commands.add_parser("models", help="list the models saved in the per-user model folder")
    models.add_argument("--folder", type=Path, help=f"another folder (default: ${MODELS_FOLDER_VARIABLE}, else the per-user folder)")
    add_progress_flag(models, default="none", help=argparse.SUPPRESS)
    demo = commands.add_parser("demo", help="denoise the bundled sample and score it against its clean truth")
    demo.add_argument("--output-dir", type=Path, default=Path("demo_output"), help="where results go (default demo_output)")
    _add_training_parser(demo, "demo", "method")
    n2n = commands.add_parser(
        "n2n",
        help="Noise2Noise: denoise two acquisitions of the same anatomy, or a 4D series",
        description="Noise2Noise. With FIRST SECOND OUTPUT: two acquisitions of the same anatomy on one grid (repeat "
        "scans, even/odd averages) train a network to predict each from the other; OUTPUT is predicted from both. "
        "With SERIES OUTPUT: a 4D series (fMRI), neighbouring frames as the pairs; every frame is denoised on its own.",
    )
    n2n.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="FIRST SECOND (two acquisitions) or SERIES (one 4D file)")
    n2n.add_argument("output", type=Path, help="denoised volume or series (.nii, .nii.gz, .nrrd, .mha)")
    supervised = commands.add_parser(
        "supervised",
        help="train on (noisy, clean) pairs, then denoise a volume with the model",
        description="Supervised training on (noisy, clean) pairs on matching grids, e.g. low-dose/full-dose CT or "
        "single/many-average MRI; --apply-to then denoises another volume with the trained network.",
    )
    supervised.add_argument("--noisy", nargs="+", type=Path, required=True, help="noisy training volumes")
    supervised.add_argument("--clean", nargs="+", type=Path, required=True, help="their clean partners, in the same order")
    supervised.add_argument("--apply-to", nargs=2, type=Path, metavar=("INPUT", "OUTPUT"), help="denoise INPUT into OUTPUT")
    for command, paired, method in (("n2n", n2n, "noise2noise"), ("supervised", supervised, "supervised")):
        paired.set_defaults(method=method)  # the command fixes the method
        _add_output_flags(paired)
        _add_training_parser(paired, command, "training")
    add_superres_parser(commands)
    add_batch_parser(commands)
    return parser


def _print_summary(summary: dict[str, Any]) -> None:
    if "model" in summary:
        work = f"model {summary['model']} on {summary.get('device', '-')}"
    elif summary.get("method") == "mppca":
        work = f"MP-PCA on {summary.get('device', '-')}, no training"
    else:
        steps = summary.get("training_steps", 0)
        arithmetic = " in bfloat16" if summary.get("training_precision") == "bfloat16" else ""
        work = f"training {summary.get('training_seconds', 0):.1f} s, {steps} steps{arithmetic} on {summary.get('device', '-')}"
    frames = f", {summary['frames']} frames" if "frames" in summary else ""
    lines = [f"done in {summary.get('seconds', 0):.1f} s ({work}; prediction {summary.get('prediction_seconds', 0):.1f} s{frames})"]
    if "noise_sigma_before" in summary:
        lines.append(f"estimated noise sigma: {summary['noise_sigma_before']:.4g} before, {summary['noise_sigma_after']:.4g} after")
    correlation = summary.get("noise_parameters", {}).get("neighbour_correlation_kji")
    if correlation:
        alike = ", ".join(f"{value:.2f}" for value in correlation)
        lines.append(
            f"noise correlated between neighbouring voxels ({alike} along k, j, i): its full sigma {summary['noise_sigma_fused']:.4g}"
        )
    for warning in summary.get("warnings", []):
        lines.append(f"warning: {warning}")
    if "output" in summary:
        lines.append(f"wrote {summary['output']}")
    if "saved_model" in summary:
        lines.append(f"saved the model to {summary['saved_model']}")
    print("\n".join(lines), file=sys.stderr)


def _run_denoise(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.core.volume_io import header_frames
    from DeepDenoiseLib.denoise.files import denoise_file

    frames = header_frames(args.input)  # a 4D input of enough frames takes the series default (MP-PCA) unless a method is chosen
    config = config_from_args(args, series=frames is not None, frames=frames)
    save_model_path = None if args.save_model is None else resolve_model_path(args.save_model, for_writing=True)
    return denoise_file(
        args.input, args.output, config, args.residual, args.uncertainty, progress=progress,
        save_model_path=save_model_path, force=bool(args.force),
    )  # fmt: skip


def _run_apply(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.core.device import configure_threads
    from DeepDenoiseLib.denoise.files import apply_file

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1; got {args.threads}")
        configure_threads(args.threads)
    return apply_file(
        resolve_model_path(args.model),
        args.input,
        args.output,
        args.residual,
        args.uncertainty,
        tta=args.tta,
        device=args.device,
        progress=progress,
        force=bool(args.force),
    )


def _list_models(args: argparse.Namespace) -> None:
    folder = args.folder if args.folder is not None else default_model_folder()
    infos = list_models(folder)
    if not infos:
        print(f"no saved models in {folder}")
        return
    print(f"models in {folder}:")
    for info in infos:
        if info.problem is not None:
            print(f"  {info.name}: unusable: {info.problem}")
        else:
            described = f"{info.method} {info.dimensions}, {info.noise_model} noise, trained on {info.trained_on}"
            print(f"  {info.name}: {described}, {info.created}")


def _run_demo(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.cli.demo import run_demo

    return run_demo(args.output_dir, config_from_args(args), progress=progress)


def _run_n2n(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.denoise.files import noise2noise_files

    if len(args.inputs) > 2:
        raise ValueError(f"n2n takes two acquisitions or one 4D series, then the output; got {len(args.inputs)} inputs")
    return noise2noise_files(
        args.inputs, args.output, config_from_args(args), args.residual, args.uncertainty, progress=progress, force=bool(args.force)
    )


def _run_supervised(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.denoise.files import supervised_files

    if args.apply_to is None:
        raise ValueError("nothing to do with the trained network: give --apply-to INPUT OUTPUT")
    input_path, output_path = args.apply_to
    return supervised_files(
        args.noisy,
        args.clean,
        input_path,
        output_path,
        config_from_args(args),
        args.residual,
        args.uncertainty,
        progress,
        force=bool(args.force),
    )


_COMMANDS = {
    "denoise": _run_denoise,
    "apply": _run_apply,
    "demo": _run_demo,
    "n2n": _run_n2n,
    "supervised": _run_supervised,
    "superres": run_superres,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads starve the
    # others (measured 6x slower runs on a loaded 2-core machine). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = reporter(args.progress)
    # SIGTERM (a scheduler, Slicer's Cancel) ends a run as Ctrl-C does: all outputs or none, exit 130.
    with interrupts.command_signals():
        try:
            if args.command == "models":
                _list_models(args)
                return EXIT_OK
            if args.command == "batch":
                return run_batch(args)  # its own exit code: 0 every scan done, 1 some failed, 130 cancelled
            summary = _COMMANDS[args.command](args, progress)
        except (InputError, FileNotFoundError, ValueError) as error:
            return fail(args.progress, f"{error}", EXIT_BAD_INPUT)
        except (KeyboardInterrupt, Cancelled) as error:
            how = f" ({error.args[0]})" if isinstance(error, interrupts.Interrupted) else ""
            return fail(args.progress, f"cancelled{how}; no output was written", EXIT_INTERRUPTED)
        except ResultError as error:
            return fail(args.progress, f"{error}", EXIT_FAILED)
        except Exception as error:  # noqa: BLE001 - every failure must reach the user as one clear line
            return fail(args.progress, f"{type(error).__name__}: {error}", EXIT_FAILED)
        if args.progress != "json":
            _print_summary(summary)
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
