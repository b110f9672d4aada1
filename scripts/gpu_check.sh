#!/usr/bin/env bash
# The one prepared check of the GPU path (issue 26, item 8): full-size SD1.5, SDXL and SD3 with random weights (no
# download), training steps of agsm, softrepa, dsm and Diffusion-DPO (a LoRA) in bf16 and fp16, sampling with tokens,
# pnp and flowedit with tokens, the equal-precision rows of benchmarks/train_step.py, peak memory and MFU. Under 8
# minutes on one H100 (benchmarks/gpu_check.py: the per-part estimates and time guards). Prints one table; writes
# gpu_check.json, gpu_check.md, rows.jsonl and gpu_check.log to ${OUT:-runs/gpu}.
#
#   bash scripts/gpu_check.sh                 # on a GPU machine, from anywhere in the checkout
#   bash scripts/gpu_check.sh --toy           # the same parts at toy size on the CPU
#   bash scripts/gpu_check.sh --parts sd15 equal --guard sd15=150   # more options: benchmarks/gpu_check.py --help
#
# Python: $AGSM_PYTHON, else the first of python3 (a GPU machine's own torch) and .venv/bin/python that imports torch.
# It needs torch, diffusers, transformers, accelerate, peft, safetensors, tokenizers, pyyaml, pillow and numpy; agsm
# itself comes from src/. A machine without network gets what it lacks as wheels in .whl/, installed here into a
# temporary folder first: on a machine with network,
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1
# (the Python version of the GPU machine; --platform manylinux2014_x86_64 for packages with compiled code).
set -u -o pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT:-runs/gpu}
mkdir -p "$OUT_DIR"
TOY=0
for arg in "$@"; do
    case "$arg" in --toy|toy) TOY=1 ;; esac
done

PY=""
for candidate in "${AGSM_PYTHON:-}" python3 .venv/bin/python; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c "import torch" 2>/dev/null; then
        PY=$candidate
        break
    fi
done
if [ -z "$PY" ]; then
    echo "gpu_check: no Python here imports torch (tried \$AGSM_PYTHON, python3, .venv/bin/python);" \
         "set AGSM_PYTHON to one that does, or run 'make setup' for .venv" >&2
    exit 2
fi

SITE=""
if compgen -G ".whl/*.whl" >/dev/null; then
    SITE=$(mktemp -d /tmp/agsm-gpu-check-site.XXXXXX)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { echo "gpu_check: installing the wheels in .whl/ failed (above)" >&2; exit 2; }
fi
export PYTHONPATH="$PWD/src${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

MISSING=$("$PY" -c "
import importlib.util
need = ['torch', 'diffusers', 'transformers', 'accelerate', 'peft', 'safetensors', 'tokenizers', 'yaml', 'PIL', 'numpy']
print(' '.join(n for n in need if importlib.util.find_spec(n) is None))")
if [ -n "$MISSING" ]; then
    echo "gpu_check: $PY lacks: $MISSING. With network: $PY -m pip install -e . ;" \
         "without: put their wheels in .whl/ (the pip download line at the top of this script) and run again" >&2
    exit 2
fi

{
    "$PY" -c "import sys, torch, diffusers, transformers
print('python', sys.executable, sys.version.split()[0], '| torch', torch.__version__, 'CUDA', torch.version.cuda,
      'with a GPU' if torch.cuda.is_available() else 'without a GPU', '| diffusers', diffusers.__version__,
      '| transformers', transformers.__version__)"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
} 2>&1 | tee "$OUT_DIR/gpu_check.log"

# At full size the whole run, this set-up included, stays under 8 minutes: the parts get what is left less 40 s for
# the driver's imports and table (a later --budget in the arguments wins), and `timeout` is the backstop; on its TERM
# the driver stops the running part, keeps what was written and prints the table.
BUDGET=()
[ "$TOY" = 1 ] || BUDGET=(--budget $(( 475 - SECONDS - 40 )))
LIMIT=$(( TOY ? 1800 : 475 - SECONDS ))
timeout --signal=TERM --kill-after=15 "$LIMIT" "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" \
    ${BUDGET[@]+"${BUDGET[@]}"} "$@" 2>&1 | tee -a "$OUT_DIR/gpu_check.log"
STATUS=$?
[ -n "$SITE" ] && rm -rf "$SITE"
exit $STATUS
