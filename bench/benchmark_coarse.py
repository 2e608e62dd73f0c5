"""Benchmark: volumes on coarse grids with little noise, where fine anatomy reads as noise in the
tissue, and the air's reading (DeepDenoiseLib/denoise/background_noise.py) that bounds it.

``--noise rician`` (the default): magnitude volumes; ``--noise gaussian``: the template plus real
Gaussian noise, its air zero plus noise. First a table without training: the sigma read in the tissue
(noise_models.tissue_reading, the estimate before the bound), the sigma read in the air and the sigma
a run takes, on the benchmark's variants of that noise, the real volumes of benchmark_real.py (Rician
only) and the template on coarse grids. Then, unless ``--estimates-only``, denoising runs on the
coarse grids, scored in the brain against the truth: the default; the same run given the tissue's
reading as ``noise.sigma`` (what the default did before the bound; its correlation is still
estimated); and dipy's NL-means (its own sigma)::

    python bench/benchmark_coarse.py --budget-seconds 60
    python bench/benchmark_coarse.py --noise gaussian --spacings 5,4,4 3,3,3 --levels 0.004 0.03
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib and bench
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from bench.baselines import dipy_nlm_array  # noqa: E402
from bench.benchmark_real import VOLUMES, load_volume  # noqa: E402
from bench.variants import SHARED_SPACING_MM, VARIANTS, BenchData, load_bench_data, make_noisy, variant_truth  # noqa: E402
from DeepDenoiseLib.core.metrics import psnr  # noqa: E402
from DeepDenoiseLib.core.validation import InputError  # noqa: E402
from DeepDenoiseLib.core.volume import Volume  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig  # noqa: E402
from DeepDenoiseLib.denoise.noise_config import NoiseConfig  # noqa: E402
from DeepDenoiseLib.denoise.noise_models import air_reading, fit_noise_model, tissue_reading  # noqa: E402
from DeepDenoiseLib.denoise.pipeline import denoise_volume  # noqa: E402

NOISE_SEED = 21


def coarse(
    data: BenchData, spacing_kji: tuple[float, float, float], level: float, noise: str = "rician"
) -> tuple[Volume, np.ndarray, np.ndarray]:
    """The template and its brain mask resampled (linearly) to ``spacing_kji`` mm, and the template with
    white Rician or Gaussian noise of ``level`` (seeded): ``(noisy volume, clean, mask)``."""
    factors = [SHARED_SPACING_MM / spacing for spacing in spacing_kji]
    clean = ndimage.zoom(data.clean.array.astype(np.float64), factors, order=1).astype(np.float32)
    mask = ndimage.zoom(data.mask.astype(np.float64), factors, order=1) > 0.5
    rng = np.random.default_rng(NOISE_SEED)
    noisy = clean + level * rng.standard_normal(clean.shape)
    if noise == "rician":
        noisy = np.sqrt(noisy**2 + (level * rng.standard_normal(clean.shape)) ** 2)
    volume = Volume(noisy.astype(np.float32), tuple(reversed(spacing_kji)), data.clean.origin, data.clean.direction.copy())
    return volume, clean, mask


def tissue_sigma(array: np.ndarray, noise: str) -> float:
    """The noise sigma the tissue reads under the ``noise`` model, before the air's bound."""
    return tissue_reading(array, NoiseConfig(model=noise))[0]


def reading_row(name: str, truth: str, array: np.ndarray, noise: str) -> str:
    air = air_reading(array, noise)
    taken = fit_noise_model(array, NoiseConfig(model=noise))
    bound = "bounded by the air" if taken.warnings and "read as noise" in " ".join(taken.warnings) else ""
    air_text = "not read" if air is None else f"{air:.4g}"
    return f"| {name} | {truth} | {tissue_sigma(array, noise):.4g} | {air_text} | {taken.sigma:.4g} {bound} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--spacings", nargs="+", default=["5,4,4", "4,4,4", "3,3,3"], help="grids, k,j,i in mm")
    parser.add_argument("--levels", nargs="+", type=float, default=[0.03, 0.05])
    parser.add_argument("--budget-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--estimates-only", action="store_true")
    parser.add_argument("--noise", choices=["rician", "gaussian"], default="rician", help="the coarse grids' noise and the model runs take")
    args = parser.parse_args(argv)
    data = load_bench_data(args.shared)
    spacings = [tuple(float(value) for value in text.split(",")) for text in args.spacings]
    print("| volume | truth | sigma read in the tissue | in the air | taken by a run |")
    print("|---|---|---|---|---|")
    for name, variant in VARIANTS.items():
        if variant.model == args.noise:
            noisy = make_noisy(variant, variant_truth(variant, data).clean, args.shared)
            print(reading_row(name, f"sigma {variant.level:g}", noisy.array, args.noise), flush=True)
    with tempfile.TemporaryDirectory() as work:
        for package, name, title in VOLUMES if args.noise == "rician" else ():
            try:
                print(reading_row(title, "unknown", load_volume(package, name, Path(work)).array, "rician"), flush=True)
            except (InputError, FileNotFoundError) as error:
                print(f"| {title} | unknown | not read ({type(error).__name__}: see benchmark_real.py's table) | | |")
    for spacing in spacings:
        for level in args.levels:
            volume, _, _ = coarse(data, spacing, level, args.noise)  # type: ignore[arg-type]
            grid = "x".join(f"{value:g}" for value in spacing)
            print(reading_row(f"template, {grid} mm", f"sigma {level:g}", volume.array, args.noise), flush=True)
    if args.estimates_only:
        return 0
    print("\n| grid (mm) | noise | noisy | default | given the tissue's reading | dipy NL-means | notes |")
    print("|---|---|---|---|---|---|---|")
    for spacing in spacings:
        for level in args.levels:
            volume, clean, mask = coarse(data, spacing, level, args.noise)  # type: ignore[arg-type]
            scores, notes = [psnr(clean, volume.array, data_range=1.0, mask=mask)], []
            for label, sigma in (("default", None), ("tissue", tissue_sigma(volume.array, args.noise))):
                training = {"seed": 0, "threads": args.threads, "budget_seconds": args.budget_seconds}
                config = DenoiseConfig.for_method("r2r", noise={"model": args.noise, "sigma": sigma}, training=training)
                start = time.perf_counter()
                result = denoise_volume(volume, config)
                summary = result.summary
                scores.append(psnr(clean, result.denoised.array, data_range=1.0, mask=mask))
                correlation = summary["noise_parameters"].get("neighbour_correlation_kji")
                notes.append(
                    f"{label}: sigma {summary['noise_parameters']['sigma']:.3g}"
                    + (f", correlation {correlation}" if correlation else "")
                    + f", {summary['training_steps']} steps, {time.perf_counter() - start:.0f} s"
                    + ("" if summary["self_check"]["passed"] else ", self-check FAILED")
                )
            output, nlm_sigma = dipy_nlm_array(volume.array, rician=args.noise == "rician", threads=args.threads)
            scores.append(psnr(clean, output, data_range=1.0, mask=mask))
            notes.append(f"NL-means sigma {nlm_sigma:.3g}")
            grid = "x".join(f"{value:g}" for value in spacing)
            print(
                f"| {grid} | {args.noise.capitalize()} {level:g} | "
                + " | ".join(f"{score:.2f}" for score in scores)
                + f" | {'; '.join(notes)} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
