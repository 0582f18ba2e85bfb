#!/usr/bin/env bash
# The GPU checks of issue 15, as one prepared script for a session that has a CUDA GPU (H100-class):
#   bash benchmarks/gpu_session.sh [OUT_DIR]
# 1. the GPU-only tests (throughput benchmark row, training on the GPU);
# 2. training throughput, course vs diffusers' UNet2DModel at equal parameters, eager and compiled,
#    in the gpu profile, plus the course's own train() loop (target: ≥ 2× diffusers);
# 3. the digits model trained by the command line (1 GPU), timed;
# 4. the whole course in the gpu profile, timed per chapter (target: ≤ 15 min).
# Each step writes its output under OUT_DIR (default build/gpu_session); copy the figures to README.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/gpu_session}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -m pytest -q tests/test_train_efficiency.py 2>&1 | tail -3 | tee "$OUT/tests.txt"
$PY benchmarks/train_throughput.py --device cuda --profile gpu --json | tee "$OUT/throughput_eager.json"
$PY benchmarks/train_throughput.py --device cuda --profile gpu --compile --json | tee "$OUT/throughput_compiled.json"
/usr/bin/time -v $PY -m course_lib.train digits --profile gpu --run-dir "$OUT/runs/digits-gpu" --quiet 2>&1 \
    | grep -E "digits|Elapsed" | tee "$OUT/train_digits.txt"
start=$(date +%s)
$PY -m course_lib.sweep all --profile gpu --out "$OUT/notebooks" 2>&1 | grep -v WARNING | tee "$OUT/course.txt"
echo "whole course, gpu profile: $(( $(date +%s) - start )) s" | tee -a "$OUT/course.txt"
