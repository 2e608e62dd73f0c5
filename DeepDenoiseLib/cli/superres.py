"""The ``deepdenoise superres`` command: its options, and the run they describe.

>>> deepdenoise superres thick.nii.gz fine.nii.gz --factor 4 --axis z --self-supervised --uncertainty spread.nii.gz
>>> deepdenoise superres lowres.nrrd out.nrrd --factor 4 --train-on hr1.nii.gz hr2.nii.gz --cascade --steps 50
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.core.progress import ProgressCallback
from DeepDenoiseLib.core.settings import DEVICES, deep_merge
from DeepDenoiseLib.superres.config import DOWNSAMPLINGS, PREDICTIONS, SAMPLERS, SUPERRES_AXES, SUPERRES_METHODS, SuperResConfig


def add_superres_parser(commands: Any) -> argparse.ArgumentParser:
    """Adds the ``superres`` sub-command to ``commands`` (the CLI's sub-parsers)."""
    parser = commands.add_parser(
        "superres",
        help="make a volume finer along one axis (diffusion model; supervised or self-supervised)",
        description=(
            "Super-resolution along one axis: the output has FACTOR times as many voxels along AXIS over the "
            "same field of view, with the input's orientation. Learns from high-resolution volumes (--train-on) "
            "or from the input's own finer in-plane axes (--self-supervised)."
        ),
    )
    parser.add_argument("input", type=Path, help="low-resolution volume: .nii, .nii.gz, .nrrd, .mha, or a DICOM folder")
    parser.add_argument("output", type=Path, help="the finer volume (.nii, .nii.gz, .nrrd, .mha)")
    parser.add_argument("--uncertainty", type=Path, help="also write the per-voxel spread of the samples here (ddpm only)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--train-on", type=Path, nargs="+", metavar="HR", help="high-resolution training volumes (supervised)")
    source.add_argument("--self-supervised", action="store_true", help="learn from the input's own in-plane detail")
    group = parser.add_argument_group("settings (each overrides the --config file)")
    group.add_argument("--config", type=Path, help="a JSON super-resolution configuration (see SuperResConfig)")
    group.add_argument("--factor", type=int, help=f"how many times finer (default {SuperResConfig.factor})")
    group.add_argument("--axis", choices=SUPERRES_AXES, help="voxel axis to refine: x (i), y (j), z (k), or auto (the coarsest; default z)")
    group.add_argument("--method", choices=SUPERRES_METHODS, help="ddpm (default) or regression (the L1 prior alone)")
    group.add_argument("--cascade", action="store_true", default=None, help="x2 stages, each its own model (x4 = x2, x2)")
    group.add_argument("--downsampling", choices=DOWNSAMPLINGS, help="how training pairs are degraded: spline or area")
    group.add_argument("--steps", type=int, help="sampling steps (25-100 typical)")
    group.add_argument("--sampler", choices=SAMPLERS, help="ddim (default) or ddpm (ancestral)")
    group.add_argument("--eta", type=float, help="DDIM noise (0: deterministic given the starting noise)")
    group.add_argument("--samples", type=int, help="samples averaged into the result; their spread is the uncertainty")
    group.add_argument("--prediction", choices=PREDICTIONS, help="what the network predicts: v (default), eps or x0")
    group.add_argument("--variance-scale", type=float, help="sampling temperature: scales every noise draw's variance (0-1)")
    group.add_argument("--prior-share", type=float, help="share of the training budget for the regression prior (0: none)")
    group.add_argument("--budget-minutes", type=float, help="training time budget in minutes")
    group.add_argument("--max-steps", type=int, help="training steps at most")
    group.add_argument("--patch-size", type=int, help="sampling patch edge in fine voxels")
    group.add_argument("--device", choices=DEVICES, help="where to run (default auto: GPU if there is one)")
    group.add_argument("--threads", type=int, help="CPU threads for torch")
    group.add_argument("--seed", type=int, help="random seed (training and sampling)")
    parser.add_argument("--force", action="store_true", help="let an output replace an input file")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="how to report progress")
    return parser


def superres_config_from_args(args: argparse.Namespace) -> SuperResConfig:
    """The configuration: the --config file (or the defaults), then each flag given."""
    from DeepDenoiseLib.cli.commands import budget_seconds

    base = SuperResConfig.load(args.config).to_dict() if args.config is not None else SuperResConfig().to_dict()
    overrides: dict[str, Any] = {}

    def put(section: Optional[str], key: str, value: Any) -> None:
        if value is None:
            return
        target = overrides if section is None else overrides.setdefault(section, {})
        target[key] = value

    put(None, "factor", args.factor)
    put(None, "axis", args.axis)
    put(None, "method", args.method)
    put(None, "cascade", args.cascade)
    put(None, "downsampling", args.downsampling)
    if args.self_supervised:
        put(None, "mode", "self-supervised")
    elif args.train_on:
        put(None, "mode", "supervised")
    put("sampling", "steps", args.steps)
    put("sampling", "sampler", args.sampler)
    put("sampling", "eta", args.eta)
    put("sampling", "samples", args.samples)
    put("sampling", "patch_size", args.patch_size)
    put("sampling", "seed", args.seed)
    put("diffusion", "prediction", args.prediction)
    put("diffusion", "variance_scale", args.variance_scale)
    put("diffusion", "prior_share", args.prior_share)
    put("training", "budget_seconds", budget_seconds(args.budget_minutes))
    put("training", "max_steps", args.max_steps)
    put("training", "device", args.device)
    put("training", "threads", args.threads)
    put("training", "seed", args.seed)
    return SuperResConfig.from_dict(deep_merge(base, overrides))


def run_superres(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.superres.pipeline import superres_file

    return superres_file(
        args.input, args.output, superres_config_from_args(args), args.train_on, args.uncertainty, progress=progress, force=args.force
    )
