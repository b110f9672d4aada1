"""Pretraining of the tiny ShapesWorld base models: one trainer, one recipe per architecture.

    python -m agsm.shapes.pretrain [--arch sd15|sd3|sdxl] --out DIR --work DIR ...   (cli.py)
    from agsm.shapes.pretraining.sd15 import pretrain     # or .sd3, .sdxl

Modules: loop (the training loop and the Recipe it runs), checkpoint (atomic checkpoints, resuming, the settings
check), config (each architecture's options), common (per-step random streams, pixels, tokens, what a run records),
sd15 + sd15_vae (the SD1.5 recipe: VAE, latent cache, UNet + text encoder, export), sd3_data (the training data on
the frozen sd15-tiny VAE), frozen_vae_run (the run on that data: prepare, train, export with train_info.json), sd3
and sdxl (their recipes and pipelines), cli (the one command).
"""
