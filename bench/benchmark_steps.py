"""Benchmark: how a method's quality depends on the number of training steps and the learning rate.

Methods train for a time budget, so the number of steps they make depends on the machine; this
script fixes the step count instead (no time budget and no early stop, so the runs are the same on
any machine) and scores the result (PSNR dB / SSIM) in the brain mask of the shared volume, or of its
central ``--crop``-voxel block. It is the evidence behind ``training.min_steps`` (blind-spot N2V) and
R2R's learning rate. Prints a Markdown table (rows: steps and learning rate, columns: variants) and
writes bench/results/steps.json::

    python bench/benchmark_steps.py --method blindspot --variants rician10 --steps 300 600 1000 1500
    python bench/benchmark_steps.py --method r2r --crop 64 --steps 600 --learning-rates 0.001 0.0003

Two ablations of the default method's loss (r2r_training.py), for studies, not settings:
``--r2r-alpha A`` trains with the recorruption strength ``A`` instead of the shipped ``ALPHA``, and
``--r2r-everywhere`` takes the loss over every voxel, as before recorruptible.py left out those whose
noise is not at sigma (noise-free or Rayleigh air)::

    python bench/benchmark_steps.py --variants rician05 rician10 gaussian07 poisson60 --steps 600 --r2r-everywhere --r2r-alpha 0.5

``--r2r-independent`` draws every patch's recorruption noise for itself (no antithetic pairs), and
``--r2r-unweighted`` weighs every voxel alike under Poisson noise (no loss_weights.py)::

    python bench/benchmark_steps.py --variants poisson60 poisson20 --steps 1500 --r2r-unweighted

``--prior FILE`` starts from a candidate prior (bench/train_prior.py's output) instead of the shipped
one, to score it before it replaces the shipped file::

    python bench/benchmark_steps.py --variants gaussian07 poisson60 --steps 1500 --prior /tmp/prior.safetensors
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before torch loads: spinning OpenMP threads make torch 10-30x slower on a busy machine (Testing/conftest.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib and bench
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench.variants import VARIANTS, centre_block, centre_crop, load_bench_data, make_noisy, variant_truth  # noqa: E402
from DeepDenoiseLib.core.metrics import psnr, ssim  # noqa: E402
from DeepDenoiseLib.core.settings import PRECISIONS  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig, TrainingConfig  # noqa: E402
from DeepDenoiseLib.denoise.pipeline import denoise_volume  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--variants", nargs="+", default=["rician10"], choices=list(VARIANTS))
    parser.add_argument("--method", default=DenoiseConfig.method, help="the method to train (default: the default method)")
    parser.add_argument("--steps", nargs="+", type=int, default=[300, 600, 1000, 1500])
    parser.add_argument("--learning-rates", nargs="+", type=float, help="learning rates to compare (default: the method's own)")
    parser.add_argument("--crop", type=int, help="score the central N^3 block only (a faster study)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="several seeds: the median is reported")
    parser.add_argument("--output", type=Path, default=Path("bench/results/steps.json"))
    parser.add_argument("--r2r-alpha", type=float, help="r2r only: train with this recorruption strength (default: the shipped one)")
    parser.add_argument("--r2r-everywhere", action="store_true", help="r2r only: take the loss over every voxel (no recorruptible.py)")
    parser.add_argument(
        "--r2r-independent", action="store_true", help="r2r only: independent recorruption noise for every patch (no antithetic pairs)"
    )
    parser.add_argument(
        "--r2r-unweighted", action="store_true", help="r2r only: every voxel alike in the loss under Poisson noise (no loss_weights.py)"
    )
    parser.add_argument("--prior", type=Path, help="r2r only: start from this prior file (bench/train_prior.py) instead of the shipped one")
    parser.add_argument("--precision", choices=PRECISIONS, help="training arithmetic (default: the method's, auto)")
    args = parser.parse_args()
    r2r_only = args.r2r_alpha is not None or args.r2r_everywhere or args.r2r_independent or args.r2r_unweighted or args.prior
    if r2r_only and args.method != "r2r":
        parser.error("--r2r-alpha, --r2r-everywhere, --r2r-independent, --r2r-unweighted and --prior apply to method r2r only")
    if args.r2r_alpha is not None and not args.r2r_alpha > 0:
        parser.error(f"--r2r-alpha must be positive; got {args.r2r_alpha}")
    per_epoch = TrainingConfig.steps_per_epoch
    bad = [steps for steps in args.steps if steps % per_epoch]
    if bad:
        parser.error(f"step counts must be whole epochs (multiples of {per_epoch}); got {bad}")
    return args


def apply_ablations(args: argparse.Namespace) -> None:
    """Replaces the r2r module's recorruption strength, its learnable voxels, its antithetic pairs,
    its loss weights or its prior, for this process only."""
    from DeepDenoiseLib.denoise import pipeline, prior, r2r_training

    if args.r2r_alpha is not None:
        r2r_training.ALPHA = args.r2r_alpha
    if args.r2r_everywhere:
        r2r_training.recorruptible_voxels = lambda volume, sigma: None  # type: ignore[assignment]
    if args.r2r_independent:
        r2r_training.ANTITHETIC = False
    if args.r2r_unweighted:
        pipeline.intensity_weights = lambda normalized, normalizer, noise: None
    if args.prior:
        candidate = prior.load_prior(args.prior)  # refused here, before any training, if it is not a prior
        r2r_training.load_prior = lambda path=None: candidate  # type: ignore[assignment]


def main() -> None:
    args = parse_args()
    apply_ablations(args)
    data = load_bench_data(args.shared)
    rows: list[dict[str, Any]] = []
    rates = args.learning_rates or [DenoiseConfig.for_method(args.method).training.learning_rate]
    for name in args.variants:
        variant = VARIANTS[name]
        truth = variant_truth(variant, data)
        clean, mask = truth.clean.array, truth.mask
        if args.crop:
            block = centre_block(clean.shape, args.crop)
            clean, mask = clean[block], mask[block]
        noisy = make_noisy(variant, truth.clean, args.shared)
        if args.crop:
            noisy = centre_crop(noisy, args.crop)
        rows.append(
            {
                "variant": name,
                "steps": 0,
                "learning_rate": None,
                "seed": None,
                "psnr": psnr(clean, noisy.array, 1.0, mask),
                "ssim": ssim(clean, noisy.array, 1.0, mask=mask),
            }
        )
        for steps in args.steps:
            for rate in rates:
                for seed in args.seeds:
                    training = {
                        "seed": seed,
                        "budget_seconds": None,
                        "max_epochs": steps // TrainingConfig.steps_per_epoch,
                        "patience": None,
                        "learning_rate": rate,
                        **({"precision": args.precision} if args.precision else {}),
                    }
                    config = DenoiseConfig.for_method(args.method, training=training, noise={"model": variant.model})
                    start = time.perf_counter()
                    result = denoise_volume(noisy, config)
                    row = {
                        "variant": name,
                        "steps": result.summary["training_steps"],
                        "learning_rate": rate,
                        "seed": seed,
                        "psnr": psnr(clean, result.denoised.array, 1.0, mask),
                        "ssim": ssim(clean, result.denoised.array, 1.0, mask=mask),
                        "seconds": time.perf_counter() - start,
                        "training_precision": result.summary.get("training_precision"),
                        "self_check": result.summary.get("self_check"),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)

    print()
    ablations = (
        ([f"alpha {args.r2r_alpha}"] if args.r2r_alpha is not None else [])
        + (["loss over every voxel"] if args.r2r_everywhere else [])
        + (["independent recorruption noise"] if args.r2r_independent else [])
        + (["no loss weights"] if args.r2r_unweighted else [])
        + ([f"prior {args.prior}"] if args.prior else [])
        + ([f"precision {args.precision}"] if args.precision else [])
    )
    print(f"method {args.method}" + (f", central {args.crop}^3 block" if args.crop else "") + "".join(f", {a}" for a in ablations))
    print("| training steps | learning rate | " + " | ".join(VARIANTS[name].title for name in args.variants) + " | wall s (median) |")
    print("|---|---|" + "---|" * len(args.variants) + "---|")
    for steps, rate in [(0, None)] + [(steps, rate) for steps in args.steps for rate in rates]:
        cells = []
        for name in args.variants:
            picked = [row for row in rows if row["variant"] == name and row["steps"] == steps and row["learning_rate"] == rate]
            psnr_db = statistics.median(row["psnr"] for row in picked)
            cells.append(f"{psnr_db:.2f} / {statistics.median(row['ssim'] for row in picked):.3f}")
        timed = [row["seconds"] for row in rows if row["steps"] == steps and row["learning_rate"] == rate and "seconds" in row]
        label = "noisy input" if steps == 0 else str(steps)
        wall = f"{statistics.median(timed):.0f}" if timed else "—"
        print(f"| {label} | {'—' if rate is None else rate} | " + " | ".join(cells) + f" | {wall} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
