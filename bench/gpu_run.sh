#!/usr/bin/env bash
# One device call: DeepDenoise's default on the benchmark's variants on a GPU, for the GPU columns of
# the results table (bench/README.md, "On a GPU"). It needs no SimpleITK, nibabel, dipy or bm4d (the
# GPU machine has none of them): the shared volumes come as the bundle bench/gpu_bundle.py writes,
# and only the default runs (the classical baselines are CPU programs, measured on the CPU).
#
#   bash bench/gpu_run.sh [VARIANTS [BUDGET_SECONDS]]
#
# VARIANTS: benchmark_denoise.py's --variants (default: the four tuning variants); BUDGET_SECONDS: the
# training budget (default 45, so that a 128^3 run stays within issue 12's 60 s in all). Results go to
# $OUT (the device tool's folder; bench/results/gpu here). DEVICE=cpu and CROP=N check the script on a
# machine without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
variants=${1:-rician05 rician10 gaussian07 poisson60}
budget=${2:-45}
bundle=${BUNDLE:-.gpu/shared.npz}
if [ ! -f "$bundle" ]; then
    echo "gpu_run: $bundle is missing: write it with 'python bench/gpu_bundle.py' and carry .gpu" >&2
    exit 2
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi: not available"; } > "$out/gpu.csv" 2>&1
python3 -c "import torch; cuda = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', cuda, torch.cuda.get_device_name(0) if cuda else '')" | tee "$out/torch.txt"
# shellcheck disable=SC2086  # the variants are words
python3 bench/benchmark_denoise.py --shared "$bundle" --variants $variants --only ours-default --repeats 1 \
    --device "${DEVICE:-cuda}" --budget-seconds "$budget" --threads "${THREADS:-16}" ${CROP:+--crop "$CROP"} \
    --json "$out/denoise.json" 2>&1 | tee "$out/denoise.log"
