"""What the sub-commands of ``deepdenoise`` share: the exit codes, the run configuration from the
``--config`` file and the flags, the progress flag and its reporters, and the one error line.

>>> config = config_from_args(args)            # DenoiseConfig: --config file, then each flag given
>>> return fail(args.progress, "no such file", EXIT_BAD_INPUT)
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from DeepDenoiseLib.cli.flags import setting_overrides
from DeepDenoiseLib.core.progress import JsonLinesReporter, ProgressCallback, ProgressEvent, TextProgressBar
from DeepDenoiseLib.core.settings import deep_merge
from DeepDenoiseLib.denoise.config import METHOD_DECIDES, DenoiseConfig

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def config_from_args(
    args: argparse.Namespace, command: Optional[str] = None, series: bool = False, frames: Optional[int] = None
) -> DenoiseConfig:
    """The run configuration: the --config file (or the method's defaults), then each flag given
    (the flags ``command`` offers; default: the sub-command run). A method given with a --config
    file of another method takes the new method's own defaults for what a method decides
    (DenoiseConfig.for_method), and the file's other settings. With neither a --method nor a
    --config, the method is the default for the input: MP-PCA for a 4D ``series`` (of at least 10
    ``frames`` when known), else R2R."""
    if args.config is not None:
        base = DenoiseConfig.load(args.config).to_dict()
        if args.method is not None and args.method != base["method"]:
            kept = {key: value for key, value in base.items() if key != "method"}
            for path in METHOD_DECIDES:
                section, name = path.split(".")
                kept[section] = {key: value for key, value in kept[section].items() if key != name}
            base = deep_merge(DenoiseConfig.for_method(args.method).to_dict(), kept)
    overrides = setting_overrides(args, DenoiseConfig, command or args.command, skip=("method",))
    if args.config is None:
        if args.method is None:
            return DenoiseConfig.for_input(series, frames, overrides)
        base = DenoiseConfig.for_method(args.method).to_dict()
    return DenoiseConfig.from_dict(deep_merge(base, overrides))


def add_progress_flag(parser: argparse.ArgumentParser, default: str = "bar", help: str = "how to report progress") -> None:
    parser.add_argument("--progress", choices=("bar", "json", "none"), default=default, help=help)


def reporter(kind: str) -> Optional[ProgressCallback]:
    """The progress callback ``--progress`` names: JSON lines on stdout, a bar on stderr, or none."""
    if kind == "json":
        return JsonLinesReporter(sys.stdout)
    if kind == "bar":
        return TextProgressBar(sys.stderr)
    return None


def fail(progress_kind: str, message: str, code: int) -> int:
    """Says what went wrong (an ``error`` event too with ``--progress json``); returns ``code``."""
    if progress_kind == "json":
        JsonLinesReporter(sys.stdout)(ProgressEvent("error", 0.0, message=message))
    print(f"deepdenoise: error: {message}", file=sys.stderr)
    return code
