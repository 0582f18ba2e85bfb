#!/usr/bin/env bash
# The GPU checks of issue 15, as one prepared script for a session that has a CUDA GPU (H100-class):
#   bash benchmarks/gpu_session.sh [OUT_DIR]
# 1. the GPU-only tests (pytest -m cuda: throughput benchmark row, training on the GPU, half-precision sampling);
# 2. training throughput, course vs diffusers' UNet2DModel at equal parameters, eager and compiled,
#    in the gpu profile, plus the course's own train() loop (target: ≥ 2× diffusers);
# 3. the digits model trained by the command line (1 GPU), timed;
# 4. the whole course in the gpu profile, one chapter at a time: its seconds and the GPU's peak memory (nvidia-smi,
#    every 200 ms) into OUT_DIR/chapters.tsv (target: ≤ 15 min on an H100; ≤ 10 min and 16 GB a chapter on a T4);
# 5. benchmarks/gpu_budget.py's predictions with those measurements beside them (gpu_budget.json / .txt).
# Each step writes its output under OUT_DIR (default build/gpu_session); copy the figures to README.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/gpu_session}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -m pytest -q -m cuda tests 2>&1 | tail -3 | tee "$OUT/tests.txt"
$PY benchmarks/train_throughput.py --device cuda --profile gpu --json | tee "$OUT/throughput_eager.json"
$PY benchmarks/train_throughput.py --device cuda --profile gpu --compile --json | tee "$OUT/throughput_compiled.json"
/usr/bin/time -v $PY -m course_lib.train digits --profile gpu --run-dir "$OUT/runs/digits-gpu" --quiet 2>&1 \
    | grep -E "digits|Elapsed" | tee "$OUT/train_digits.txt"
start=$(date +%s)
printf "chapter\tseconds\tpeak_mib\tstatus\n" > "$OUT/chapters.tsv"
for nb in notebooks/[0-9][0-9]_*.ipynb; do
    ch=$(basename "$nb" | cut -c1-2)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/memory_$ch.txt" & smi=$!
    t0=$(date +%s.%N)
    if $PY -m course_lib.sweep all --profile gpu --only "$(basename "$nb" .ipynb)" --out "$OUT/notebooks" 2>&1 \
        | grep -v WARNING | tee -a "$OUT/course.txt"; then status=ok; else status=failed; fi
    kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
    printf "%s\t%.1f\t%s\t%s\n" "$ch" "$(echo "$(date +%s.%N) - $t0" | bc)" "$(sort -n "$OUT/memory_$ch.txt" | tail -1)" \
        "$status" | tee -a "$OUT/chapters.tsv"
done
echo "whole course, gpu profile: $(( $(date +%s) - start )) s" | tee -a "$OUT/course.txt"
$PY benchmarks/gpu_budget.py --measured "$OUT/chapters.tsv" --json > "$OUT/gpu_budget.json"
$PY benchmarks/gpu_budget.py --measured "$OUT/chapters.tsv" | tee "$OUT/gpu_budget.txt"
