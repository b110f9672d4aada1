#!/usr/bin/env bash
# The editing study of docs/editing.md: every editor x {base, AGSM tokens of 3 training seeds} on ShapesWorld.
#   bash scripts/run_edit_study.sh      # about 2.5 hours of one core; finished evaluations are kept and skipped
# Token sets: the demo's AGSM recipe (sd15 and sdxl 2,000 steps, sd3 400 steps), training seeds 0-2, on the demo's
# data. sdxl: the ShapesWorld study's AGSM arm trained exactly these (scripts/run_study_sdxl.sh); they are copied.
# Each evaluation writes base and tokens; the base of these deterministic editors is the same in every seed folder.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
PY=${PY:-.venv/bin/python}
N=30

$PY - <<'PY'
from pathlib import Path
from agsm.training.checkpoint import finished_checkpoints
from agsm.shapes.dataset import write_training_set
from agsm.study.arms import TRAIN_SET, arm_config
from agsm.training.loop import train

root = Path("runs/edit-tokens")
data = root / "data-2000"
if not (data / "metadata.jsonl").exists():
    write_training_set(data, **TRAIN_SET)
import shutil

for backbone, steps in (("sd15", 2000), ("sdxl", 2000), ("sd3", 400)):
    for seed in (0, 1, 2):
        out = root / backbone / f"seed{seed}"
        studied = Path("runs/study") / backbone / "agsm" / f"seed{seed}" / "soft_tokens.safetensors"
        if backbone == "sdxl" and studied.exists() and not (out / "soft_tokens.safetensors").exists():
            out.mkdir(parents=True, exist_ok=True)  # the same config and seed: the same tokens
            shutil.copy(studied, out / "soft_tokens.safetensors")
        if not (out / "soft_tokens.safetensors").exists():
            train(arm_config(backbone, "agsm", seed, steps, data, out, {}), resume=bool(finished_checkpoints(out)))
PY

evaluate() {  # backbone editor name seed [extra eval arguments]
  local backbone=$1 editor=$2 name=$3 seed=$4; shift 4
  local out=runs/edit-study/$backbone/$name/seed$seed
  [ -f "$out/results.json" ] && return 0
  $PY -m agsm.cli eval edit-shapes --model src/agsm/shapes/models/$backbone-tiny --method "$editor" \
      --tokens runs/edit-tokens/$backbone/seed$seed/soft_tokens.safetensors --n $N --seed 0 --out "$out" "$@"
}
for seed in 0 1 2; do
  for editor in ddim_inversion pnp masactrl direct_inversion; do evaluate sd15 $editor $editor $seed; done
  for editor in ddim_inversion pnp masactrl direct_inversion; do evaluate sdxl $editor $editor $seed; done
  for editor in flowedit rf_inversion; do evaluate sd3 $editor $editor $seed; done
  # FlowAlign at its official guidance 13.5 from full noise fails every case on sd3-tiny; a 6-case sweep chose:
  evaluate sd3 flowalign flowalign-w3.5-nmax22 $seed --target-guidance 3.5 --n-max 22
  # Where the tokens sit in FlowEdit (docs/editing.md, "why tokens hurt FlowEdit"):
  evaluate sd3 flowedit flowedit-tokens-target $seed --option tokens_on=target
  evaluate sd3 flowedit flowedit-tokens-cond $seed --option tokens_on=cond
  evaluate sd3 flowedit flowedit-uncond-negative $seed --uncond-tokens negative
  evaluate sd3 flowedit flowedit-nmax20 $seed --n-max 20
done
$PY -m agsm.report.edit_study runs/edit-study --out docs/editing
