#!/usr/bin/env bash
# One-shot check of the vLLM generation engine on a CUDA machine (e.g. a lent H200), from the
# repository root:  bash benchmarks/gpu/vllm_check.sh
#
#   1. makes `vllm` importable: already installed, or from a wheel folder ($VLLM_WHEELS, default
#      .whl/, holding vllm and the dependencies it lacks there: pip runs with --no-index);
#   2. makes `promptserve` importable (editable, no dependency resolution);
#   3. runs tests/unit/test_vllm_engine.py (tiny seeded Llama, float32: greedy tokens equal a
#      transformers reference, soft prompts, a mixed batch, abort, queue bound, IDP selection);
#   4. prints tokens/s for a bare prompt and for 1, 10, 100 distinct soft prompts mixed in one
#      stream (benchmarks/gpu/vllm_tokens.py); MODEL=DIR DTYPE=bfloat16 measures a real model,
#      BENCH_ARGS adds its options (e.g. "--requests 64 --max-tokens 128").
#
# Everything it prints is also written to $OUT (or /tmp/vllm-check-out) as log + JSON.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
WHEELS=${VLLM_WHEELS:-.whl}
OUT_DIR=${OUT:-/tmp/vllm-check-out}
mkdir -p "$OUT_DIR"
export VLLM_WORKER_MULTIPROC_METHOD=spawn VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT_DIR/vllm_check.log") 2>&1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if ! $PY -c "import vllm" 2>/dev/null; then
    if compgen -G "$WHEELS/vllm-*.whl" >/dev/null; then
        echo "== installing vllm from $WHEELS"
        $PY -m pip install -q --no-index --find-links "$WHEELS" "$WHEELS"/vllm-*.whl || exit 2
    else
        echo "vllm is not importable and $WHEELS holds no vllm wheel: set VLLM_WHEELS" >&2
        exit 2
    fi
fi
$PY -c "import promptserve" 2>/dev/null ||
    $PY -m pip install -q --no-deps --no-build-isolation -e . || exit 2
$PY -c "import vllm, torch, transformers as t; print('vllm', vllm.__version__, 'torch',
torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', t.__version__)"

echo "== tests/unit/test_vllm_engine.py"
$PY -m pytest tests/unit/test_vllm_engine.py -q -rs --durations=5 -p no:cacheprovider
tests=$?

echo "== tokens/s"
$PY benchmarks/gpu/vllm_tokens.py ${MODEL:+--model "$MODEL"} --dtype "${DTYPE:-float32}" ${BENCH_ARGS:-} |
    tee "$OUT_DIR/vllm_tokens.txt"
bench=${PIPESTATUS[0]}
tail -n 1 "$OUT_DIR/vllm_tokens.txt" >"$OUT_DIR/vllm_tokens.json" 2>/dev/null || true
echo "== tests rc=$tests, benchmark rc=$bench"
exit $((tests || bench))
