"""What a method's step calls: the backbone with the trained part switched in.

TokenDenoiser: a frozen backbone with online or EMA soft tokens (agsm, softrepa, dsm). PreferenceDenoiser: the trained
backbone and its frozen reference (dpo, inpo, spo). Both pass noising and targets straight to the backbone
(BackboneDiffusion).
"""
from __future__ import annotations

import torch

from ..backbones.base import TextCond
from ..objectives.inpo import inversion_schedule
from ..objectives.spo import ddim_sampling_schedule
from ..preference.scorers import load_scorer


class BackboneDiffusion:
    """What every objective's model layer passes straight to the backbone: noising, the target, timesteps."""

    backbone = None

    def add_noise(self, x0, eps, t):
        return self.backbone.add_noise(x0, eps, t)

    def target(self, x0, eps, t):
        return self.backbone.target(x0, eps, t)

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.backbone.sample_timesteps(n, generator)


class TokenDenoiser(BackboneDiffusion):
    """Predicts per pair with the online tokens (or the EMA tokens, `ema=True`), token set chosen per pair."""

    def __init__(self, backbone, injector, tokens, ema_tokens=None):
        self.backbone, self.injector, self.tokens, self.ema_tokens = backbone, injector, tokens, ema_tokens
        self.is_flow = backbone.family == "mmdit"
        self.max_timestep = float(backbone.num_train_timesteps)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond, set_index: torch.Tensor,
                 ema: bool = False) -> torch.Tensor:
        tokens = self.ema_tokens if ema else self.tokens
        if tokens is None:
            raise RuntimeError("EMA predictions were asked for but this denoiser has no EMA tokens")
        with self.injector.use(tokens, set_index):
            return self.backbone.predict(x_t, t, cond)


@torch.no_grad()
def update_ema(ema_tokens: torch.nn.Module, tokens: torch.nn.Module, decay: float) -> None:
    """psi^ <- d psi^ + (1 - d) psi. Two lines of lerp keep the EMA a live module we can run forwards with."""
    for ema_p, p in zip(ema_tokens.parameters(), tokens.parameters()):
        ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - decay)


class PreferenceDenoiser(BackboneDiffusion):
    """What the preference steps call: the policy (the trained backbone) and reference predictions, the backbone's
    noising and targets, and for InPO and SPO (UNet backbones) what their own sampling needs: the model's DDIM grids
    (computed by objectives/inpo.py and spo.py, cached here), guidance, starting noise, decoding and the scorer.
    `trainable` is the BackboneTrainable (training/backbone_trainable.py) whose `reference()` switches to the start."""

    def __init__(self, backbone, trainable, scorer_name: str | None):
        self.backbone, self.trainable, self.scorer_name = backbone, trainable, scorer_name
        self.is_flow = backbone.family == "mmdit"
        self._scorer = self._uncond = None
        self._schedules: dict = {}

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        return self.backbone.predict(x_t, t, cond)

    def reference(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        with torch.no_grad(), self.trainable.reference():
            return self.backbone.predict(x_t, t, cond)

    def zero_loss(self) -> torch.Tensor:
        """0, connected to every trained weight (a step without pairs still has gradients: zeros)."""
        return sum((p * 0).sum() for p in self.trainable.parameters())

    # ---- DDIM pieces (UNet backbones) ----
    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.backbone.alphas_cumprod

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: TextCond, model: str = "policy") -> torch.Tensor:
        """The noise the policy (or reference) predicts at x_t, whatever the backbone's parameterisation."""
        out = self.reference(x_t, t, cond) if model == "reference" else self(x_t, t, cond)
        if self.backbone.param.name == "epsilon":
            return out
        a = self.alphas_cumprod.to(x_t.device)[t.long()].reshape(-1, *([1] * (x_t.ndim - 1))).to(out.dtype)
        return a.sqrt() * out + (1 - a).sqrt() * x_t.to(out.dtype)  # from v = sqrt(a) eps - sqrt(1 - a) x0

    def guided_eps(self, x: torch.Tensor, t: int, cond: TextCond, uncond: TextCond, guidance: float,
                   model: str = "policy") -> torch.Tensor:
        """Classifier-free guided noise eps_u + g (eps_c - eps_u) at the integer timestep t, in one batched call."""
        n = x.shape[0]
        if guidance == 1.0:
            return self.predict_eps(x, torch.full((n,), t, device=x.device), cond, model)
        eps = self.predict_eps(torch.cat([x, x]), torch.full((2 * n,), t, device=x.device),
                               TextCond.cat([uncond, cond]), model)
        eps_u, eps_c = eps.float().chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    def inversion_schedule(self, steps: int):
        key = ("inverse", steps)
        if key not in self._schedules:
            from diffusers import DDIMInverseScheduler

            self._schedules[key] = inversion_schedule(DDIMInverseScheduler.from_config(self.backbone.pipe.scheduler.config),
                                                      steps)
        return self._schedules[key]

    def ddim_schedule(self, steps: int) -> list[tuple[int, float, float]]:
        """SPO's sampling grid for this model's scheduler (objectives/spo.py, ddim_sampling_schedule), cached."""
        key = ("ddim", steps)
        if key not in self._schedules:
            from diffusers import DDIMScheduler

            self._schedules[key] = ddim_sampling_schedule(DDIMScheduler.from_config(self.backbone.pipe.scheduler.config),
                                                          steps)
        return self._schedules[key]

    def initial_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        pipe, model = self.backbone.pipe, self.backbone.denoiser
        side = self.backbone.resolution // pipe.vae_scale_factor
        x = torch.randn((n, model.config.in_channels, side, side), generator=generator)
        return x.to(self.backbone.device) * float(pipe.scheduler.init_noise_sigma)

    def uncond(self, n: int) -> TextCond:
        """The empty prompt's conditioning, n times (the unconditional branch of guidance)."""
        if self._uncond is None:
            self._uncond = self.backbone.encode_text([""])
        return TextCond.cat([self._uncond] * n)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list:
        """Latents -> PIL images through the pipeline's VAE and image processor."""
        pipe = self.backbone.pipe
        vae = pipe.vae
        shift = vae.config.get("shift_factor") or 0.0
        pixels = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor + shift).sample
        return pipe.image_processor.postprocess(pixels.float(), output_type="pil")

    def scorer(self, images: list, prompts: list[str], t: torch.Tensor) -> torch.Tensor:
        if self._scorer is None:
            if not self.scorer_name:
                raise ValueError(f"method.name {self.trainable.method.name} names no scorer (method.scorer), yet its "
                                 "step asked for scores")
            self._scorer = load_scorer(self.scorer_name)
        return self._scorer(images, prompts, t)
