#!/usr/bin/env bash
# The ShapesWorld study (docs/study.md), every arm as it was run, then its tables (scripts/study_tables.sh).
#   bash scripts/run_study.sh      # about 4 hours of 2 cores; an arm whose token files exist is only re-scored
# Arms train on the demo's 2,000-image training set and are scored on the development suite (grammar seed 7);
# the finalists and controls are then scored, unchanged, on the shipped suite (--prompts test).
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
PY=${PY:-.venv/bin/python}
sd15() { $PY -m agsm.study.arms --backbone sd15 --out runs/study "$@"; }
sd3() { $PY -m agsm.study.arms --backbone sd3 --out runs/study --steps 1000 "$@"; }
OFFICIAL="tokens.init=empty_prompt method.ema_init=independent method.ema_decay=0.9999 train.min_lr=1e-5 train.restart_every=10000"

# Item 1: the signal, per model.
for m in sd15 sd3; do
  $PY -m agsm.study.signal --model src/agsm/shapes/models/$m-tiny --out docs/study/signal-$m --per-category 40 --draws 2
done

# sd15-tiny on the development suite, two arms side by side (3 training seeds unless --seeds says otherwise).
(
  sd15 --prompts dev --name base
  sd15 --prompts dev --name agsm
  sd15 --prompts dev --name agsm-hard67 --set method.hard_negatives=0.67
  sd15 --prompts dev --name agsm-hard100 --set method.hard_negatives=1.0
  sd15 --prompts dev --name agsm-official --set $OFFICIAL
  sd15 --prompts dev --name agsm-psi-pos-only --seeds 0 1 --set method.gamma_neg=0
  sd15 --prompts dev --name agsm-bt --seeds 0 1 --set method.bradley_terry=true
  sd15 --prompts dev --name agsm-velocity --set method.reward_space=velocity
  sd15 --prompts dev --name agsm-official-8k --seeds 0 --steps 8000 --set $OFFICIAL
) &
(
  sd15 --prompts dev --name dsm --method dsm
  sd15 --prompts dev --name dsm-official --method dsm --set tokens.init=empty_prompt train.min_lr=1e-5 train.restart_every=10000
  sd15 --prompts dev --name softrepa --method softrepa
  sd15 --prompts dev --name softrepa-hard67 --seeds 0 1 --method softrepa --set method.hard_negatives=0.67
  sd15 --prompts dev --name agsm-hard67-lr1e-2 --set method.hard_negatives=0.67 train.lr=0.01
  sd15 --prompts dev --name agsm-hard67-allstages --set method.hard_negatives=0.67 'tokens.stages=[down,mid,up]'
  sd15 --prompts dev --name agsm-shared --seeds 0 --set method.shared_tokens=true
) &
wait

# Guidance at sampling: the same tokens at CFG 3 and 9 (the base at each).
for g in 3 9; do
  sd15 --prompts dev --name base --guidance $g
  for arm in agsm agsm-hard67; do sd15 --prompts dev --name $arm --eval-only --guidance $g; done
done

# sd3-tiny (1,000 steps: the tiny SD3 costs about 8x more per step on a CPU), fewer seeds.
sd3 --prompts dev --name base
sd3 --prompts dev --name agsm --seeds 0 1
sd3 --prompts dev --name softrepa --seeds 0 1 --method softrepa
sd3 --prompts dev --name agsm-hard67 --seeds 0 --set method.hard_negatives=0.67
sd3 --prompts dev --name dsm --seeds 0 --method dsm
sd3 --prompts dev --name softrepa-lrcycle --seeds 0 --method softrepa --set train.min_lr=1e-5 train.restart_every=10000 \
    tokens.time_table=per_block tokens.time_init_std=0.02
sd3 --prompts dev --name agsm-official --seeds 0 1 2 --set method.ema_at=x_t tokens.time_table=per_block \
    tokens.time_init_std=0.02 method.ema_init=independent method.ema_decay=0.9999 train.min_lr=1e-5 train.restart_every=10000

# Reporting on the shipped suite, no retraining.
sd15 --prompts test --name base
for arm in agsm agsm-official dsm dsm-official softrepa agsm-hard67; do sd15 --prompts test --name $arm --eval-only; done
sd3 --prompts test --name base
sd3 --prompts test --name agsm --eval-only --seeds 0 1
sd3 --prompts test --name dsm --eval-only --seeds 0
sd3 --prompts test --name softrepa --eval-only --seeds 0 1
sd3 --prompts test --name agsm-official --eval-only --seeds 0 1 2
sd3 --prompts test --name softrepa-lrcycle --eval-only --seeds 0

# Item 2: a candidate sd15 base (continued pretraining with restated captions), judged by its own properties only.
$PY -m agsm.shapes.pretrain --out runs/models/sd15-tiny-restated --work runs/pretrain-sd15-restated --steps-unet 6000 \
    --seed 2 --init-from src/agsm/shapes/models/sd15-tiny --lr-unet 0.0004 --position-repeats 2 --restate-share 0.5 \
    --checkpoint-every 250
$PY -m agsm.study.signal --model runs/models/sd15-tiny-restated --out docs/study/signal-sd15-restated --per-category 40 --draws 2
for p in dev test; do
  $PY -m agsm.study.arms --backbone sd15 --model runs/models/sd15-tiny-restated --out runs/study-restated --prompts $p --name base
done
$PY -m agsm.study.order_bias runs/study/sd15/base/eval-test.json runs/study-restated/sd15/base/eval-test.json \
    runs/study/sd3/base/eval-test.json

bash scripts/study_tables.sh
