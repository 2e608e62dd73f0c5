"""Trains the noise-conditioned prior that method ``r2r`` starts from, on procedural volumes only.

The package ships the result (DeepDenoiseLib/data/priors/noise_conditioned_2p5d.safetensors), made in
two runs of 30000 steps, the second starting from the first; anyone can rerun them (on 2 CPU cores
in bfloat16, 35 and 38 minutes; a GPU makes them minutes)::

    python bench/train_prior.py --steps 30000 --threads 2 --output first.safetensors
    python bench/train_prior.py --start-from first.safetensors --seed 1 --learning-rate 3e-4 --steps 30000 --threads 2
    python bench/train_prior.py --steps 100000 --batch-size 32 --device cuda --output my_prior.safetensors

``--start-from`` trains a prior further: the same schedule again from its weights, on a fresh stream
of procedural volumes when ``--seed`` differs; the record keeps the first prior's record, and the
held-out loss of its weights on this run's patches (``start_validation_loss``).

The file records its settings, this command line, the steps made, the arithmetic and the time it
took. No real image is used, not even to score the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402

import torch  # noqa: E402

from DeepDenoiseLib.core.progress import ProgressEvent  # noqa: E402
from DeepDenoiseLib.core.settings import PRECISIONS  # noqa: E402
from DeepDenoiseLib.denoise.prior import SHIPPED_PRIOR, PriorArchitecture, load_prior, save_prior  # noqa: E402
from DeepDenoiseLib.denoise.prior_training import PriorTrainingSettings, train_prior  # noqa: E402

#: The architecture flags and the PriorArchitecture fields they set.
ARCHITECTURE_FLAGS = {"context_slices": "context_slices", "depth": "depth", "channels": "base_channels"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = PriorTrainingSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=SHIPPED_PRIOR, help="where to write the prior (default: the shipped one)")
    parser.add_argument("--start-from", type=Path, help="a prior to train further (its architecture is kept; default: random weights)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--budget-minutes", type=float, help="stop after this much training time (default: the step count only)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    architecture = defaults.architecture
    parser.add_argument("--channels", type=int, help=f"default {architecture.base_channels}; not with --start-from")
    parser.add_argument("--depth", type=int, help=f"default {architecture.depth}; not with --start-from")
    parser.add_argument("--context-slices", type=int, help=f"default {architecture.context_slices}; not with --start-from")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument(
        "--precision", default=defaults.precision, choices=PRECISIONS, help="training arithmetic (auto: bfloat16 where it is faster)"
    )
    args = parser.parse_args(argv)
    shape_flags = [flag for flag in ARCHITECTURE_FLAGS if getattr(args, flag) is not None]
    if args.start_from is not None and shape_flags:
        parser.error(f"--start-from keeps the prior's architecture; drop --{shape_flags[0].replace('_', '-')}")
    return args


def given_architecture(args: argparse.Namespace) -> PriorArchitecture:
    """The default architecture with the flags given on the command line."""
    given = {field: getattr(args, flag) for flag, field in ARCHITECTURE_FLAGS.items() if getattr(args, flag) is not None}
    return dataclasses.replace(PriorArchitecture(), **given)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    start_from = load_prior(args.start_from) if args.start_from is not None else None
    architecture = start_from.architecture if start_from is not None else given_architecture(args)
    settings = PriorTrainingSettings(
        steps=args.steps,
        budget_seconds=None if args.budget_minutes is None else 60.0 * args.budget_minutes,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        precision=args.precision,
        architecture=architecture,
    )

    def show(event: ProgressEvent) -> None:
        if event.message and (event.message.endswith("0 steps") or "00" in event.message.split()[-1]):
            print(f"{event.message}  loss {event.loss}", flush=True)

    network, history = train_prior(settings, progress=show, start_from=start_from)
    record = {
        "command": "python bench/train_prior.py " + shlex.join(argv),
        "settings": {key: value for key, value in dataclasses.asdict(settings).items() if key != "architecture"},
        "steps": history.steps,
        "precision": history.precision,
        "seconds": round(history.seconds, 1),
        "best_validation_loss": history.best_validation_loss,
        **({} if start_from is None else {"started_from": start_from.training, "start_validation_loss": history.initial_validation_loss}),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
    }
    path = save_prior(args.output, network.cpu(), record)
    print(f"wrote {path}: {history.steps} steps in {history.seconds:.0f} s, best validation loss {history.best_validation_loss:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
