#!/usr/bin/env bash
# The ShapesWorld study's SDXL rows (docs/study.md, "SDXL"): sdxl-tiny's signal, then base, AGSM (gamma_neg 1, the
# paper's table), AGSM with gamma_neg 0.1 (the public code), SoftREPA and the DSM control, 3 training seeds each,
# chosen on the development suite; psi+ against psi- in the unconditional branch at sampling (the same AGSM tokens);
# then everything, unchanged, on the shipped suite. About 70 min of one core per lane, two lanes side by side.
#   bash scripts/run_study_sdxl.sh     # arms whose token files exist are only re-scored
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
PY=${PY:-.venv/bin/python}
sdxl() { $PY -m agsm.study.arms --backbone sdxl --out runs/study "$@"; }

(
  $PY -m agsm.study.signal --model src/agsm/shapes/models/sdxl-tiny --out docs/study/signal-sdxl --per-category 40 --draws 2
  sdxl --prompts dev --name base
  sdxl --prompts dev --name agsm
  sdxl --prompts dev --name agsm-gneg0.1 --set method.gamma_neg=0.1
) &
(
  sdxl --prompts dev --name softrepa --method softrepa
  sdxl --prompts dev --name dsm --method dsm
) &
wait

# psi- in the unconditional branch (the public SDXL script) against psi+ (the default), on the same tokens (compare.py
# scores the -unegative tags against the base's images: the base has no tokens to place).
sdxl --prompts dev --name agsm --eval-only --uncond-tokens negative &
sdxl --prompts dev --name agsm-gneg0.1 --eval-only --uncond-tokens negative &
wait

# Reporting on the shipped suite, no retraining.
(
  sdxl --prompts test --name base
  sdxl --prompts test --name agsm --eval-only
  sdxl --prompts test --name agsm-gneg0.1 --eval-only
  sdxl --prompts test --name agsm --eval-only --uncond-tokens negative
) &
(
  sdxl --prompts test --name softrepa --eval-only
  sdxl --prompts test --name dsm --eval-only
  sdxl --prompts test --name agsm-gneg0.1 --eval-only --uncond-tokens negative
) &
wait
cmp() { $PY -m agsm.study.compare --root runs/study "$@" > /dev/null; }
cmp --backbone sdxl --prompts dev --out docs/study/sdxl-dev --arms agsm agsm-gneg0.1 softrepa dsm \
    --grid-arms agsm dsm softrepa
cmp --backbone sdxl --prompts dev-unegative --out docs/study/sdxl-dev-psineg --arms agsm agsm-gneg0.1
cmp --backbone sdxl --prompts test --out docs/study/sdxl-test --arms agsm agsm-gneg0.1 softrepa dsm \
    --grid-arms agsm dsm softrepa
cmp --backbone sdxl --prompts test-unegative --out docs/study/sdxl-test-psineg --arms agsm agsm-gneg0.1
