"""Benchmark: real MR volumes without a clean truth, the default method against dipy's NL-means, judged
by no-reference measures (bench/no_reference.py): the noise left in flat tissue, and whether the
residual (input minus output) looks like noise or like anatomy (its correlation with the edges, and
its spread at the strongest edges against flat tissue).

The volumes are real scans bundled with dipy and nibabel (no download; this project has never tuned on
them): dipy's ``test_piesno.nii.gz`` (MR magnitude, 96x96x14), ``S0_10slices.nii.gz`` (a diffusion
b0 volume, 128x128x10), ``aniso_vox.nii.gz`` (58x58x24, 4x4x5 mm), and nibabel's ``example4d.nii.gz``
(the first frame of an fMRI run, 128x96x24). The same EPI frame is also written as a 16-bit DICOM MR
series and read back from its folder, as a user's exported series is (bench/dicom_series.py: no real
multi-slice MR DICOM series is available without a download). Every method assumes Rician noise
(magnitude MR; the library's default).

Then real 4D series, the 4D default (MP-PCA, ``denoise_series``) against dipy's ``mppca``: nibabel's
``functional.nii`` (fMRI, 20 frames of 17x21x3) and dipy's ``small_64D.nii`` and ``small_101D.nii.gz``
(diffusion series of 65 and 102 volumes), judged by tSNR in tissue before and after, and whether the
residual is white in time and free of anatomy (bench/no_reference.py ``series_measures``).

Prints two Markdown tables and writes the rows as JSON::

    python bench/benchmark_real.py --threads 2
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
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.baselines import dipy_nlm_array  # noqa: E402
from bench.benchmark_series import dipy_mppca  # noqa: E402
from bench.dicom_series import write_mr_series  # noqa: E402
from bench.no_reference import no_reference_measures, series_measures  # noqa: E402
from DeepDenoiseLib.core.metrics import mean_image_mask, temporal_snr  # noqa: E402
from DeepDenoiseLib.core.validation import InputError  # noqa: E402
from DeepDenoiseLib.core.volume import Volume  # noqa: E402
from DeepDenoiseLib.core.volume_io import read_volume  # noqa: E402
from DeepDenoiseLib.denoise.config import DenoiseConfig  # noqa: E402
from DeepDenoiseLib.denoise.pipeline import denoise_series, denoise_volume  # noqa: E402

#: (package, file in its data folder, what it is): 3D volumes, then 4D series
VOLUMES = (
    ("dipy", "test_piesno.nii.gz", "MR magnitude (dipy test_piesno), 96x96x14"),
    ("dipy", "S0_10slices.nii.gz", "diffusion b0 (dipy S0_10slices), 128x128x10"),
    ("dipy", "aniso_vox.nii.gz", "anisotropic 4x4x5 mm (dipy aniso_vox), 58x58x24"),
    ("nibabel", "example4d.nii.gz", "fMRI EPI, first frame (nibabel example4d), 128x96x24"),
    ("dicom", "example4d.nii.gz", "the same EPI frame as a 16-bit DICOM MR series (24 files), read from its folder"),
)
SERIES = (
    ("nibabel", "functional.nii", "fMRI (nibabel functional.nii), 17x21x3, 20 frames"),
    ("dipy", "small_64D.nii", "diffusion (dipy small_64D), 10x10x10, 65 volumes"),
    ("dipy", "small_101D.nii.gz", "diffusion (dipy small_101D), 6x10x10, 102 volumes"),
)


def data_file(package: str, name: str) -> Path:
    if package == "dicom":  # written from nibabel's file (load_volume)
        return data_file("nibabel", name)
    if package == "dipy":
        import dipy

        return Path(os.path.dirname(dipy.__file__)) / "data" / "files" / name
    import nibabel

    return Path(os.path.dirname(nibabel.__file__)) / "tests" / "data" / name


def load_volume(package: str, name: str, work: Path) -> Volume:
    """The first frame of a bundled file; for package ``dicom``, nibabel's file of that name written
    as a DICOM MR series into ``work`` and read back from the folder."""
    if package != "dicom":
        return first_frame(read_volume(data_file(package, name), allow_4d=True))
    folder = work / f"{name.split('.')[0]}_dicom"
    write_mr_series(first_frame(read_volume(data_file("nibabel", name), allow_4d=True)), folder)
    return read_volume(folder)


def first_frame(volume: Volume) -> Volume:
    return volume.with_array(np.asarray(volume.array[0] if volume.is_4d else volume.array, dtype=np.float32))


def ours(threads: int, budget_seconds: float) -> Callable[[Volume], tuple[np.ndarray, str]]:
    def run(volume: Volume) -> tuple[np.ndarray, str]:
        config = DenoiseConfig.for_method("r2r", training={"seed": 0, "threads": threads, "budget_seconds": budget_seconds})
        result = denoise_volume(volume, config)
        summary = result.summary
        passed = summary["self_check"]["passed"]
        sigma = summary["noise_parameters"].get("sigma")
        correlation = summary["noise_parameters"].get("neighbour_correlation_kji")
        alike = (
            f", neighbour correlation {', '.join(f'{value:.2f}' for value in correlation)} (k, j, i)" if correlation else ", white noise"
        )
        note = f"{summary['training_steps']} steps, sigma {sigma:.4g}{alike}, self-check {'passed' if passed else 'FAILED: input returned'}"
        note += f" (SURE {summary['self_check']['error_to_noise']})"
        if any("below zero" in warning for warning in summary["warnings"]):
            note += "; warned: SURE below zero, noise level taken too high"
        return result.denoised.array, note

    return run


def dipy_nlm(threads: int) -> Callable[[Volume], tuple[np.ndarray, str]]:
    def run(volume: Volume) -> tuple[np.ndarray, str]:
        output, sigma = dipy_nlm_array(volume.array, rician=True, threads=threads)
        return output, f"sigma {sigma:.4g}"

    return run


def series_default(series: Volume) -> tuple[np.ndarray, str]:
    result = denoise_series(series)
    passed = result.summary["self_check"]["passed"]
    return result.denoised.array, f"{result.summary['method']}, self-check {'passed' if passed else 'FAILED: input returned'}"


def series_dipy(series: Volume) -> tuple[np.ndarray, str]:
    return dipy_mppca(np.asarray(series.array, dtype=np.float64)).astype(np.float32), "patch radius 2"


def series_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for package, name, title in SERIES:
        path = data_file(package, name)
        series = read_volume(path, allow_4d=True)
        mask = mean_image_mask(series.array)
        for method, run in (("DeepDenoise 4D default (MP-PCA)", series_default), ("dipy mppca", series_dipy)):
            start = time.perf_counter()
            try:
                output, note = run(series)
            except Exception as error:  # noqa: BLE001 - a method that cannot run on this series is reported
                rows.append({"series": title, "method": method, "note": f"failed: {error}"})
                continue
            seconds = time.perf_counter() - start
            measures = series_measures(series.array, output, mask)
            tsnr = {"tsnr_before": temporal_snr(series.array, mask), "tsnr_after": temporal_snr(output, mask)}
            rows.append({"series": title, "method": method, "seconds": seconds, "note": note, **tsnr, **measures})
            print(f"[{name}] {method}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    return rows


def print_series_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| series | method | tSNR in tissue, before → after | residual lag-1 autocorrelation | residual–anatomy correlation | share of variance removed | s | note |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "seconds" not in row:
            print(f"| {row['series']} | {row['method']} | | | | | | {row['note']} |")
            continue
        print(
            f"| {row['series']} | {row['method']} | {row['tsnr_before']:.1f} → {row['tsnr_after']:.1f} | {row['residual_lag1']:.2f} | "
            f"{row['residual_anatomy_correlation']:.2f} | {row['removed_share']:.2f} | {row['seconds']:.1f} | {row['note']} |"
        )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-seconds", type=float, default=240.0, help="the default method's training budget")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "real.json")
    parser.add_argument("--series-only", action="store_true", help="only the 4D series (seconds), not the 3D volumes")
    parser.add_argument(
        "--volumes",
        nargs="+",
        help="only the 3D volumes whose file name (or 'dicom', the DICOM series) contains one of these words (and no series)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = {
        "DeepDenoise default (R2R)": ours(args.threads, args.budget_seconds),
        "dipy NL-means, block radius 2, Rician": dipy_nlm(args.threads),
    }
    chosen = [item for item in VOLUMES if args.volumes is None or any(word in f"{item[0]}:{item[1]}" for word in args.volumes)]
    rows = [] if args.series_only else volume_rows(chosen, methods)
    series = [] if args.volumes else series_rows()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"volumes": rows, "series": series}, indent=1) + "\n")
    if rows:
        print_table(rows)
        print()
    if series:
        print_series_table(series)
    return 0


def volume_rows(
    chosen: Sequence[tuple[str, str, str]], methods: dict[str, Callable[[Volume], tuple[np.ndarray, str]]]
) -> list[dict[str, Any]]:
    """Every method on every chosen 3D volume, by the no-reference measures."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="benchmark_real_") as work:
        for package, name, title in chosen:
            path = data_file(package, name)
            if not path.is_file():
                print(f"benchmark_real: {path} is missing ({package} not installed?); skipped", file=sys.stderr)
                continue
            try:
                volume = load_volume(package, name, Path(work))
            except InputError as error:  # a file the library refuses is reported, not measured
                rows.append({"volume": title, "method": "not read", "note": str(error)})
                print(f"[{name}] not read: {error}", file=sys.stderr, flush=True)
                continue
            for method, run in methods.items():
                start = time.perf_counter()
                output, note = run(volume)
                seconds = time.perf_counter() - start
                row = {"volume": title, "method": method, "seconds": seconds, "note": note, **no_reference_measures(volume.array, output)}
                rows.append(row)
                measured = {key: value for key, value in row.items() if key not in ("volume", "method")}
                print(f"[{package}:{name}] {method}: {json.dumps(measured)}", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| volume | method | noise in flat tissue, before → after | residual–edge correlation | residual spread, edges / flat | s | note |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if row["method"] == "not read":
            print(f"| {row['volume']} | not read: {row['note']} | | | | | |")
            continue
        print(
            f"| {row['volume']} | {row['method']} | {row['noise_flat_before']:.4g} → {row['noise_flat_after']:.4g} | "
            f"{row['residual_edge_correlation']:.2f} | {row['residual_edge_ratio']:.2f} | {row['seconds']:.0f} | {row['note']} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
