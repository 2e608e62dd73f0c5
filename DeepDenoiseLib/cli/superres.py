"""The ``deepdenoise superres`` command: its options, and the run they describe.

>>> deepdenoise superres thick.nii.gz fine.nii.gz --factor 4 --axis z --self-supervised --uncertainty spread.nii.gz
>>> deepdenoise superres lowres.nrrd out.nrrd --factor 4 --train-on hr1.nii.gz hr2.nii.gz --cascade --steps 50
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from DeepDenoiseLib.cli.flags import add_setting_flags, setting_overrides
from DeepDenoiseLib.core.progress import ProgressCallback
from DeepDenoiseLib.core.settings import deep_merge
from DeepDenoiseLib.superres.config import SuperResConfig


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
    add_setting_flags(group, SuperResConfig, "superres")
    parser.add_argument("--force", action="store_true", help="let an output replace an input file")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="how to report progress")
    return parser


def superres_config_from_args(args: argparse.Namespace) -> SuperResConfig:
    """The configuration: the --config file (or the defaults), then each flag given."""
    base = SuperResConfig.load(args.config).to_dict() if args.config is not None else SuperResConfig().to_dict()
    overrides = setting_overrides(args, SuperResConfig, "superres")
    if args.self_supervised:
        overrides["mode"] = "self-supervised"
    elif args.train_on:
        overrides["mode"] = "supervised"
    return SuperResConfig.from_dict(deep_merge(base, overrides))


def run_superres(args: argparse.Namespace, progress: Optional[ProgressCallback]) -> dict[str, Any]:
    from DeepDenoiseLib.superres.pipeline import superres_file

    return superres_file(
        args.input, args.output, superres_config_from_args(args), args.train_on, args.uncertainty, progress=progress, force=args.force
    )
