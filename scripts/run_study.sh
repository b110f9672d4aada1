#!/usr/bin/env bash
# The ShapesWorld study (docs/study.md), every arm as it was run. Two arms side by side on a 2-core machine:
#   bash scripts/run_study.sh            # about 3 hours of 2 cores; each arm is skipped where its files exist
# Arms train on the demo's 2,000-image training set and are scored on the development suite (grammar seed 7);
# the finalists are then scored on the shipped suite (--prompts test) without retraining.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
PY=${PY:-.venv/bin/python}
sd15() { $PY -m agsm.study.arms --backbone sd15 --prompts dev --out runs/study "$@"; }
sd3() { $PY -m agsm.study.arms --backbone sd3 --prompts dev --out runs/study --steps 1000 "$@"; }

# Item 1: the signal, per model.
for m in sd15 sd3; do
  $PY -m agsm.study.signal --model src/agsm/shapes/models/$m-tiny --out docs/study/signal-$m --per-category 40 --draws 2
done

# sd15-tiny: base, controls, the method, faithfulness, hard negatives, levers, ablations.
(
  sd15 --name base
  sd15 --name agsm
  sd15 --name agsm-hard67 --set method.hard_negatives=0.67
  sd15 --name agsm-hard100 --set method.hard_negatives=1.0
  sd15 --name agsm-official --set tokens.init=empty_prompt method.ema_init=independent method.ema_decay=0.9999 \
       train.min_lr=1e-5 train.restart_every=10000
  sd15 --name agsm-psi-pos-only --seeds 0 1 --set method.gamma_neg=0
  sd15 --name agsm-bt --seeds 0 1 --set method.bradley_terry=true
) &
(
  sd15 --name dsm --method dsm
  sd15 --name softrepa --method softrepa
  sd15 --name softrepa-hard67 --seeds 0 1 --method softrepa --set method.hard_negatives=0.67
  sd15 --name agsm-hard67-lr1e-2 --set method.hard_negatives=0.67 train.lr=0.01
  sd15 --name agsm-hard67-allstages --set method.hard_negatives=0.67 'tokens.stages=[down,mid,up]'
  sd15 --name agsm-shared --seeds 0 1 --set method.shared_tokens=true
) &
wait

# Guidance at sampling (the same tokens, evaluated at CFG 3 and 9; the base at each).
for g in 3 9; do
  sd15 --name base --guidance $g
  sd15 --name agsm --eval-only --guidance $g
  sd15 --name agsm-hard67 --eval-only --guidance $g
done

# sd3-tiny (1,000 steps: the tiny SD3 costs about 8x more per step on a CPU).
sd3 --name base
sd3 --name agsm
sd3 --name agsm-hard67 --set method.hard_negatives=0.67
sd3 --name softrepa --method softrepa

# Reporting: the finalists on the shipped suite, no retraining.
for arm in base agsm agsm-hard67 softrepa dsm; do sd15 --name $arm --eval-only --prompts test; done
for arm in base agsm agsm-hard67 softrepa; do sd3 --name $arm --eval-only --prompts test; done

for m in sd15 sd3; do
  for tag in dev test; do
    $PY -m agsm.study.compare --backbone $m --prompts $tag --out docs/study/$m-$tag --grid-arms agsm dsm softrepa
  done
done
for g in 3 9; do $PY -m agsm.study.compare --backbone sd15 --prompts dev-g$g --out docs/study/sd15-dev-g$g; done
