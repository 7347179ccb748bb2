#!/usr/bin/env bash
# Latency gate on toy artifacts: export the toy UNet to ONNX and OpenVINO in a temporary folder, time them on
# ort-cpu and ov-cpu, save a baseline, then gate against it (a self-check that must pass), and against
# $BASELINE when one is given (a committed baseline: exit 1 on a regression beyond $MAX_REGRESSION).
#
#   bash benchmarks/ci_latency_gate.sh                      # self-check only
#   BASELINE=benchmarks/results/latency_baseline_toy.json OUT=latency bash benchmarks/ci_latency_gate.sh
#
# Ratios (p50 / a torch workload timed in the same run) make the gate independent of the machine's speed.
# Weights are random (--init random): latency does not depend on them, and no trained asset is needed.
set -euo pipefail
COMPRESS=${COMPRESS:-compress}
THREADS=${THREADS:-2}
MAX_REGRESSION=${MAX_REGRESSION:-0.15}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${OUT:-$work/results}
mkdir -p "$out"

$COMPRESS export toy --init random --format onnx --out "$work/toy-onnx" --no-validate
$COMPRESS export toy --init random --format openvino --out "$work/toy-ov" --no-validate

bench=("$COMPRESS" bench "$work/toy-onnx" "$work/toy-ov" --backend ort-cpu,ov-cpu --warmup 20 --runs 100
       --threads "$THREADS" --strict)
"${bench[@]}" --save-baseline "$out/baseline.json" --json "$out/latency.json" --md "$out/latency.md"
"${bench[@]}" --baseline "$out/baseline.json" --max-regression "$MAX_REGRESSION"
if [[ -n "${BASELINE:-}" ]]; then
  "${bench[@]}" --baseline "$BASELINE" --max-regression "$MAX_REGRESSION"
fi
