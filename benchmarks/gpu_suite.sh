#!/usr/bin/env bash
# Every GPU measurement of the project in one script, at most 8 minutes on one GPU (H100/A100/H200 class):
#   bash benchmarks/gpu_suite.sh            # exits 0 with a message when there is no CUDA device
#   GPU_SUITE_BUDGET_S=600 bash benchmarks/gpu_suite.sh
# 1. the model benchmarks in bf16 and fp16 (separable vs full cross-attention, decode step, no-grad training step);
# 2. the data loader's headroom at the OPT-1.3B / TimeSformer-base shapes;
# 3. the CUDA tests: DeepSpeed ZeRO-2 fp16 (2 tiny processes or 1), AMP fp16 from fp16-stored towers, and the
#    full-size rehearsal (issue 10, point 4) with 1 process in fp16;
# 4. the captioner (pseudolabel) benchmark, when benchmarks/bench_pseudolabel.py exists.
# Each step has its own time limit; a step that would start past the budget is skipped and reported.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_suite: no CUDA device visible (torch.cuda.is_available() is False): skipping every GPU measurement"
  exit 0
fi
python -c "import torch; print('gpu_suite:', torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), '| torch', torch.__version__)"

BUDGET_S=${GPU_SUITE_BUDGET_S:-480}
START=$SECONDS
FAILED=()
SKIPPED=()

step() {  # step NAME LIMIT_S CMD...
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - (SECONDS - START)))
  if ((left < 15)); then
    SKIPPED+=("$name")
    echo "== $name: skipped (suite budget of ${BUDGET_S}s spent)"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0))s"
  ((rc == 0)) || FAILED+=("$name (exit $rc)")
}

for dtype in bf16 fp16; do
  step "cross-attention $dtype" 30 python -m benchmarks.bench_cross_attention --dtype "$dtype"
  step "decode step $dtype" 30 python -m benchmarks.bench_decode_step --dtype "$dtype"
  step "train step $dtype" 45 python -m benchmarks.bench_train_step --dtype "$dtype" --repeats 3
done
step "data loader headroom (real shapes)" 60 python benchmarks/bench_dataloader.py --device cuda --real_shapes --num_workers 4
step "CUDA tests: DeepSpeed fp16, AMP fp16, full-size rehearsal" 300 python -m pytest -q -p no:cacheprovider -m gpu \
  -k "fp16" tests/test_train_launch.py tests/test_train_setup.py tests/test_train_rehearsal.py -s
if [ -f benchmarks/bench_pseudolabel.py ]; then
  step "captioner (pseudolabel) benchmark" 90 python benchmarks/bench_pseudolabel.py --device cuda
else
  SKIPPED+=("captioner benchmark (benchmarks/bench_pseudolabel.py not present)")
fi

echo "gpu_suite: $((SECONDS - START))s of ${BUDGET_S}s"
((${#SKIPPED[@]})) && printf 'skipped: %s\n' "${SKIPPED[@]}"
if ((${#FAILED[@]})); then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "gpu_suite: all steps passed"
