"""The ``deepdenoise`` command line: ``denoise`` a volume file (or a 4D series), ``apply`` a saved model
to another one, list the saved ``models``, run the ``demo`` on the bundled sample, denoise two
acquisitions or a 4D series with Noise2Noise (``n2n``), train on (noisy, clean) pairs and apply the
model (``supervised``), or make a volume finer along one axis (``superres``, see superres_cli.py).

``--progress json`` prints one JSON progress event per line on stdout (see progress.py) so another
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

from DeepDenoiseLib.cli.superres import add_superres_parser, run_superres
from DeepDenoiseLib.core import interrupts
from DeepDenoiseLib.core.progress import Cancelled, JsonLinesReporter, ProgressCallback, ProgressEvent, TextProgressBar
from DeepDenoiseLib.core.settings import DEVICES, deep_merge
from DeepDenoiseLib.core.validation import InputError, ResultError
from DeepDenoiseLib.denoise.config import ARCHITECTURES, DIMENSIONS, LOSSES, METHODS, NOISE_MODELS, PAIRED_METHODS, DenoiseConfig
from DeepDenoiseLib.denoise.model_folder import MODELS_FOLDER_VARIABLE, default_model_folder, list_models, resolve_model_path
from DeepDenoiseLib.denoise.model_record import MODEL_EXTENSION

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The range of --budget-minutes: the configuration's training.budget_seconds range, in minutes.
BUDGET_MINUTES_RANGE = (1.0 / 60.0, 7 * 24 * 60.0)


def budget_seconds(minutes: Optional[float], flag: str = "--budget-minutes") -> Optional[float]:
    """``minutes`` as the configuration's seconds; refused in the flag's own unit when out of range."""
    if minutes is None:
        return None
    low, high = BUDGET_MINUTES_RANGE
    if not low <= minutes <= high:
        raise ValueError(f"{flag} must lie between {low:.3g} (one second) and {high:g} (one week) minutes; got {minutes:g}")
    return minutes * 60.0


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method (each overrides the --config file)")
    group.add_argument(
        "--method", choices=[m for m in METHODS if m not in PAIRED_METHODS], help=f"Noise2Void flavour (default {DenoiseConfig.method})"
    )
    group.add_argument("--struct-axis", choices=("x", "y", "z"), help="structN2V: axis along which the noise is correlated")
    group.add_argument("--masked-fraction", type=float, help="share of voxels hidden per patch")
    _add_training_options(group)
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="how to report progress")


def _add_pair_options(parser: argparse.ArgumentParser, method: str) -> None:
    """The options of the paired commands, whose method the command itself fixes."""
    parser.set_defaults(method=method)
    group = parser.add_argument_group("training (each overrides the --config file)")
    group.add_argument("--architecture", choices=ARCHITECTURES, help="unet (default) or dae: a denoising autoencoder, no skip connections")
    group.add_argument("--loss", choices=LOSSES, help="reconstruction loss: l2 (default, the mean) or l1 (the median)")
    if method == "supervised":
        group.add_argument(
            "--adversarial-weight",
            type=float,
            help="add a patch discriminator's loss at this fraction of the reconstruction loss's gradient (e.g. 0.1; default 0: off)",
        )
    _add_training_options(group)
    parser.add_argument("--residual", type=Path, help="also write input minus output here")
    parser.add_argument("--uncertainty", type=Path, help="also write the per-voxel spread across TTA (needs --tta)")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="how to report progress")


def _add_training_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--config", type=Path, help="a JSON run configuration (see DenoiseConfig)")
    group.add_argument("--dims", choices=DIMENSIONS, help="2d: slice-wise with neighbouring slices as context; 3d: true 3D")
    group.add_argument("--budget-minutes", type=float, help="training time budget in minutes")
    group.add_argument("--epochs", type=int, help="maximum number of training epochs")
    group.add_argument(
        "--min-steps", type=int, help="train at least this many steps even past the budget (default 1000; 0: stop at the budget)"
    )
    group.add_argument("--device", choices=DEVICES, help="where to run (default auto: GPU if there is one)")
    group.add_argument("--threads", type=int, help="CPU threads for torch")
    group.add_argument("--seed", type=int, help="random seed")
    group.add_argument("--patch-size", type=int, help="training patch edge in voxels")
    group.add_argument("--batch-size", type=int, help="training patches per step")
    group.add_argument("--learning-rate", type=float, help="initial learning rate")
    group.add_argument(
        "--noise-model", choices=NOISE_MODELS, help="rician (MRI, default), gaussian (CT), poisson (PET), speckle (ultrasound)"
    )
    group.add_argument("--noise-sigma", type=float, help="noise sigma (poisson: read noise; speckle: relative spread); default: estimated")
    group.add_argument("--noise-gain", type=float, help="poisson only: intensity per photon; default: estimated")
    group.add_argument("--tta", action="store_true", default=None, help="average 8 in-plane flips/rotations at prediction")
    group.add_argument(
        "--force", action="store_true", help="denoise even if the volume looks like a label map, and let an output replace its input"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepdenoise", description="Self-supervised denoising of medical image volumes.")
    commands = parser.add_subparsers(dest="command", required=True)
    denoise = commands.add_parser("denoise", help="train Noise2Void on a volume and write it denoised")
    denoise.add_argument("input", type=Path, help="noisy volume: .nii, .nii.gz, .nrrd, .mha, or a DICOM series folder")
    denoise.add_argument("output", type=Path, help="denoised volume (.nii, .nii.gz, .nrrd, .mha)")
    denoise.add_argument("--residual", type=Path, help="also write input minus output here")
    denoise.add_argument("--uncertainty", type=Path, help="also write the per-voxel spread across TTA (needs --tta)")
    denoise.add_argument(
        "--save-model",
        metavar="MODEL",
        help=f"also save the trained model: a path ending in {MODEL_EXTENSION}, or a NAME kept in the per-user model folder",
    )
    _add_run_options(denoise)
    apply = commands.add_parser("apply", help="denoise a volume (or a 4D series) with a saved model, without training")
    apply.add_argument("model", help=f"a saved model: a path ending in {MODEL_EXTENSION}, or a NAME from 'deepdenoise models'")
    apply.add_argument("input", type=Path, help="noisy volume or 4D series: .nii, .nii.gz, .nrrd, .mha, or a DICOM series folder")
    apply.add_argument("output", type=Path, help="denoised volume (.nii, .nii.gz, .nrrd, .mha)")
    apply.add_argument("--residual", type=Path, help="also write input minus output here")
    apply.add_argument("--uncertainty", type=Path, help="also write the per-voxel spread across TTA (needs --tta)")
    apply.add_argument("--tta", action="store_true", default=None, help="average 8 in-plane flips/rotations at prediction")
    apply.add_argument("--device", choices=DEVICES, help="where to run (default: the model's setting, auto)")
    apply.add_argument("--threads", type=int, help="CPU threads for torch")
    apply.add_argument("--force", action="store_true", help="let an output replace the input file")
    apply.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="how to report progress")
    models = commands.add_parser("models", help="list the models saved in the per-user model folder")
    models.add_argument("--folder", type=Path, help=f"another folder (default: ${MODELS_FOLDER_VARIABLE}, else the per-user folder)")
    models.add_argument("--progress", choices=("bar", "json", "none"), default="none", help=argparse.SUPPRESS)
    demo = commands.add_parser("demo", help="denoise the bundled sample and score it against its clean truth")
    demo.add_argument("--output-dir", type=Path, default=Path("demo_output"), help="where results go (default demo_output)")
    _add_run_options(demo)
    n2n = commands.add_parser(
        "n2n",
        help="Noise2Noise: denoise two acquisitions of the same anatomy, or a 4D series",
        description="Noise2Noise. With FIRST SECOND OUTPUT: two acquisitions of the same anatomy on one grid (repeat "
        "scans, even/odd averages) train a network to predict each from the other; OUTPUT is predicted from both. "
        "With SERIES OUTPUT: a 4D series (fMRI), neighbouring frames as the pairs; every frame is denoised on its own.",
    )
    n2n.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="FIRST SECOND (two acquisitions) or SERIES (one 4D file)")
    n2n.add_argument("output", type=Path, help="denoised volume or series (.nii, .nii.gz, .nrrd, .mha)")
    _add_pair_options(n2n, "noise2noise")
    supervised = commands.add_parser(
        "supervised",
        help="train on (noisy, clean) pairs, then denoise a volume with the model",
        description="Supervised training on (noisy, clean) pairs on matching grids, e.g. low-dose/full-dose CT or "
        "single/many-average MRI; --apply-to then denoises another volume with the trained network.",
    )
    supervised.add_argument("--noisy", nargs="+", type=Path, required=True, help="noisy training volumes")
    supervised.add_argument("--clean", nargs="+", type=Path, required=True, help="their clean partners, in the same order")
    supervised.add_argument("--apply-to", nargs=2, type=Path, metavar=("INPUT", "OUTPUT"), help="denoise INPUT into OUTPUT")
    _add_pair_options(supervised, "supervised")
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
    put("model", "architecture", getattr(args, "architecture", None))
    put("masking", "struct_axis", getattr(args, "struct_axis", None))
    put("training", "budget_seconds", budget_seconds(args.budget_minutes))
    put("training", "max_epochs", args.epochs)
    put("training", "min_steps", args.min_steps)
    put("training", "device", args.device)
    put("training", "threads", args.threads)
    put("training", "seed", args.seed)
    put("training", "patch_size", args.patch_size)
    put("training", "batch_size", args.batch_size)
    put("training", "learning_rate", args.learning_rate)
    put("masking", "masked_fraction", getattr(args, "masked_fraction", None))
    put("training", "loss", getattr(args, "loss", None))
    put("training", "adversarial_weight", getattr(args, "adversarial_weight", None))
    put("prediction", "tta", args.tta)
    put("noise", "model", args.noise_model)
    put("noise", "sigma", args.noise_sigma)
    put("noise", "gain", args.noise_gain)
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
    if "model" in summary:
        work = f"model {summary['model']} on {summary.get('device', '-')}"
    else:
        steps = summary.get("training_steps", 0)
        work = f"training {summary.get('training_seconds', 0):.1f} s, {steps} steps on {summary.get('device', '-')}"
    frames = f", {summary['frames']} frames" if "frames" in summary else ""
    lines = [f"done in {summary.get('seconds', 0):.1f} s ({work}; prediction {summary.get('prediction_seconds', 0):.1f} s{frames})"]
    if "noise_sigma_before" in summary:
        lines.append(f"estimated noise sigma: {summary['noise_sigma_before']:.4g} before, {summary['noise_sigma_after']:.4g} after")
    for warning in summary.get("warnings", []):
        lines.append(f"warning: {warning}")
    if "output" in summary:
        lines.append(f"wrote {summary['output']}")
    if "saved_model" in summary:
        lines.append(f"saved the model to {summary['saved_model']}")
    print("\n".join(lines), file=sys.stderr)


def _run_denoise(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.denoise.files import denoise_file

    config = config_from_args(args)
    save_model_path = None if args.save_model is None else resolve_model_path(args.save_model, for_writing=True)
    return denoise_file(
        args.input, args.output, config, args.residual, args.uncertainty, progress=progress,
        save_model_path=save_model_path, force=args.force,
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
        force=args.force,
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
        args.inputs, args.output, config_from_args(args), args.residual, args.uncertainty, progress=progress, force=args.force
    )


def _run_supervised(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.denoise.files import supervised_files

    if args.apply_to is None:
        raise ValueError("nothing to do with the trained network: give --apply-to INPUT OUTPUT")
    input_path, output_path = args.apply_to
    return supervised_files(
        args.noisy, args.clean, input_path, output_path, config_from_args(args), args.residual, args.uncertainty, progress, force=args.force
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
    progress = _reporter(args.progress)
    # SIGTERM (a scheduler, Slicer's Cancel) ends a run as Ctrl-C does: all outputs or none, exit 130.
    with interrupts.command_signals():
        try:
            if args.command == "models":
                _list_models(args)
                return EXIT_OK
            summary = _COMMANDS[args.command](args, progress)
        except (InputError, FileNotFoundError, ValueError) as error:
            return _fail(args.progress, f"{error}", EXIT_BAD_INPUT)
        except (KeyboardInterrupt, Cancelled) as error:
            how = f" ({error.args[0]})" if isinstance(error, interrupts.Interrupted) else ""
            return _fail(args.progress, f"cancelled{how}; no output was written", EXIT_INTERRUPTED)
        except ResultError as error:
            return _fail(args.progress, f"{error}", EXIT_FAILED)
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
