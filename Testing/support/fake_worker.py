"""A stand-in for ``python -m DeepDenoiseLib denoise|apply|n2n|supervised ... --progress json`` with
scripted behaviour.

It takes the real command line after ``--mode MODE`` (``denoise IN OUT --config C``,
``apply MODEL IN OUT``, ``n2n FIRST [SECOND] OUT --config C`` or ``supervised --noisy N --clean C
--apply-to IN OUT --config C``) and speaks the real JSON-lines protocol, so the background runner and
the Slicer jobs can be tested quickly and deterministically:

* ``ok``: reads the input (3D, or a 4D series; for ``n2n`` on two acquisitions, their mean),
  "denoises" it to ``input * 0.5`` (residual ``input - output``, uncertainty ``|input| * 0.25``),
  writes atomically, ends with a ``done`` event whose summary echoes the configuration it was given
  (or the model, --tta and --device of ``apply``; for ``supervised`` also the training pair's means).
* ``error``: reports stage ``error`` with a message and exits with code 2, as the CLI does.
* ``crash``: leaves a half-written output file, then dies of an uncaught exception (traceback only).
* ``hang``: starts two child processes (one in a session of its own), then reports training progress
  forever, naming the children's process ids in its messages (to be cancelled).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from DeepDenoiseLib.core.progress import JsonLinesReporter, ProgressEvent
from DeepDenoiseLib.core.volume_io import read_volume, write_volume
from DeepDenoiseLib.denoise.config import DenoiseConfig

CRASH_MESSAGE = "RuntimeError: CUDA out of memory (fake worker crash)"
ERROR_MESSAGE = "the fake worker refuses this input"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("ok", "error", "crash", "hang"), default="ok")
    parser.add_argument("command", choices=("denoise", "apply", "n2n", "supervised"))
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--noisy")
    parser.add_argument("--clean")
    parser.add_argument("--apply-to", nargs=2)
    parser.add_argument("--config")
    parser.add_argument("--progress", choices=("json",), required=True)
    parser.add_argument("--residual")
    parser.add_argument("--uncertainty")
    parser.add_argument("--save-model")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--device")
    args = parser.parse_args()
    config = None if args.command == "apply" else DenoiseConfig.load(args.config)
    if args.command == "apply":
        model, args.input, args.output = args.paths
    elif args.command == "supervised":
        args.input, args.output = args.apply_to
    else:
        *inputs, args.output = args.paths
        args.input = inputs[0]
    report = JsonLinesReporter()

    report(ProgressEvent("loading", 0.0, message=f"reading {os.path.basename(args.input)}"))
    noisy = read_volume(args.input, allow_4d=True)
    if args.command == "n2n" and len(inputs) == 2:
        noisy = noisy.with_array((noisy.array.astype("float32") + read_volume(inputs[1]).array) * 0.5)
    print("UserWarning: a line that is not a progress event")
    print("a warning on stderr", file=sys.stderr)

    if args.mode == "error":
        report(ProgressEvent("error", message=ERROR_MESSAGE))
        return 2
    if args.mode == "crash":
        report(ProgressEvent("training", 0.1, loss=0.5))
        with open(args.output, "wb") as half_written:
            half_written.write(b"NRRD0004\ntype: float\n")
        raise RuntimeError(CRASH_MESSAGE.split(": ", 1)[1])
    if args.mode == "hang":
        sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
        child = subprocess.Popen(sleeper)
        # A child that left the worker's process group: only a process-tree kill finds it.
        escaped = subprocess.Popen(sleeper, start_new_session=True)
        step = 0
        while True:
            step += 1
            message = f"children {child.pid} {escaped.pid}"
            report(ProgressEvent("training", min(step / 1000, 1.0), message=message, eta_seconds=60.0))
            time.sleep(0.05)

    for step in range(1, 4):
        report(ProgressEvent("training", step / 3, loss=1.0 / step, eta_seconds=0.1 * (3 - step)))
        time.sleep(0.02)
    report(ProgressEvent("predicting", 1.0))
    denoised = noisy.with_array(noisy.array.astype("float32") * 0.5)
    report(ProgressEvent("writing", 0.0))
    write_volume(denoised, args.output)
    if args.residual:
        write_volume(noisy.with_array(noisy.array.astype("float32") - denoised.array), args.residual)
    if args.uncertainty:
        write_volume(noisy.with_array(abs(noisy.array.astype("float32")) * 0.25), args.uncertainty)
    if config is None:
        summary = {"seconds": 0.1, "model": model, "tta": args.tta, "device": args.device}
    else:
        summary = {
            "seconds": 0.1,
            "method": config.method,
            "dimensions": config.model.dimensions,
            "budget_seconds": config.training.budget_seconds,
            "device": config.training.device,
            "tta": config.prediction.tta,
            "noise_model": config.noise.model,
            "save_model": args.save_model,
        }
        if args.command in ("n2n", "supervised"):
            summary["architecture"] = config.model.architecture
            summary["adversarial_weight"] = config.training.adversarial_weight
        if args.command == "n2n":
            summary["acquisitions"] = len(inputs)
        if args.command == "supervised":
            summary["training_means"] = [float(read_volume(path).array.mean()) for path in (args.noisy, args.clean)]
    if noisy.is_4d:
        summary["frames"] = noisy.array.shape[0]
    report(ProgressEvent("done", 1.0, summary=summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
