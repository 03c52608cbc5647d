#!/usr/bin/env bash
# The GPU proof of issue 14, one command on a machine with a CUDA GPU and no network:
#
#   bash benchmarks/gpu_check.sh            # install, cuda tests, GPU benchmarks, one markdown table
#   bash benchmarks/gpu_check.sh --dry-run  # what it would run (no GPU needed)
#
# 1. checks that torch sees a CUDA device (else: one line, exit 1, within seconds);
# 2. installs the checkout without touching the machine's packages
#    (python3 -m pip install --no-deps --no-build-isolation -e .);
# 3. runs the cuda-marked tests (tests/test_cuda.py and test_trainer_run.py's tiny run: torchvision
#    backbones and the embedded synthetic set only: no timm, no downloads, no data set);
# 4. runs benchmarks/gpu_bench.py (wide_resnet50_2 @224 episodes/s on the paper's episode shapes with
#    cudnn.benchmark off/on, the data path's share of a step, the paper budget projected, onnxruntime
#    CUDA vs CPU img/s) and prints its table for BENCHMARKS.md.
# Everything within 10 minutes (timeouts below: 20 + 60 + 300 + 200 s). Exit status: 0 when all
# passed, 1 otherwise; the results (pytest log, gpu.json, table.md) go to $OUT (default: a temp dir).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"

if [[ "${1:-}" == "--dry-run" ]]; then
    echo "gpu_check: would check CUDA with: $PY -c 'import torch; torch.cuda.is_available()'"
    echo "gpu_check: would install with: $PY -m pip install --no-deps --no-build-isolation -e ."
    echo "gpu_check: would run: $PY -m pytest -q -m cuda tests/test_cuda.py tests/test_trainer_run.py"
    echo "gpu_check: would run: $PY benchmarks/gpu_bench.py --json $OUT/gpu.json"
    "$PY" -c 'import torch' 2>/dev/null \
        || { echo "gpu_check: (dry run) $PY cannot import torch: set PYTHON=... to show the benchmark plan"; exit 0; }
    exec "$PY" benchmarks/gpu_bench.py --dry-run
fi

fail() { echo "gpu_check: $*" >&2; exit 1; }

timeout 20 "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null
case $? in
    0) ;;
    3) fail "no CUDA device: torch.cuda.is_available() is False (run this on a GPU machine)" ;;
    *) fail "cannot import torch with $PY (set PYTHON=...)" ;;
esac

timeout 60 "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 \
    || fail "pip install --no-deps --no-build-isolation -e . failed (see $OUT/install.log)"

"$PY" - <<'EOF'
import onnxruntime, torch
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"onnxruntime {onnxruntime.__version__} providers {onnxruntime.get_available_providers()}")
EOF

status=0
timeout 300 "$PY" -m pytest -q -m cuda tests/test_cuda.py tests/test_trainer_run.py -p no:cacheprovider >"$OUT/pytest.log" 2>&1
rc=$?
tail -n 15 "$OUT/pytest.log"
[[ $rc -eq 0 ]] || { echo "gpu_check: cuda tests failed (rc $rc, log $OUT/pytest.log)" >&2; status=1; }

timeout 200 "$PY" benchmarks/gpu_bench.py --json "$OUT/gpu.json" >"$OUT/table.md" 2>"$OUT/bench.log"
rc=$?
if [[ $rc -eq 0 ]]; then
    cat "$OUT/table.md"
else
    tail -n 15 "$OUT/bench.log"
    echo "gpu_check: gpu_bench.py failed (rc $rc, log $OUT/bench.log)" >&2
    status=1
fi
echo "gpu_check: results in $OUT"
exit $status
