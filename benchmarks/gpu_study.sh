#!/usr/bin/env bash
# One call on a lent GPU machine (the tool library's device run, $OUT set): build with the CUDA
# kernels, train the loss ablation and benchmarks/plans/order_study.txt side by side
# (benchmarks/parallel_runs.py, fp32), run the CUDA tests meanwhile, then the op benchmark if
# time is left. LIMIT: seconds the whole script may take. Results: $OUT/study.tgz (run folders
# without checkpoints), build.txt, tests.txt, runs.txt, gpu_op.md/json.
set -uo pipefail
OUT=${OUT:?set OUT to the results folder}
LIMIT=${LIMIT:-540}
T0=$SECONDS
PYTHON=${PYTHON:-python3}
left() { echo $((LIMIT - (SECONDS - T0))); }
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; "$PYTHON" -c "import torch; print(torch.__version__)"; nproc; } >"$OUT/build.txt" 2>&1
if ! FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 timeout 300 "$PYTHON" -m pip install --no-build-isolation \
    --no-deps --no-index -e . >>"$OUT/build.txt" 2>&1; then
  echo "build failed after $((SECONDS - T0)) s" | tee -a "$OUT/build.txt"; tail -40 "$OUT/build.txt"; exit 1
fi
"$PYTHON" -c "import mlrank.ops as o; print('compiled_with_cuda', o.compiled_with_cuda())" >>"$OUT/build.txt" 2>&1
echo "built in $((SECONDS - T0)) s" | tee -a "$OUT/build.txt"
STUDY=/tmp/study
nice -n 5 "$PYTHON" -m benchmarks.parallel_runs "$STUDY" --ablation --plan benchmarks/plans/order_study.txt \
  --jobs 32 --deadline $(($(left) - 50)) -- train.amp=fp32 data.num_workers=1 >"$OUT/runs.txt" 2>&1 &
study=$!
MLRANK_CUDA_KERNELS=1 timeout 240 "$PYTHON" -m pytest -q -rs -p no:cacheprovider --maxfail=30 \
  tests/test_contrastive_mil_cuda.py >"$OUT/tests.txt" 2>&1
echo "tests: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/tests.txt"
wait $study
echo "study: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/runs.txt"
if [ "$(left)" -gt 90 ]; then
  timeout $(($(left) - 20)) "$PYTHON" -m benchmarks.gpu_op --output-dir "$OUT" >"$OUT/bench.txt" 2>&1
  echo "benchmark: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/bench.txt"
fi
tar czf "$OUT/study.tgz" -C "$STUDY" --exclude='*.pt' . && ls -la "$OUT"
