#!/usr/bin/env bash
# The miniature Table 3 on sd15-tiny (docs/preference.md): AGSM tokens alone and on top of preference-tuned backbones.
#   bash scripts/run_preference_study.sh              # the full study (hours of 2 cores; see the estimates below)
#   TOY=1 OUT=runs/pref-toy bash scripts/run_preference_study.sh   # every stage at toy size, in a few minutes
#   STAGES="pairs base dpo" bash scripts/run_preference_study.sh     # only some stages (in this order)
#
# Arms, each scored on the suite (--prompts, default test) by python -m agsm.study.arms, 3 training seeds each:
#   base | +AGSM | DPO | DPO+AGSM | InPO | InPO+AGSM | SPO | SPO+AGSM
# 1. pairs: `agsm shapes pairs` draws CANDIDATES images of PAIR_PROMPTS training-grammar prompts with the base model;
#    the exact judge keeps a correct vs an incorrect image per prompt (all-correct or all-wrong prompts are ties).
# 2. base, +AGSM: the shipped model, and AGSM tokens trained on it (the demo's recipe, AGSM_STEPS steps).
# 3. for each method and seed k: `agsm train --config sd15-<method>` with this study's tiny-model settings writes the
#    tuned backbone and its whole pipeline (tune.export_pipeline); the arm script scores that pipeline as `base` and
#    trains and scores AGSM tokens on it (seed k) as `agsm`.
# 4. the table: python -m agsm.study.preference_report writes $OUT/report-$PROMPTS/ (table.md: accuracy per category,
#    quality and the seed-paired AGSM gain per backbone, mean ± sd over training seeds; chart.png, pareto.png).
# A stage whose outputs exist is skipped (a tuned backbone with its pipeline/, an arm with its eval-<prompts>.json is
# only re-read), so a killed study continues where it stopped; training resumes from its last checkpoint.
#
# Runtime on 2 CPU cores (2026-12-03, Intel Xeon, the study's own run with 2-4 stages side by side, so each figure is
# a share of the machine, not a benchmark): pairs 19 min (2000 prompts x 4 images; 723 pairs, about 1 prompt in 3);
# dpo 500 steps 4-5 min a seed; inpo 200 steps 4-9 min; spo 200 steps 12-20 min; AGSM tokens (1000 steps) with their
# scoring 4-11 min a run; scoring a model on the suite 1-3 min. In all about 95 minutes of wall time with the stages
# run as two to four lanes (docs/preference.md); the first plan (1000 / 1000 / 500 preference steps, 2000 AGSM
# steps) measured at 3-5 hours and was cut before any result was seen.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-src/agsm/shapes/models/sd15-tiny}
OUT=${OUT:-runs/preference-study}
PROMPTS=${PROMPTS:-test}
STAGES=${STAGES:-pairs base dpo inpo spo table}
if [[ "${TOY:-0}" == 1 ]]; then
  SEEDS=${SEEDS:-0}; PAIR_PROMPTS=${PAIR_PROMPTS:-16}; PREF_STEPS=${PREF_STEPS:-4}; AGSM_STEPS=${AGSM_STEPS:-4}
  PREF_BATCH=${PREF_BATCH:-2}; SCORE_ARGS=(--per-category 1)
else
  SEEDS=${SEEDS:-0 1 2}; PAIR_PROMPTS=${PAIR_PROMPTS:-2000}; PREF_STEPS=${PREF_STEPS:-}; AGSM_STEPS=${AGSM_STEPS:-1000}
  PREF_BATCH=${PREF_BATCH:-8}; SCORE_ARGS=()
fi
CANDIDATES=${CANDIDATES:-4}
mkdir -p "$OUT"
TIMINGS="$OUT/timings.tsv"

timed() {  # timed NAME COMMAND...: run it, append "NAME<TAB>seconds" to $TIMINGS
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$TIMINGS"
}

