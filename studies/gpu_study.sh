#!/usr/bin/env bash
# One call on a lent GPU machine (the tool library's device run, $OUT set): build with the CUDA
# kernels, train the loss ablation and a plan of runs side by side (studies/parallel_runs.py),
# run checks on the GPU meanwhile, then the op benchmark if time is left.
#   LIMIT      seconds the whole script may take (default 540)
#   PLAN       the plan of runs (default studies/plans/order_study.txt); ABLATION=0 leaves the
#              ablation's rows out
#   OVERRIDES  key=value for every run (default: train.amp=fp32 data.num_workers=1); where it sets
#              data.synthetic_cache_dir, the splits are rendered there once first, with every core
#   CHECKS     what runs beside the study: "tests" (the CUDA tests), "sanitizer" (compute-sanitizer
#              memcheck and racecheck on benchmarks/sanitizer_case.py), "bench" (the op benchmark,
#              after the study); default "tests bench"
#   FORCE_CUDA 1 (default) builds the CUDA kernels; 0 builds without them (quicker: the runs then take
#              the ATen path on the GPU, which gave the same numbers)
# Results in $OUT: study.tgz (run folders without checkpoints), build.txt, runs.txt and the checks'
# logs (tests.txt, sanitizer.txt, gpu_op.md/json).
set -uo pipefail
OUT=${OUT:?set OUT to the results folder}
LIMIT=${LIMIT:-540}
PLAN=${PLAN:-studies/plans/order_study.txt}
OVERRIDES=${OVERRIDES:-train.amp=fp32 data.num_workers=1}
CHECKS=${CHECKS:-tests bench}
ABLATION=${ABLATION:-1}
T0=$SECONDS
PYTHON=${PYTHON:-python3}
left() { echo $((LIMIT - (SECONDS - T0))); }
wants() { [[ " $CHECKS " == *" $1 "* ]]; }
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; "$PYTHON" -c "import torch; print(torch.__version__)"; nproc; } >"$OUT/build.txt" 2>&1
if ! FORCE_CUDA=${FORCE_CUDA:-1} TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 timeout 300 "$PYTHON" -m pip install --no-build-isolation \
    --no-deps --no-index -e . >>"$OUT/build.txt" 2>&1; then
  echo "build failed after $((SECONDS - T0)) s" | tee -a "$OUT/build.txt"; tail -40 "$OUT/build.txt"; exit 1
fi
"$PYTHON" -c "import mlrank.ops as o; print('compiled_with_cuda', o.compiled_with_cuda())" >>"$OUT/build.txt" 2>&1
echo "built in $((SECONDS - T0)) s" | tee -a "$OUT/build.txt"
# shellcheck disable=SC2086  # OVERRIDES is a list of words
if [[ " $OVERRIDES " == *" data.synthetic_cache_dir="* ]]; then
  "$PYTHON" -m studies.render_cache $OVERRIDES >>"$OUT/build.txt" 2>&1
  echo "rendered at $((SECONDS - T0)) s" | tee -a "$OUT/build.txt"
fi
STUDY=/tmp/study
ablation=$([ "$ABLATION" = 1 ] && echo --ablation)
# shellcheck disable=SC2086
nice -n 5 "$PYTHON" -m studies.parallel_runs "$STUDY" $ablation --plan "$PLAN" \
  --jobs 32 --deadline $(($(left) - 50)) -- $OVERRIDES >"$OUT/runs.txt" 2>&1 &
study=$!
if wants sanitizer; then
  for tool in memcheck racecheck; do
    timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 1 "$PYTHON" benchmarks/sanitizer_case.py \
      >>"$OUT/sanitizer.txt" 2>&1
    echo "compute-sanitizer $tool: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/sanitizer.txt"
  done
fi
if wants tests; then
  MLRANK_CUDA_KERNELS=1 timeout 240 "$PYTHON" -m pytest -q -rs -p no:cacheprovider --maxfail=30 \
    tests/test_contrastive_mil_cuda.py >"$OUT/tests.txt" 2>&1
  echo "tests: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/tests.txt"
fi
wait $study
echo "study: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/runs.txt"
if wants bench && [ "$(left)" -gt 90 ]; then
  timeout $(($(left) - 20)) "$PYTHON" -m benchmarks.gpu_op --output-dir "$OUT" >"$OUT/bench.txt" 2>&1
  echo "benchmark: exit $? at $((SECONDS - T0)) s" | tee -a "$OUT/bench.txt"
fi
tar czf "$OUT/study.tgz" -C "$STUDY" --exclude='*.pt' . && ls -la "$OUT"
