#!/usr/bin/env bash
# Latency gate on toy artifacts: export the toy UNet to ONNX and OpenVINO in a temporary folder, time them on
# ort-cpu and ov-cpu, save a baseline, then gate against it (a self-check that must pass), against a copy made
# twice as fast (must fail), and against $BASELINE when one is given (a committed baseline: exit 1 on a regression
# beyond $MAX_REGRESSION).
#
#   bash benchmarks/ci_latency_gate.sh                      # self-check only
#   BASELINE=benchmarks/results/latency_baseline_toy.json OUT=latency bash benchmarks/ci_latency_gate.sh
#
# Ratios (model time / a torch workload timed between its calls) make the gate independent of the machine's
# speed. Each result is the median of 3 rounds (--repeat 3), baseline included, and a result that looks
# regressed is re-measured (--confirm 2) and fails only if the regression reproduces. `python benchmarks/gate_stability.py` counts false alarms over repeated self-checks.
# Weights are random (--init random): latency does not depend on them, and no trained asset is needed.
set -euo pipefail
COMPRESS=${COMPRESS:-compress}
THREADS=${THREADS:-2}
# 0.25, not the CLI's 0.15: with the CI machine's cores oversubscribed, self-checks moved up to 20%
# (benchmarks/results/gate_stability_repeat3_load2.md).
MAX_REGRESSION=${MAX_REGRESSION:-0.25}
REPEAT=${REPEAT:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=${OUT:-$work/results}
mkdir -p "$out"

$COMPRESS export toy --init random --format onnx --out "$work/toy-onnx" --no-validate
$COMPRESS export toy --init random --format openvino --out "$work/toy-ov" --no-validate

bench=("$COMPRESS" bench "$work/toy-onnx" "$work/toy-ov" --backend ort-cpu,ov-cpu --warmup 20 --runs 100
       --repeat "$REPEAT" --threads "$THREADS" --strict)
"${bench[@]}" --save-baseline "$out/baseline.json" --json "$out/latency.json" --md "$out/latency.md"
"${bench[@]}" --baseline "$out/baseline.json" --max-regression "$MAX_REGRESSION"
# The gate must also be able to fail: against a baseline twice as fast as this machine it has to exit 1. (Against
# one 30% faster, +43% expected, a bf16 AVX-512 host measured only +20%: its later run came out 16% faster than the
# baseline's, so that self-check was a coin toss there; issue 18 is about gates whose noise is this large.)
python -c 'import json, sys; d = json.load(open(sys.argv[1])); [e.update(ratio=e["ratio"] * 0.5) for e in d["entries"]]
json.dump(d, open(sys.argv[2], "w"))' "$out/baseline.json" "$work/faster.json"
if "${bench[@]}" --baseline "$work/faster.json" --max-regression "$MAX_REGRESSION" > "$work/faster.log"; then
  cat "$work/faster.log"
  echo "error: the gate passed against a baseline twice as fast as this machine" >&2
  exit 1
fi
echo "gate self-check: passes against its own baseline, fails against one twice as fast"
if [[ -n "${BASELINE:-}" ]]; then
  "${bench[@]}" --baseline "$BASELINE" --max-regression "$MAX_REGRESSION"
fi
