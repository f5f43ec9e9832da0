#!/usr/bin/env bash
# GPU check of the fused top-k kernel: correctness vs the torch reference on CUDA, copy bandwidth,
# then the benchmark table (kernel vs torch.topk(Q@X.T) vs FAISS GPU), fp16, N up to 10M.
# Needs a Python with CUDA torch + triton (no install, no network). On an H200: 20 s, 25 s with --sweep
# --skip-check (2026-12-04; eval/results/gpu_check_h200*.json). eval/gpu_check.sh runs it with the ranker stage.
#
#   bash kernels/gpu_check.sh                 # JSON to $OUT/gpu_check.json (device tool) or runs/
#   bash kernels/gpu_check.sh --sweep         # + block-size / split sweep at N=10M, D=384
#   PYTHON=/path/to/python bash kernels/gpu_check.sh --budget 200
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in "$REPO/.venv/bin/python" python3 python; do
    if "$c" -c "import sys, torch, triton; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      PY=$c; break
    fi
  done
fi
if [ -z "$PY" ]; then echo "no python with CUDA torch + triton found; set PYTHON=..." >&2; exit 2; fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
# Import llmrec_kernels from kernels/ without installing anything.
PP=$(mktemp -d)
ln -s "$REPO/kernels" "$PP/llmrec_kernels"
unset TRITON_INTERPRET
export PYTHONPATH="$PP:$REPO${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR=${OUT:-$REPO/runs}
mkdir -p "$OUT_DIR"
"$PY" -m llmrec_kernels.gpu_check --out "$OUT_DIR/gpu_check.json" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
