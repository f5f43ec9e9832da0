#!/usr/bin/env bash
# The prepared GPU run: every check that needs a GPU, in one command (under 2 min on an H200, 2026-12-04).
#   1. kernels/gpu_check.sh: the fused top-k kernel's correctness on CUDA, copy bandwidth, benchmark.
#   2. eval/gpu_ranker_check.py: the trained ranker's scoring throughput and LoRA training steps on CUDA.
# It installs nothing and reaches no network: it needs a Python with CUDA torch, triton, transformers
# and peft (the device tool's image has them). llmrec is imported from this checkout.
#
#   bash eval/gpu_check.sh prepare   # HERE, once: the LLM's config + tokenizer and real titles -> .gpu/ (~4 MB)
#   bash eval/gpu_check.sh [--sweep] # THERE (carry .gpu): JSON + logs to $OUT (device tool) or runs/;
#                                    # arguments go to kernels/gpu_check.sh
# Not in it: vLLM on a GPU. Its CUDA wheel (hundreds of MB) cannot reach a machine that has no
# registry and takes 64 MiB of carried files; `make VLLM_SPEC=vllm==... vllm` on a GPU host does it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
GPU_DIR="$REPO/.gpu"
if [ "${1:-}" = prepare ]; then
  PY=${PYTHON:-$REPO/.venv/bin/python}
  MODEL=$("$PY" -c "from llmrec.config import Config; from llmrec.encoders.locations import BUILTIN_LLM; print(Config.load(env={}).models_dir() / BUILTIN_LLM)")
  mkdir -p "$GPU_DIR/model"
  for f in config.json tokenizer.json tokenizer_config.json chat_template.jinja generation_config.json; do
    if [ -f "$MODEL/$f" ]; then cp "$MODEL/$f" "$GPU_DIR/model/"; fi
  done
  "$PY" - "$GPU_DIR/titles.txt" <<'PYEOF'
import sys
from llmrec.config import Config
from llmrec.data.movielens import load_ml_latest_small
items = load_ml_latest_small(Config.load(env={}).ml_latest_small_dir).items[:2000]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(it.title for it in items) + "\n")
PYEOF
  du -sh "$GPU_DIR"
  exit 0
fi
OUT_DIR=${OUT:-$REPO/runs}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
rc=0
bash "$REPO/kernels/gpu_check.sh" --budget "${KERNEL_BUDGET:-200}" "$@" || rc=$?
echo "kernels/gpu_check.sh exit $rc"
if [ ! -f "$GPU_DIR/model/config.json" ]; then
  echo "no $GPU_DIR/model: run 'bash eval/gpu_check.sh prepare' first and carry .gpu" >&2; exit 2
fi
# llmrec as its install lays it out (llmrec.prompts = prompts/, llmrec_kernels = kernels/), without
# putting the repository root on the path: its kernels/ would shadow the `kernels` package that
# transformers probes for at import.
SITE=$(mktemp -d)
cp -r "$REPO/llmrec" "$SITE/llmrec"
cp -r "$REPO/prompts" "$SITE/llmrec/prompts"
ln -s "$REPO/kernels" "$SITE/llmrec_kernels"
PYTHONUNBUFFERED=1 PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$REPO/eval/gpu_ranker_check.py" \
  --model "$GPU_DIR/model" --titles "$GPU_DIR/titles.txt" --out "$OUT_DIR/gpu_ranker.json" \
  --budget "${RANKER_BUDGET:-150}" 2>&1 | tee "$OUT_DIR/gpu_ranker.log" || rc=$?
exit $rc
