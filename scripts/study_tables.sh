#!/usr/bin/env bash
# The study's tables, plots and grids (docs/study/*/), from the runs under runs/study (scripts/run_study.sh).
set -euo pipefail
PY=${PY:-.venv/bin/python}
cmp() { $PY -m agsm.study.compare --root runs/study "$@" > /dev/null; }
cmp --backbone sd15 --prompts dev --out docs/study/sd15-dev-main \
    --arms agsm dsm softrepa agsm-official dsm-official --grid-arms agsm dsm softrepa agsm-official
cmp --backbone sd15 --prompts dev --out docs/study/sd15-dev-levers \
    --arms agsm agsm-hard67 agsm-hard100 softrepa-hard67 agsm-hard67-lr1e-2 agsm-hard67-allstages \
           agsm-official-8k agsm-velocity
cmp --backbone sd15 --prompts dev --out docs/study/sd15-dev-ablations \
    --arms agsm agsm-psi-pos-only agsm-shared agsm-bt
for g in 3 9; do cmp --backbone sd15 --prompts dev-g$g --out docs/study/sd15-dev-g$g --arms agsm agsm-hard67; done
cmp --backbone sd15 --prompts test --out docs/study/sd15-test \
    --arms agsm dsm softrepa agsm-official dsm-official agsm-hard67 --grid-arms agsm dsm softrepa
cmp --backbone sd3 --prompts dev --out docs/study/sd3-dev --arms agsm agsm-official agsm-hard67 dsm softrepa softrepa-lrcycle \
    --grid-arms agsm dsm softrepa
cmp --backbone sd3 --prompts test --out docs/study/sd3-test --arms agsm agsm-official dsm softrepa softrepa-lrcycle
