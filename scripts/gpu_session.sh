#!/usr/bin/env bash
# One prepared GPU session (device tool): train the tiny SD3 ShapesWorld model sized to a time budget, then the
# training-step benchmarks at SD1.5 / SD3 scale. Run from the repo root with the diffusers wheel in .whl/.
#   bash scripts/gpu_session.sh OUT_DIR TRAIN_SECONDS
set -u -o pipefail
# tqdm ends its updates with \r, so log lines share a "line" with them: split on \r before filtering.
OUT=${1:?output folder}; BUDGET=${2:-270}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"

# 1. probe: 300 steps at the real settings; the rate between the checkpoints at 150 and 300 sizes the real run
python3 -m agsm.shapes.pretrain --arch sd3 --out /tmp/probe --work /tmp/probe-work --steps 300 --device cuda \
    --batch 256 --bf16 --checkpoint-every 150 --log-every 150 2>&1 | tr '\r' '\n' | grep -v "it/s" | tee "$OUT/probe.log"
RATE=$(grep -o "[0-9.]* s/step" "$OUT/probe.log" | tail -1 | cut -d' ' -f1)
[ -n "$RATE" ] || { echo "no s/step in the probe log"; exit 1; }
STEPS=$(python3 -c "print(max(2000, min(40000, int($BUDGET / $RATE) // 1000 * 1000)))")
echo "probe: $RATE s/step -> $STEPS steps"

# 2. the model
python3 -m agsm.shapes.pretrain --arch sd3 --out /tmp/sd3-tiny --work /tmp/sd3-work --steps "$STEPS" --seed 0 \
    --device cuda --batch 256 --bf16 --checkpoint-every 500 --log-every 500 2>&1 | tr '\r' '\n' | grep -v "it/s" | tee "$OUT/train.log"
tar -C /tmp -czf "$OUT/sd3-tiny.tgz" sd3-tiny  # gzip: the plain tar (17.5 MB) is over the 16 MB a file may bring back

# 3. benchmarks at real scale (random weights), whatever time is left
timeout 110 python3 benchmarks/train_step.py --models sd15 --methods agsm softrepa --device cuda --latent 64 \
    --precision bf16 --steps 5 --json "$OUT/train_step_gpu_sd15.json" 2>&1 | tee "$OUT/bench.log"
timeout 110 python3 benchmarks/train_step.py --models sd3 --methods agsm --device cuda --latent 64 \
    --precision bf16 --steps 5 --json "$OUT/train_step_gpu_sd3.json" 2>&1 | tee -a "$OUT/bench.log"
echo done
