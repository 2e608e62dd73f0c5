"""What the correlated-noise estimate (DeepDenoiseLib/denoise/noise_correlation.py) reads, with no
training: on the benchmark's Gaussian and Rician variants (white noise, and the correlated one), on
the template with white noise of 1 to 10 % of the range and with correlated noise of known
correlation, on the real volumes benchmark_real.py uses (where a file holds two frames, next to
what their difference reads: bench/no_reference.py), and on a CT-like head in Hounsfield units.
Each is read as the pipeline reads it under its noise model (``magnitude`` for rician). Prints a Markdown table; takes about a
minute on a 2-core CPU::

    python bench/noise_correlation_check.py

The figures quoted in docs/methods.md (Correlated noise) and bench/README.md come from it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib and bench
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench.benchmark_real import VOLUMES, data_file, load_volume  # noqa: E402
from bench.no_reference import frame_difference_noise  # noqa: E402
from bench.variants import VARIANTS, correlated_noise, ct_like, load_bench_data, make_noisy, variant_truth  # noqa: E402
from DeepDenoiseLib.core.validation import InputError  # noqa: E402
from DeepDenoiseLib.core.volume_io import read_volume  # noqa: E402
from DeepDenoiseLib.denoise.noise_correlation import NoiseCorrelation, estimate_noise_correlation  # noqa: E402


def row(name: str, truth: str, estimate: NoiseCorrelation | None, flipped: str = "") -> str:
    if estimate is None:
        return f"| {name} | {truth} | no estimate (too small or too little flat tissue) | | | {flipped} |"
    one = ", ".join(f"{axis[0]:.2f}" for axis in estimate.lags)
    two = ", ".join(f"{axis[1]:.2f}" for axis in estimate.lags)
    verdict = "white" if estimate.is_white else "correlated"
    return f"| {name} | {truth} | {one} | {two} | {estimate.sigma:.4g} ({verdict}) | {flipped} |"


def flipped_sigmas(array: np.ndarray) -> str:
    """The sigma read with the volume flipped along k, j and i in turn: the same voxels stored the other
    way round (a DICOM series of a left-handed grid reads with its slices reversed)."""
    readings = [estimate_noise_correlation(np.ascontiguousarray(np.flip(array, axis))) for axis in range(3)]
    return ", ".join("none" if reading is None else f"{reading.sigma:.4g}" for reading in readings)


def frame_difference_truth(package: str, name: str) -> str:
    """For a file that holds two frames or more, what the difference of its first two frames reads
    (bench/no_reference.py: a reference, an upper bound where the signal changed); else "unknown".
    The correlations do not depend on the storage order, so the DICOM row takes its source's."""
    series = read_volume(data_file(package, name), allow_4d=True)
    if not series.is_4d or len(series.array) < 2:
        return "unknown"
    reading = frame_difference_noise(series.array[0], series.array[1])
    correlation = ", ".join(f"{value:.2f}" for value in reading["neighbour_correlation_kji"])  # type: ignore[attr-defined]
    return f"two frames' difference: sigma {reading['sigma']:.4g}, {correlation}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    data = load_bench_data(args.shared)
    clean = data.clean.array.astype(np.float32)
    print(
        "| volume | truth | correlation one voxel apart (k, j, i) | two apart | sigma (verdict) | sigma, the volume flipped along k, j, i |"
    )
    print("|---|---|---|---|---|---|")
    for name, variant in VARIANTS.items():
        if variant.model in ("gaussian", "rician"):
            noisy = make_noisy(variant, variant_truth(variant, data).clean, args.shared)
            truth = f"sigma {variant.level:g}, " + ("correlated 0.50 / 0.06" if variant.correlation_width else "white")
            print(row(name, truth, estimate_noise_correlation(noisy.array, magnitude=variant.model == "rician")))
    for level in (0.01, 0.02, 0.04, 0.1):
        noisy = clean + level * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
        print(row(f"template + white Gaussian {level:g}", f"sigma {level:g}, white", estimate_noise_correlation(noisy, magnitude=False)))
    for width, level in ((0.5, 0.05), (0.6, 0.02), (0.8, 0.05)):
        noise = correlated_noise(clean.shape, width, np.random.default_rng(3)).astype(np.float32)
        one, two = np.exp(-1.0 / (4 * width**2)), np.exp(-4.0 / (4 * width**2))
        print(
            row(
                f"template + Gaussian {level:g} correlated by {width} voxels",
                f"sigma {level:g}, {one:.2f} / {two:.2f}",
                estimate_noise_correlation(clean + level * noise, magnitude=False),
            )
        )
    with tempfile.TemporaryDirectory() as work:
        for package, name, title in VOLUMES:
            try:
                volume = load_volume(package, name, Path(work))
            except (InputError, FileNotFoundError) as error:
                print(f"| {title} | unknown | not read: {str(error)[:80]} | | | |")
                continue
            truth = frame_difference_truth(package, name)
            # MR magnitude: the default model, rician
            print(row(title, truth, estimate_noise_correlation(volume.array), flipped_sigmas(volume.array)))
    for width, label in ((0.8, "correlated 0.68 / 0.21"), (0.0, "white")):
        rng = np.random.default_rng(11)
        noise = correlated_noise(clean.shape, width, rng) if width else rng.standard_normal(clean.shape)
        noisy = (ct_like(clean) + 8.0 * noise).astype(np.float32)
        for magnitude in (False, True):
            name = "CT-like head in HU, read as " + ("rician (its foreground by the bright end: the skull)" if magnitude else "gaussian")
            print(row(name, f"sigma 8, {label}", estimate_noise_correlation(noisy, magnitude=magnitude)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
