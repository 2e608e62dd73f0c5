"""Benchmark: scans per hour for a cohort of small volumes, denoised three ways: a loop of
``deepdenoise denoise`` calls (what a shell script does: one process and one training per scan, one
after the other), ``deepdenoise batch --per-scan`` (a training per scan, scans side by side on Dask
workers) and ``deepdenoise batch`` (one shared model trained on a sample of four scans, then applied).

The cohort: ``--scans`` crops (64 x 64 x 24 voxels) of the bundled sample's clean slab with Rician
noise of sigma 0.05, each with its own seed. Every training makes a fixed number of steps
(``--epochs`` of 50 steps, no time budget), so the runs do the same work on any machine. Prints a
Markdown table and writes bench/results/batch.json::

    python bench/benchmark_batch.py --scans 16 --epochs 1 --workers 1 2
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout: find DeepDenoiseLib
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Optional  # noqa: E402

from DeepDenoiseLib.core.noise_simulation import add_rician_noise  # noqa: E402
from DeepDenoiseLib.core.sample_data import sample_paths  # noqa: E402
from DeepDenoiseLib.core.volume import Volume  # noqa: E402
from DeepDenoiseLib.core.volume_io import read_volume, write_volume  # noqa: E402

#: The crop of the sample slab each scan is, [k, j, i].
CROP = (slice(12, 36), slice(28, 92), slice(20, 84))
NOISE_SIGMA = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of 50 steps per training")
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="batch --per-scan with these worker counts (0: the default)")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the loop of denoise calls")
    parser.add_argument("--output", type=Path, default=Path("bench/results/batch.json"))
    return parser.parse_args()


def make_cohort(folder: Path, count: int) -> list[Path]:
    clean = read_volume(sample_paths().clean)
    crop = clean.array[CROP]
    folder.mkdir(parents=True)
    paths = []
    for seed in range(count):
        path = folder / f"scan_{seed:02d}.nii.gz"
        write_volume(Volume(add_rician_noise(crop, NOISE_SIGMA, 1000 + seed), clean.spacing, clean.origin, clean.direction), path)
        paths.append(path)
    return paths


def deepdenoise(*words: str) -> tuple[float, list[dict[str, Any]]]:
    """Runs ``python -m DeepDenoiseLib WORDS --progress json``; its wall seconds and JSON events."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "DeepDenoiseLib", *words, "--progress", "json"], capture_output=True, text=True, env=environment, check=False
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"deepdenoise {' '.join(words)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return seconds, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def run_loop(scans: list[Path], out: Path, training: list[str]) -> dict[str, Any]:
    out.mkdir()
    wall = training_seconds = prediction_seconds = 0.0
    for path in scans:
        seconds, events = deepdenoise("denoise", str(path), str(out / path.name), *training)
        summary = events[-1]["summary"]
        wall += seconds
        training_seconds += summary["training_seconds"]
        prediction_seconds += summary["prediction_seconds"]
    return row(
        "loop of `denoise` calls", "1 process at a time, torch's own threads", 1, len(scans), wall, training_seconds, prediction_seconds
    )


def run_batch(way: str, folder: Path, out: Path, training: list[str], workers: Optional[int], per_scan: bool) -> dict[str, Any]:
    words = ["batch", str(folder), "--output-dir", str(out), *training]
    words += ["--per-scan"] if per_scan else []
    words += ["--workers", str(workers)] if workers else []
    wall, events = deepdenoise(*words)
    summary = events[-1]["summary"]
    rows = json.loads((out / "deepdenoise_report.json").read_text(encoding="utf-8"))["scans"]
    if summary["counts"]["done"] != len(rows):
        raise RuntimeError(f"{way}: not every scan was done: {summary['counts']}")
    concurrency = int(summary["workers"].split(" ", 1)[0])
    return row(
        way,
        summary["workers"],
        concurrency,
        len(rows),
        wall,
        sum(scan["training_seconds"] or 0.0 for scan in rows),
        sum(scan["prediction_seconds"] or 0.0 for scan in rows),
    )


def row(way: str, workers: str, concurrency: int, scans: int, wall: float, training: float, prediction: float) -> dict[str, Any]:
    """One line of the table. "Everything else" is the worker time not spent training or predicting:
    process and cluster start-up, imports, reading and writing, and workers idle (waiting for the
    shared model, or for the last scans)."""
    return {
        "way": way,
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "scans_per_hour": round(scans * 3600.0 / wall, 1),
        "training_seconds": round(training, 1),
        "prediction_seconds": round(prediction, 1),
        "everything_else_seconds": round(wall * concurrency - training - prediction, 1),
    }


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()
    training = ["--epochs", str(args.epochs), "--min-steps", "0", "--budget-minutes", "600"]
    results = []
    with tempfile.TemporaryDirectory(prefix="deepdenoise-batch-bench-") as work:
        folder = Path(work) / "cohort"
        scans = make_cohort(folder, args.scans)
        if not args.skip_loop:
            results.append(run_loop(scans, Path(work) / "loop", training))
        for index, workers in enumerate(args.workers):
            out = Path(work) / f"per_scan_{index}"
            results.append(run_batch("`batch --per-scan`", folder, out, training, workers or None, per_scan=True))
        results.append(run_batch("`batch` (one shared model)", folder, Path(work) / "shared", training, None, per_scan=False))
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_before": [round(value, 2) for value in load_before],
        "load_after": [round(value, 2) for value in os.getloadavg()],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"scans": args.scans, "steps_per_training": 50 * args.epochs, "machine": machine, "results": results}
    args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"{args.scans} scans of 64 x 64 x 24 voxels, {50 * args.epochs} training steps per training; {machine}")
    print("| way | workers | wall s | scans per hour | training s | prediction s | everything else s |")
    print("|---|---|---|---|---|---|---|")
    for item in results:
        print(
            f"| {item['way']} | {item['workers']} | {item['wall_seconds']} | {item['scans_per_hour']} | {item['training_seconds']} | "
            f"{item['prediction_seconds']} | {item['everything_else_seconds']} |"
        )


if __name__ == "__main__":
    main()