# The tiny model's settings for each method, on top of its shipped sd15-<method> config: the model's own
# resolution and sampler (64 px, 25 DDIM steps, guidance 6), float32 on a CPU, a rank-8 LoRA.
common=(--model.path "$MODEL" --model.resolution null --data.path "$OUT/pairs" --data.cache_dir "$OUT/cache"
        --data.cache_text true --train.mixed_precision no --train.gradient_checkpointing false
        --tune.params lora --tune.lora_rank 8 --tune.export_pipeline true --train.log_every 25
        # the lr schedule this study ran with (the shipped configs now follow the public warm-up and constant rate)
        --train.lr_scheduler cosine_with_restarts --train.restart_every 1000000 --train.lr_warmup_steps 0)
settings() {
  case $1 in
    dpo)  echo "--train.steps ${PREF_STEPS:-${DPO_STEPS:-500}} --train.images_per_step $PREF_BATCH --train.lr 1e-4 --method.beta 5000" ;;
    inpo) echo "--train.steps ${PREF_STEPS:-${INPO_STEPS:-200}} --train.images_per_step $PREF_BATCH --train.lr 1e-4 --method.beta 2000" ;;
    spo)  echo "--train.steps ${PREF_STEPS:-${SPO_STEPS:-200}} --train.images_per_step $PREF_BATCH --train.lr 1e-4 --method.steps 25
                --method.guidance 6 --method.divert_start 4 --method.scorer shapes_judge
                --data.format pairs --data.caption_column caption" ;;
  esac
}

arm() {  # arm ROOT MODEL_FOLDER NAME [SEEDS...]: score the model (NAME base) or train and score AGSM tokens on it
  local root=$1 model=$2 name=$3
  shift 3
  mkdir -p "$root"
  # every arm trains AGSM on the same 2000-image set: made once, shared by a link
  if [[ ! -e "$root/data-2000" && -d "$OUT/base/data-2000" && "$root" != "$OUT/base" ]]; then
    ln -s "$(realpath "$OUT/base/data-2000")" "$root/data-2000"
  fi
  local seeds=()
  [[ $# -gt 0 ]] && seeds=(--seeds "$@")
  $PY -m agsm.study.arms --backbone sd15 --model "$model" --name "$name" --prompts "$PROMPTS" --out "$root" \
      --steps "$AGSM_STEPS" "${seeds[@]}" "${SCORE_ARGS[@]}"
}

for stage in $STAGES; do
  case $stage in
    pairs)
      if [[ ! -f "$OUT/pairs/pairs.json" ]]; then
        timed pairs $PY -m agsm.cli shapes pairs --model "$MODEL" --prompts "$PAIR_PROMPTS" --candidates "$CANDIDATES" \
            --out "$OUT/pairs" --device cpu --dtype float32
      fi ;;
    base)
      timed base-score arm "$OUT/base" "$MODEL" base
      # shellcheck disable=SC2086
      timed base-agsm arm "$OUT/base" "$MODEL" agsm $SEEDS ;;
    dpo|inpo|spo)
      for seed in $SEEDS; do
        run="$OUT/$stage/seed$seed"
        if [[ ! -d "$run/pipeline" ]]; then
          resume=()
          [[ -d "$run/checkpoints" ]] && resume=(--resume)
          # shellcheck disable=SC2046
          timed "$stage-train-seed$seed" $PY -m agsm.cli train --config "sd15-$stage" "${resume[@]}" "${common[@]}" \
              $(settings "$stage") --train.seed "$seed" --train.output_dir "$run" --train.checkpoint_every 100
        fi
        timed "$stage-score-seed$seed" arm "$OUT/$stage-seed$seed" "$run/pipeline" base
        timed "$stage-agsm-seed$seed" arm "$OUT/$stage-seed$seed" "$run/pipeline" agsm "$seed"
      done ;;
    table)
      # per category, quality, the seed-paired AGSM gain on each backbone, a chart: $OUT/report-$PROMPTS/
      $PY -m agsm.study.preference_report --root "$OUT" --prompts "$PROMPTS" --out "$OUT/report-$PROMPTS" ;;
    *) echo "unknown stage $stage (pairs base dpo inpo spo table)" >&2; exit 2 ;;
  esac
done
