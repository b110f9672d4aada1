"""`make demo`, interim version: the whole job end to end on a tiny SD1.5-architecture model, on the CPU.

It builds a tiny pipeline from a config (random weights), renders a small ShapesWorld training set,
trains AGSM tokens, and samples the same prompts and seeds with and without them. The model is
untrained, so the pictures are noise: this shows the machinery runs, not what AGSM does (that is the
ShapesWorld demo's job, once its pretrained base model ships).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from .config import load_config
from .sample import sample
from .shapes.dataset import write_training_set
from .tiny import tiny_sd15_pipeline
from .train import train

PROMPTS = ["a red circle", "two blue squares", "a green triangle", "a yellow square and a purple circle"]


def main(out: str = "runs/demo") -> None:
    start = time.perf_counter()
    out_dir = Path(out)
    model = out_dir / "model"
    if not (model / "model_index.json").is_file():
        tiny_sd15_pipeline().save_pretrained(model)
    data = write_training_set(out_dir / "data", n=64, seed=0)
    config = load_config(None, {"model": {"path": str(model)}, "data": {"path": str(data)},
                                "train": {"output_dir": str(out_dir / "agsm"), "steps": 60, "checkpoint_every": 30,
                                          "lr": 0.01},
                                "method": {"ema_decay": 0.99}})
    tokens = train(config)
    grids = []
    for name, token_file in (("base", None), ("agsm", tokens)):
        paths = sample(model, PROMPTS, out_dir / "samples" / name, seed=0, tokens=token_file, steps=20)
        grids.append(np.concatenate([np.asarray(Image.open(p)) for p in paths], axis=1))
    Image.fromarray(np.concatenate(grids, axis=0)).resize((128 * len(PROMPTS), 256), Image.NEAREST).save(
        out_dir / "base_vs_agsm.png")
    print(f"\ntrained tokens: {tokens}\nsamples (top: base, bottom: AGSM): {out_dir / 'base_vs_agsm.png'}\n"
          f"finished in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
