"""Validation images while training: see what the tokens do to a few fixed prompts as the run goes.

With `train.validation_prompts` set, the trainer draws `train.num_validation_images` images per prompt (default 1)
every `train.validation_every` steps and at the last step with the current online tokens, and once at step 0
without any tokens (the base model), for comparison. Image i of every round (prompt i // num_validation_images)
uses seed `train.validation_seed + i`, so rounds differ only by the tokens, and one image per prompt is what it
was before the option existed. Files: <output_dir>/validation/step-N/<i>.png (written atomically) and run.json (prompts, seeds,
sampler); the images also go to the run's trackers with their prompts as captions (training/trackers.py).

The pipeline is the backbone's own stock pipeline class made from its loaded modules (as diffusers `from_pipe`
does: no second copy of the weights) with a fresh evaluation scheduler, DDIM for UNet models as `agsm sample`
uses, and the sampler `agsm sample` would choose (the model's sampler.json, else its architecture's).
The training injector already sits on the denoiser and gives the online psi+ to both guidance branches, which
is `agsm sample --tokens`'s default; for the base round it is switched off, which makes the denoiser stock.
Drawing runs under no_grad, with its own generators and the global RNG state restored afterwards, and puts the
injector's switch back, so training goes on exactly as it would have without validation.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from ..utils.atomic_files import write_bytes, write_json
from ..backbones.sampler_defaults import resolve_sampler_settings
from .trackers import log_images

FOLDER = "validation"
PROMPTS_PER_CALL = 4  # images drawn per pipeline call; each has its own generator, so this never changes them


class Validator:
    """Draws and saves the validation images of one training run (main process only)."""

    def __init__(self, backbone, injector, prompts: list[str], out_dir: str | Path, every: int, seed: int = 0,
                 steps: int | None = None, guidance: float | None = None, accelerator=None,
                 images_per_prompt: int = 1):
        if not prompts:
            raise ValueError("validation needs at least one prompt (train.validation_prompts)")
        if images_per_prompt < 1:
            raise ValueError(f"train.num_validation_images {images_per_prompt} must be >= 1")
        # One entry per image: prompt i's images sit together, each with its own seed (seed + its index).
        self.backbone, self.injector = backbone, injector
        self.prompts = [prompt for prompt in prompts for _ in range(images_per_prompt)]
        self.folder, self.every, self.seed, self.accelerator = Path(out_dir) / FOLDER, every, seed, accelerator
        self.pipe = _pipeline_from(backbone)
        # The model folder's recommended sampler (sampler.json), else its architecture's, unless given.
        self.sampler = resolve_sampler_settings(backbone.pipe, steps, guidance)
        # A T5-free SD3 backbone keeps its zero-token collapse installed (t5_free.py): one zero token is enough.
        self.extra = {"max_sequence_length": 1} if getattr(backbone, "collapse_zero_tokens", False) else {}

    def due(self, step: int, last_step: int) -> bool:
        return step % self.every == 0 or step == last_step

    def run(self, step: int, with_tokens: bool = True) -> list[Path]:
        """Draw, save and log the round's images (num_validation_images per prompt) at `step`; returns their files."""
        images = self.draw(with_tokens)
        folder = self.folder / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            paths.append(write_bytes(folder / f"{i}.png", buffer.getvalue()))
        write_json(folder / "run.json", {
            "step": step, "tokens": "online psi+" if with_tokens else "none (base model)",
            "steps": self.sampler.steps, "guidance": self.sampler.guidance, "size": self.backbone.resolution,
            "scheduler": type(self.pipe.scheduler).__name__,
            "images": [{"file": p.name, "prompt": q, "seed": self.seed + i}
                       for i, (p, q) in enumerate(zip(paths, self.prompts))]})
        if self.accelerator is not None:
            log_images(self.accelerator, step, images, self.prompts, note="" if with_tokens else " (base, no tokens)")
        return paths

    def draw(self, with_tokens: bool = True) -> list:
        """One PIL image per entry of self.prompts, with the injector's current (online) tokens or with none."""
        device = self.backbone.device
        devices = [device.index or 0] if device.type == "cuda" else []
        enabled = self.injector.enabled
        images = []
        try:
            self.injector.enabled = with_tokens and enabled
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                for start in range(0, len(self.prompts), PROMPTS_PER_CALL):
                    chunk = self.prompts[start:start + PROMPTS_PER_CALL]
                    generators = [torch.Generator(device="cpu").manual_seed(self.seed + start + j)
                                  for j in range(len(chunk))]
                    size = self.backbone.resolution
                    images += self.pipe(chunk, num_inference_steps=self.sampler.steps,
                                        guidance_scale=self.sampler.guidance, height=size, width=size,
                                        generator=generators, **self.extra).images
        finally:
            self.injector.enabled = enabled
        return images


def _pipeline_from(backbone):
    """The backbone's stock pipeline class over its own modules, with a scheduler of its own for sampling.

    Built like diffusers' `from_pipe` (the same modules and config values) but without its final dtype cast, which
    would reach the shared training modules."""
    import inspect

    from diffusers import DDIMScheduler

    pipe = backbone.pipe
    # The paper samples UNet models with DDIM; a fresh scheduler keeps sampling state away from training's.
    scheduler_class = DDIMScheduler if hasattr(pipe.scheduler, "alphas_cumprod") else type(pipe.scheduler)
    parameters = inspect.signature(type(pipe).__init__).parameters
    arguments = {name: module for name, module in pipe.components.items() if name in parameters}
    arguments.update({name: pipe.config[name] for name in parameters
                      if name not in arguments and name != "self" and name in pipe.config})
    arguments["scheduler"] = scheduler_class.from_config(pipe.scheduler.config)
    sampling = type(pipe)(**arguments)
    sampling.set_progress_bar_config(disable=True)
    return sampling


def make_validator(config, backbone, injector, out: Path, accelerator) -> Validator | None:
    """The run's Validator, or None when validation is off or this is not the main process."""
    tc = config.train
    if not tc.validation_prompts or not accelerator.is_main_process:
        return None
    return Validator(backbone, injector, tc.validation_prompts, out, tc.validation_every, tc.validation_seed,
                     tc.validation_steps, tc.validation_guidance, accelerator, tc.num_validation_images)
