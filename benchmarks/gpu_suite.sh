#!/usr/bin/env bash
# Every GPU measurement of jaxmm in one go on one GPU, within a time budget (default 480 s), each result
# written as <out>/<name>_gpu.json with the device name inside, in this order:
#   kernels_gpu.json                    each Pallas kernel against XLA (bench_kernels.py)
#   av_step_b64_gpu.json                two-ResNet-18 step, jaxmm vs PyTorch eager, fp32 + bf16, batch 64
#   av_step_compile_b64_gpu.json        the same against torch.compile (needs bench_av_step --torch-compile)
#   pid_xor_gpu.json                    PID-XOR at width 1024, four compositions (few epochs: a timing run)
#   pipeline_gpu.json                   input pipeline feed rate against the batch-64 step just measured
#   av_step_b128_gpu.json, av_step_compile_b128_gpu.json   as above at batch 128
#   methods_step_gpu.json               every registered method's step (bench_methods_step.py), last: it
#                                       gets the time left and keeps the methods it finished if cut short
# A failed step (or one the budget cut short) does not stop the others; the summary lists them and the
# exit status is 1 if any failed.
#
# usage: bash benchmarks/gpu_suite.sh [--smoke] [--out DIR] [--budget SECONDS] [--dry-run]
#   --smoke    tiny sizes on any backend (CPU: about 2 minutes), into a temp folder unless --out is given;
#              PyTorch steps are skipped (not failed) when torch is not installed
#   --out DIR  result folder (default: benchmarks/results, or a new temp folder with --smoke)
#   --budget   seconds for the whole suite (default 480; --smoke 900); no step starts with < 10 s left
#   --dry-run  print the commands instead of running them
set -u -o pipefail
cd "$(dirname "$0")/.."

