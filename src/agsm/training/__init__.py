"""The training room: `train(config)` and everything a run needs around its loop.

    loop.py              train(): the one loop for every method (accelerate, AdamW, cosine restarts)
    training/trainables.py        what a run trains: soft tokens, a LoRA or the whole denoiser (training/backbone_tuning.py)
    denoisers.py         what a method's step calls: the backbone with the trained part switched in
    config.py            the run's configuration (config_types.py: YAML and command-line values to field types)
    checkpoint.py        atomic checkpoint folders; checkpoint_files.py: their safetensors + JSON contents
    training/run_folder.py        one owner per run folder (training/run_lock.py), --resume and --overwrite
    guard.py             non-finite steps skipped or stopped
    speed.py             gradient checkpointing, channels_last, compile, attention precision
    validation_images.py images drawn every N steps; training/trackers.py: TensorBoard / wandb
    training/export.py            token files from a run or a checkpoint (agsm export); training/model_card.py: README.md for the Hub
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
