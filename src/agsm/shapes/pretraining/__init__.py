"""Pretraining of the tiny ShapesWorld base models: one trainer, one recipe per architecture.

    python -m agsm.shapes.pretrain [--arch sd15|sd3] --out DIR --work DIR ...   (cli.py)
    from agsm.shapes.pretraining.sd15 import pretrain     # or .sd3

Modules: loop (the training loop and the Recipe it runs), checkpoint (atomic checkpoints, resuming, the settings
check), config (each architecture's options), common (per-step random streams, pixels, tokens), sd15 + sd15_vae
(the SD1.5 recipe: VAE, latent cache, UNet + text encoder, export), sd3 + sd3_data (the SD3 recipe: data, flow
matching, export), cli (the one command).
"""