SMOKE=0 DRY=0 OUT="" BUDGET=""
while (($#)); do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --dry-run) DRY=1 ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    *) echo "unknown option $1 (use --smoke, --out DIR, --budget SECONDS, --dry-run)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$OUT" ]]; then
  if ((SMOKE)); then OUT="$(mktemp -d -t jaxmm-gpu-suite-XXXXXX)"; else OUT=benchmarks/results; fi
fi
BUDGET="${BUDGET:-$( ((SMOKE)) && echo 900 || echo 480)}"
DEADLINE=$((SECONDS + BUDGET))
WORK="$OUT/gpu_suite_work"
((DRY)) || mkdir -p "$WORK/logs"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$WORK/jax_cache}"  # a rerun compiles less
export PY="${PYTHON:-python}"

if ((SMOKE)); then
  AV=(--image-size 16 --audio-size 16 12 --frames 1 --steps 1 --warmup 1)
  BATCHES=(2)
  METHODS=(--batch 2 --image-size 16 --audio-size 16 12 --frames 1 --steps 1 --warmup 1 --methods vanilla)
  KERNELS=(--width-divisor 64 --block-rows 8 --rounds 2)
  PID=(--width 16 --epochs 1 --seeds 0 --methods vanilla)
  PIPE=(--clips 4 --seconds 0.3 --frames 1 --image-size 32 --batch 2 --epochs 1 --rounds 1 --grain-workers 0)
  CAP=600
else
  AV=(--steps 20 --warmup 3)
  BATCHES=(64 128)
  METHODS=(--steps 10 --warmup 2)
  KERNELS=(--rounds 30)
  PID=(--width 1024 --epochs 3 --seeds 0)
  PIPE=(--step-fraction-batch 64 --step-fraction-size 224)
  CAP=240  # the most any step but methods_step may take
fi

HAVE_TORCH=1
"$PY" -c "import torch" 2>/dev/null || HAVE_TORCH=0
FAILED=() PASSED=() SKIPPED=()

# step NAME CMD...: runs CMD within min(CAP, time left), its output in $WORK/logs/NAME.log; records the outcome.
step() {
  local name=$1; shift
  if ((DRY)); then printf '%s: %s\n' "$name" "$*"; return 0; fi
  local left=$((DEADLINE - SECONDS)) start=$SECONDS
  if ((left < 10)); then FAILED+=("$name (not run: the ${BUDGET} s budget is spent)"); return 0; fi
  local limit=$((left < CAP ? left : CAP))
  [[ $name == methods_step ]] && limit=$left
  echo "== $name (limit ${limit} s): $*"
  if timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1; then
    PASSED+=("$name ($((SECONDS - start)) s)")
  else
    FAILED+=("$name (exit $?, $((SECONDS - start)) s of ${limit} s, log $WORK/logs/$name.log)")
    tail -n 5 "$WORK/logs/$name.log"
  fi
}

# torch_step NAME CMD...: a step that needs PyTorch (skipped in --smoke without torch, failed otherwise).
torch_step() {
  if ((HAVE_TORCH || DRY)); then step "$@"
  elif ((SMOKE)); then SKIPPED+=("$1 (torch not installed)")
  else FAILED+=("$1 (torch not installed)"); fi
}

# av_steps BATCH: jaxmm vs PyTorch eager, then vs torch.compile once bench_av_step has the option.
av_steps() {
  local b=$1
  torch_step "av_step_b$b" "$PY" -m benchmarks.bench_av_step --batch "$b" "${AV[@]}" --dtypes fp32 bf16 \
    --out "$OUT/av_step_b${b}_gpu.json"
  if ((DRY)) || { ((HAVE_TORCH)) && "$PY" -m benchmarks.bench_av_step --help 2>/dev/null | grep -q -- --torch-compile; }
  then
    torch_step "av_step_compile_b$b" "$PY" -m benchmarks.bench_av_step --torch-compile --batch "$b" "${AV[@]}" \
      --dtypes fp32 bf16 --out "$OUT/av_step_compile_b${b}_gpu.json"
  elif ((HAVE_TORCH)); then
    FAILED+=("av_step_compile_b$b (benchmarks/bench_av_step.py has no --torch-compile option yet)")
  else
    torch_step "av_step_compile_b$b" true
  fi
}

# pid_xor_json OUT_JSON WORK_DIR ARGS...: the experiment, then its results.json with wall time and device.
pid_xor_json() {
  local out=$1 work=$2; shift 2
  local start=$SECONDS
  "$PY" -c 'import sys; from jaxmm.cli import main; main(sys.argv[1:])' \
    experiment pid-xor --points targets --out-dir "$work" --overwrite "$@" || return
  "$PY" - "$out" "$work/pid-xor-targets/results.json" "$((SECONDS - start))" "$*" <<'PYEOF'
import json, sys, jax
out, results, wall, args = sys.argv[1:]
json.dump({"benchmark": "pid_xor", "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
           "command": f"jaxmm experiment pid-xor --points targets {args}", "wall_s": int(wall),
           "results": json.load(open(results))}, open(out, "w"), indent=2)
PYEOF
}
export -f pid_xor_json

step kernels "$PY" -m benchmarks.bench_kernels "${KERNELS[@]}" --out "$OUT/kernels_gpu.json"
av_steps "${BATCHES[0]}"
step pid_xor bash -c 'pid_xor_json "$@"' _ "$OUT/pid_xor_gpu.json" "$WORK/pid_xor" "${PID[@]}"

# The pipeline's target rate: the jaxmm fp32 step just measured at the first batch size, if it was.
STEP_MS=()
if ((DRY)); then
  STEP_MS=(--step-ms "<av_step_b${BATCHES[0]} jaxmm fp32 median_ms>" --step-batch "${BATCHES[0]}")
elif [[ -f "$OUT/av_step_b${BATCHES[0]}_gpu.json" ]]; then
  MEDIAN='import json, sys; print(json.load(open(sys.argv[1]))["results"]["fp32"]["jaxmm"]["median_ms"])'
  STEP_MS=(--step-ms "$("$PY" -c "$MEDIAN" "$OUT/av_step_b${BATCHES[0]}_gpu.json")" --step-batch "${BATCHES[0]}")
elif ((SMOKE)); then
  STEP_MS=(--step-ms 10 --step-batch 2)
fi
step pipeline "$PY" -m benchmarks.bench_pipeline "${PIPE[@]}" "${STEP_MS[@]}" --out "$OUT/pipeline_gpu.json"

for b in "${BATCHES[@]:1}"; do av_steps "$b"; done
step methods_step "$PY" -m benchmarks.bench_methods_step "${METHODS[@]}" --out "$OUT/methods_step_gpu.json"

((DRY)) && exit 0
echo
echo "gpu suite ($( ((SMOKE)) && echo smoke || echo full), ${SECONDS} s of a ${BUDGET} s budget) -> $OUT"
for s in "${PASSED[@]}"; do echo "  ok      $s"; done
for s in "${SKIPPED[@]}"; do echo "  skipped $s"; done
for s in "${FAILED[@]}"; do echo "  FAILED  $s"; done
((${#FAILED[@]} == 0))
