#!/usr/bin/env bash
# Proves mlrank's GPU path on a machine with an NVIDIA GPU, in one command:
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# It needs the machine's own Python with torch (2.11 or newer, CUDA build), timm and pytest, a
# CUDA toolkit (nvcc, compute-sanitizer) and no network. Steps, each under a time limit, logs in OUTDIR:
#   1. build mlrank with its CUDA kernels                               -> build.txt
#   2. compute-sanitizer memcheck, racecheck and initcheck on a small
#      case (both kernel paths, several images per sort group); any
#      error stops the check here                                       -> sanitizer.txt
#   3. the CUDA tests (kernels and ATen against the reference and each
#      other, overflow, autocast, matmul precision, CUDA graphs), then
#      again with the block-per-image kernel, and the CPU op tests      -> tests.txt
#   4. op forward + backward (100 rounds, profiler kernel time, num_k =
#      100, bf16 autocast, both kernel paths) and the real config's
#      training step against the backbone's classifier step            -> RESULTS/gpu_op_<gpu>.*,
#                                                                          RESULTS/gpu_training_step_<gpu>.*
#   5. the synthetic default trained for one epoch on the GPU (bf16,
#      kernels), evaluate and predict, a one-process torchrun (NCCL)     -> train.txt
# RESULTS is benchmarks/results (override with RESULTS=...); its files are copied to OUTDIR too.
# summary.txt lists each step's status and duration. Meant to end within 8 minutes on an H100-class
# GPU with 16 CPU cores; every step has a time limit, so a hang costs that step only. The exit
# status is the number of steps that failed.
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-benchmarks/results}
WORK=$(mktemp -d)
failures=0
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS LOGFILE COMMAND...
  local name=$1 limit=$2 log=$3
  shift 3
  local start=$SECONDS
  echo "== $name" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local status=$?
  local verdict=ok
  [ $status -eq 0 ] || { verdict="FAILED (exit $status$([ $status -eq 124 ] && echo ', time limit'))"; failures=$((failures + 1)); }
  printf '%-34s %-28s %4ds\n' "$name" "$verdict" $((SECONDS - start)) | tee -a "$OUT/summary.txt"
}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$PYTHON" -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__, torch.cuda.get_device_name())"
  nvcc --version | tail -2
} >"$OUT/build.txt" 2>&1

# 1. Build for this GPU's architecture.
ARCH=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
step "build (sm_${ARCH/./})" 240 "$OUT/build.txt" env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" \
  MAX_JOBS="${MAX_JOBS:-16}" "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index -e .
step "has CUDA kernels" 60 "$OUT/build.txt" "$PYTHON" -c \
  "import sys, mlrank.ops as o; print('compiled_with_cuda', o.compiled_with_cuda()); sys.exit(0 if o.compiled_with_cuda() else 1)"

# 2. compute-sanitizer first: a kernel that writes out of bounds must not reach the tests.
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck initcheck; do
    step "compute-sanitizer $tool" 120 "$OUT/sanitizer.txt" compute-sanitizer --tool "$tool" \
      --error-exitcode 1 "$PYTHON" benchmarks/sanitizer_case.py
  done
  if [ "$failures" -gt 0 ]; then
    echo "stopped: build or sanitizer errors (see build.txt, sanitizer.txt)" | tee -a "$OUT/summary.txt"
    rm -rf "$WORK"
    exit "$failures"
  fi
else
  echo "compute-sanitizer not found: skipped" | tee -a "$OUT/summary.txt" >"$OUT/sanitizer.txt"
fi

# 3. Tests; MLRANK_CUDA_KERNELS=1 so that impl='auto' takes the kernels too.
step "CUDA and op tests" 180 "$OUT/tests.txt" env MLRANK_CUDA_KERNELS=1 "$PYTHON" -m pytest -q -rs -x \
  -p no:cacheprovider tests/test_contrastive_mil_cuda.py tests/test_contrastive_mil.py
step "CUDA tests, block per image" 120 "$OUT/tests.txt" env MLRANK_CUDA_KERNELS=1 MLRANK_CUDA_BLOCK_PER_IMAGE=1 \
  "$PYTHON" -m pytest -q -rs -x -p no:cacheprovider tests/test_contrastive_mil_cuda.py

# 4. Timings and peak memory.
step "benchmark: op" 150 "$WORK/benchmark.log" "$PYTHON" -m benchmarks.gpu_op --output-dir "$RESULTS"
step "benchmark: training step" 120 "$WORK/benchmark.log" env MLRANK_CUDA_KERNELS=1 \
  "$PYTHON" -m benchmarks.gpu_training_step --output-dir "$RESULTS"
cp "$RESULTS"/gpu_op_* "$RESULTS"/gpu_training_step_* "$OUT/" 2>/dev/null
cat "$WORK/benchmark.log" >>"$OUT/summary.txt"

# 5. Train, evaluate and predict on the GPU.
RUN="$WORK/run"
step "train 1 epoch (bf16, kernels)" 180 "$OUT/train.txt" env MLRANK_CUDA_KERNELS=1 "$PYTHON" -m mlrank.train \
  optim.epochs=1 train.amp=bf16 data.num_workers=4 output_dir="$RUN"
step "evaluate on the GPU" 60 "$OUT/train.txt" "$PYTHON" -m mlrank.evaluate "$RUN/best.pt" --split test
step "faces to predict on" 60 "$OUT/train.txt" "$PYTHON" -c "
import sys
from mlrank.data import write_seqdeepfake_layout
write_seqdeepfake_layout(sys.argv[1], sizes={'test': 4}, size=64)" "$WORK/faces"
step "predict on the GPU" 60 "$OUT/train.txt" "$PYTHON" -m mlrank.predict "$RUN/best.pt" "$WORK/faces" --output-dir "$WORK/predictions"
step "torchrun, 1 process, NCCL" 120 "$OUT/train.txt" "$PYTHON" -m torch.distributed.run --standalone \
  --nproc_per_node=1 -m mlrank.train optim.epochs=1 train.max_steps_per_epoch=10 data.synthetic_train_size=640 \
  data.synthetic_val_size=64 data.synthetic_test_size=64 output_dir="$WORK/ddp"

echo "failed steps: $failures" | tee -a "$OUT/summary.txt"
rm -rf "$WORK"
exit "$failures"
