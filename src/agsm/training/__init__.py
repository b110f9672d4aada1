"""The training room: `train(config)` and everything a run needs around its loop.

    loop.py                the one loop for every method (accelerate, AdamW, cosine restarts), asking the method's
                           spec (objectives/registry.py) what batch it takes and what it trains
    batches.py             what a step takes: the records, and each step's batch of the kind the method names
    trainables.py          what a run trains, as a small strategy: soft tokens (TokenTrainable) or the backbone
                           (backbone_trainable.py: a LoRA or the whole denoiser, against a frozen reference)
    denoisers.py           what a method's step calls: the backbone with the trained part switched in
    config.py              the run's configuration; config_parsing.py: YAML and --section.option overrides;
                           option_names.py: old names, diffusers' names, "did you mean"; config_help.py: the
                           --help table; config_types.py: values to field types; run_options.py: the `train`
                           section
    checkpoint.py          atomic checkpoint folders; checkpoint_files.py: their safetensors + JSON contents
    run_folder.py          one owner per run folder (run_lock.py), --resume and --overwrite
    guard.py               non-finite steps skipped or the run stopped
    speed.py               gradient checkpointing, channels_last, compile, attention precision
    lr_schedules.py        train.lr_scheduler: cosine with restarts (the public code's), cosine, linear, constant
    validation_images.py   images drawn every N steps; trackers.py: TensorBoard / wandb
    export.py              token files from a run or a checkpoint (agsm export); model_card.py: README.md for the Hub
"""


def __getattr__(name):
    # `from agsm.training import train, load_config` without importing torch and accelerate at package import.
    if name == "train":
        from .loop import train

        return train
    if name in ("load_config", "Config"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'agsm.training' has no attribute {name!r}")
