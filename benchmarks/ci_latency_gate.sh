#!/usr/bin/env bash
# Latency gate between two commits: the toy UNet's ONNX and OpenVINO exports and its calibrated int8 OpenVINO graph
# (`compress quantize`) of this checkout (the candidate) are timed against the same artifacts built from $BASE_REV (default HEAD~1, the previous commit on main), interleaved
# in one run on ort-cpu and ov-cpu (`compress compare`). Exit 1 on a regression beyond $MAX_REGRESSION, or when the
# baseline commit cannot be built: there is no path on which "no baseline" passes.
#
#   bash benchmarks/ci_latency_gate.sh                        # candidate vs HEAD~1
#   BASE_REV=origin/main OUT=latency bash benchmarks/ci_latency_gate.sh
#
# Decision: each pair of adjacent ABBA blocks (10 calls each) gives a ratio candidate/baseline; the change is the
# median ratio - 1 over 6 rounds x 8 pairs, each round loading both builds anew; a regression is a change above
# MAX_REGRESSION whose 95% interval (rounds resampled) lies wholly above zero. Load on the machine hits both builds
# of a pair alike, so it cancels; measured here the same build twice reads within about +-5%.
#
# Then the gate checks that it can fail and that it does not cry wolf, without doctoring a number:
#   - a genuinely slower build (the toy exported at a 16x24 latent, 1.5x the work of 16x16) must FAIL;
#   - the candidate exported twice must PASS;
#   - a stored baseline (`compress bench --save-baseline`) with an entry this run does not measure must FAIL,
#     and one from another host class must be refused (exit 2) without --allow-other-host.
# Cost on a 2-core machine: 8 toy exports (~10 s each), 2 quantizations (~40 s each) and ~3 minutes of timing;
# about 6 minutes in all. Export weights are random (--init random): latency does not depend on them. The int8
# graph is quantized from the shipped toy, whose calibrated graph passes its own tensor check.
set -euo pipefail
COMPRESS=${COMPRESS:-compress}
THREADS=${THREADS:-2}
MAX_REGRESSION=${MAX_REGRESSION:-0.15}
BASE_REV=${BASE_REV:-HEAD~1}
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
cleanup() { git -C "$repo" worktree remove --force "$work/base-src" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
out=${OUT:-$work/results}
mkdir -p "$out"

if ! git -C "$repo" rev-parse --verify --quiet "$BASE_REV^{commit}" > /dev/null; then
  if [[ $(git -C "$repo" rev-parse --is-shallow-repository) == true ]]; then
    git -C "$repo" fetch --quiet --deepen=1 || true
  fi
fi
if ! base=$(git -C "$repo" rev-parse --verify --quiet "$BASE_REV^{commit}"); then
  echo "error: baseline commit $BASE_REV is not in this clone; the gate needs it (set BASE_REV)" >&2
  exit 1
fi
git -C "$repo" worktree add --detach --quiet "$work/base-src" "$base"
echo "latency gate: candidate $(git -C "$repo" rev-parse --short HEAD) (working tree) vs baseline $(git -C "$repo" rev-parse --short "$base")"

export_toy() {  # export_toy SOURCE_TREE OUT_PREFIX [export options]: the toy to ONNX and OpenVINO, built by that tree
  local src=$1 prefix=$2
  shift 2
  for format in onnx openvino; do
    (cd "$src" && PYTHONPATH="$src" python -m compress export toy --init random --format "$format" \
      --out "$prefix-$format" --no-validate "$@" > /dev/null)
  done
}
quantize_toy() {  # quantize_toy SOURCE_TREE OUT: the trained toy as an OpenVINO w8a8 graph, built by that tree
  (cd "$1" && PYTHONPATH="$1" python -m compress quantize toy --format openvino --mode w8a8 --samples 16 \
    --no-task-check --out "$2" > /dev/null)
}
export_toy "$repo" "$work/candidate"
export_toy "$work/base-src" "$work/baseline"
quantize_toy "$repo" "$work/candidate-int8"
quantize_toy "$work/base-src" "$work/baseline-int8"
export_toy "$repo" "$work/again"
export_toy "$repo" "$work/slower" --width 24

compare=("$COMPRESS" compare --backend ort-cpu,ov-cpu --threads "$THREADS" --max-regression "$MAX_REGRESSION")
against() { echo --against "$1-onnx" --against "$1-openvino"; }

# The decision: this checkout against the baseline commit.
# shellcheck disable=SC2046
"${compare[@]}" "$work/candidate-onnx" "$work/candidate-openvino" "$work/candidate-int8" $(against "$work/baseline") \
  --against "$work/baseline-int8" --json "$out/compare.json"

# shellcheck disable=SC2046
if ! "${compare[@]}" "$work/again-onnx" "$work/again-openvino" $(against "$work/candidate") > "$work/same.log"; then
  cat "$work/same.log"
  echo "error: the gate failed the same build exported twice (a false alarm)" >&2
  exit 1
fi
# shellcheck disable=SC2046
if "${compare[@]}" "$work/slower-onnx" "$work/slower-openvino" $(against "$work/candidate") > "$work/slower.log"; then
  cat "$work/slower.log"
  echo "error: the gate passed a build with 1.5x the work" >&2
  exit 1
fi
grep -F "| regression |" "$work/slower.log"

bench=("$COMPRESS" bench --backend ort-cpu,ov-cpu --threads "$THREADS" --warmup 20 --runs 100 --strict)
"${bench[@]}" "$work/candidate-onnx" "$work/candidate-openvino" --save-baseline "$work/stored.json" > /dev/null
if "${bench[@]}" "$work/candidate-onnx" --baseline "$work/stored.json" > "$work/missing.log"; then
  cat "$work/missing.log"
  echo "error: the stored-baseline gate passed with a baseline entry left unmeasured" >&2
  exit 1
fi
python -c 'import json, sys; d = json.load(open(sys.argv[1])); [e["host"].update(cpu="another CPU") for e in d["entries"]]
json.dump(d, open(sys.argv[2], "w"))' "$work/stored.json" "$work/other-host.json"
status=0
"${bench[@]}" "$work/candidate-onnx" "$work/candidate-openvino" --baseline "$work/other-host.json" \
  > "$work/other-host.log" 2>&1 || status=$?
if [[ $status -ne 2 ]] || ! grep -q "another host class" "$work/other-host.log"; then
  cat "$work/other-host.log"
  echo "error: the stored-baseline gate did not refuse a baseline from another host class (exit $status)" >&2
  exit 1
fi
echo "gate self-check: a 1.5x-work build fails, the same build twice passes; a stored baseline with an unmeasured"
echo "entry fails and one from another host class is refused"
