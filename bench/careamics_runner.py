"""Trains and applies CAREamics' 3D Noise2Void on one volume, for the benchmark, in CAREamics' own environment.

CAREamics 0.3.5 needs a torch that cannot be installed beside DeepDenoise's, so the benchmark runs this
file with the Python of ``bench/.venv-careamics`` in a subprocess (see careamics_baseline.py); it
imports nothing from this repository. It reads the noisy volume (``[z, y, x]``) from a ``.npy`` file,
trains N2V 3D on it until ``--budget-seconds`` have passed (Lightning's ``max_time``, set through
CAREamics' ``trainer_params``), predicts the whole volume in overlapping tiles, and writes the result
to another ``.npy`` file and a JSON report whose ``seconds`` is the wall time of configuration,
training and prediction (file reading and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

# Epochs are never the limit: training stops at the time budget.
MAX_EPOCHS = 1_000_000
# CAREamics' default number of validation patches held out of the training volume.
VALIDATION_PATCHES = 8


def fitted_patch_size(shape: tuple[int, ...], patch_size: int) -> int:
    """``patch_size``, halved (CAREamics takes powers of 2 from 8) until the volume's shortest axis
    holds three patches: a small (cropped) volume leaves CAREamics no training patches otherwise."""
    while patch_size > 8 and min(shape) < 3 * patch_size:
        patch_size //= 2
    return patch_size


def validation_patches(shape: tuple[int, ...], patch_size: int) -> int:
    """CAREamics' default 8 held-out patches when the volume holds 8 times as many, fewer in a small
    (cropped) volume, which CAREamics would otherwise refuse."""
    whole_patches = int(np.prod([extent // patch_size for extent in shape]))
    return min(VALIDATION_PATCHES, max(1, whole_patches // 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help=".npy file holding the noisy [z, y, x] volume")
    parser.add_argument("--output", type=Path, required=True, help=".npy file to write the denoised volume to")
    parser.add_argument("--report", type=Path, required=True, help="JSON file to write timings and settings to")
    parser.add_argument("--budget-seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0, help="the benchmark's seed (CAREamics gets seed + 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--channels", type=int, default=16, help="channels of the UNet's first level")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--tile-overlap", type=int, default=16)
    args = parser.parse_args()

    import careamics
    import torch
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    torch.set_num_threads(args.threads)
    noisy = np.load(args.input).astype(np.float32)
    patch_size = fitted_patch_size(noisy.shape, args.patch_size)
    with tempfile.TemporaryDirectory(prefix="careamics-bench-") as work_dir:
        start = time.perf_counter()
        config = create_advanced_n2v_config(
            experiment_name="benchmark_n2v_3d",
            data_type="array",
            axes="ZYX",
            patch_size=[patch_size] * 3,
            batch_size=args.batch_size,
            num_epochs=MAX_EPOCHS,
            n_val_patches=validation_patches(noisy.shape, patch_size),
            model_params={"depth": args.depth, "num_channels_init": args.channels},
            num_workers=0,
            trainer_params={"max_time": {"seconds": args.budget_seconds}},
            seed=args.seed + 1,  # CAREamics refuses a seed of 0
        )
        careamist = CAREamist(config, work_dir=work_dir, enable_progress_bar=False)
        careamist.train(train_data=noisy)
        training_seconds = time.perf_counter() - start
        predictions, _ = careamist.predict(noisy, tile_size=(args.tile_size,) * 3, tile_overlap=(args.tile_overlap,) * 3)
        seconds = time.perf_counter() - start
        denoised = np.asarray(predictions[0], dtype=np.float32).reshape(noisy.shape)
        trainer = careamist.trainer
        report = {
            "seconds": seconds,
            "training_seconds": training_seconds,
            "patch_size": patch_size,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "device": str(next(careamist.model.parameters()).device),
            "careamics": careamics.__version__,
            "torch": torch.__version__,
        }
    np.save(args.output, denoised)
    args.report.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
