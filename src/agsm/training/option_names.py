"""The other names an option goes by: its old names (read from the config.yaml of earlier runs), the names diffusers'
training scripts give it (read on the command line and as top-level YAML keys), and the valid names closest to a
mistyped one (the "did you mean" that leads an unknown option's error). training/config_parsing.py applies them.
"""
from __future__ import annotations

import difflib


# Old option names still read (with a warning), because the config.yaml of earlier runs holds them:
# (section, old name) -> new name. In the method section a name may be one method's: (method.<name>, old name).
RENAMED_OPTIONS = {
    ("train", "keep_checkpoints"): "checkpoints_total_limit",
    ("method.softrepa", "softrepa_temperature"): "temperature",
    ("method.softrepa", "softrepa_scale"): "scale",
    ("method.dpo", "dpo_beta"): "beta",
    ("method.inpo", "dpo_beta"): "beta",
    ("method.inpo", "inpo_inversion_steps"): "inversion_steps",
    ("method.inpo", "inpo_inversion_eta"): "inversion_eta",
    ("method.inpo", "inpo_invert_with"): "invert_with",
    **{("method.spo", f"spo_{option}"): option for option in ("steps", "eta", "guidance", "candidates",
                                                              "divert_start", "threshold", "beta", "clip", "scorer")},
}


# Before each method had its own options (issue 25), the method section was one bag of every method's options, and a
# run's config.yaml holds all of them: only the named method's are read from such a section, the others dropped.
FLAT_METHOD_OPTIONS = frozenset({
    "name", "gamma_pos", "gamma_neg", "temperature", "reward_space", "shared_tokens", "bradley_terry", "ema_decay",
    "ema_init", "hard_negatives", "hard_negative_kinds", "noise_sharing", "ema_at", "ema_step", "diagonal_weight",
    *(old for (section, old) in RENAMED_OPTIONS if section.startswith("method."))})


# The names diffusers' training scripts (train_text_to_image.py, textual_inversion.py ...) give the common options,
# read as agsm's on the command line (--learning_rate 1e-4, --learning-rate 1e-4) and as top-level keys of a YAML file,
# so a command or config carried over from those scripts works. Only names that mean the same setting: their
# --validation_steps (validate every N steps) is not agsm's train.validation_steps (sampler steps), so it is absent.
DIFFUSERS_ALIASES = {
    "pretrained_model_name_or_path": "model.path",
    "revision": "model.revision",
    "variant": "model.variant",
    "resolution": "model.resolution",
    "train_data_dir": "data.path",
    "image_column": "data.image_column",
    "caption_column": "data.caption_column",
    "max_train_samples": "data.max_images",
    "output_dir": "train.output_dir",
    "learning_rate": "train.lr",
    "max_train_steps": "train.steps",
    "train_batch_size": "train.images_per_step",
    "adam_weight_decay": "train.weight_decay",
    "max_grad_norm": "train.max_grad_norm",
    "mixed_precision": "train.mixed_precision",
    "lr_scheduler": "train.lr_scheduler",
    "lr_warmup_steps": "train.lr_warmup_steps",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "random_flip": "data.random_flip",
    "checkpointing_steps": "train.checkpoint_every",
    "checkpoints_total_limit": "train.checkpoints_total_limit",
    "num_validation_images": "train.num_validation_images",
    "report_to": "train.report_to",
    "seed": "train.seed",
}


# Of those, the ones the scripts take as bare switches (--random_flip, no value): true when no true/false follows.
# Their --center_crop is such a switch too but is no alias: left off, it random-crops, where agsm's data.center_crop
# false squashes the whole image, so the two names would mean different things.
FLAG_ALIASES = frozenset({"gradient_checkpointing", "random_flip"})


def alias_help() -> list[tuple[str, str]]:
    """[('--learning_rate', '--train.lr'), ...]: the short table `agsm train -h` prints."""
    return [(f"--{alias}", f"--{target}" + (" true" if alias in FLAG_ALIASES else ""))
            for alias, target in DIFFUSERS_ALIASES.items()]


def alias_target(name: str) -> str | None:
    """'train.lr' for learning_rate or learning-rate; None for a name that is no alias."""
    return DIFFUSERS_ALIASES.get(name.replace("-", "_"))


def did_you_mean(wrong: str, candidates: dict[str, str]) -> str:
    """'train.stpes: did you mean train.steps? ' (with the trailing space, to lead an error), or '' when no name is
    close. `candidates`: spelling -> the full name to suggest, so a near-miss of an alias (learing_rate) suggests
    the agsm option it stands for (train.lr)."""
    close = difflib.get_close_matches(wrong.lstrip("-").rpartition(".")[2].replace("-", "_"), list(candidates), n=3,
                                      cutoff=0.6)
    names = list(dict.fromkeys(candidates[c] for c in close))
    return f"{wrong}: did you mean {' or '.join(names)}? " if names else ""


def option_candidates(section: str, valid) -> dict[str, str]:
    """Spellings an unknown option of `section` is compared with: its options, and the diffusers names of them."""
    out = {name: f"{section}.{name}" for name in valid}
    for alias, target in DIFFUSERS_ALIASES.items():
        if target.partition(".")[0] == section:
            out.setdefault(alias, target)
    return out


def unknown_options_hint(section: str, bad, valid) -> str:
    """The 'did you mean' lead of an unknown-options error: one per unknown option that is close to a valid one."""
    return "".join(did_you_mean(f"{section}.{b}", option_candidates(section, valid)) for b in bad)
