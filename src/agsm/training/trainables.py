"""What a run trains, as a small strategy the trainer (training/loop.py) drives without knowing which it is.

- TokenTrainable: soft tokens on a frozen backbone (methods agsm, softrepa, dsm), with their EMA.
- backbone_trainable.BackboneTrainable: a LoRA on the denoiser, or the whole denoiser, against a frozen
  reference (methods dpo, inpo, spo).

Both expose the same small surface:
    parameters(), named_parameters()   what the optimiser moves (and the step guard checks)
    denoiser                           what the method's step calls (objectives/)
    trained, averaged, checkpoint_names   what a checkpoint stores: `trained` and its moving average (or None),
                                          each with state_dict / load_state_dict, under these key prefixes
    switch                             an object with `enabled`, off for the validation images of the base model
    after_step(), norms()              the EMA update; numbers for the log
    export(out, config, step, num_images) -> Path   the run's result, written when training ends
    remove()                           take the trained part out of the backbone again

make_trainable(config, backbone, accelerator) picks one by the method's spec (objectives/registry.py).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..objectives import get_method
from ..tokens import SoftTokens, install_tokens, placement_for
from .config import Config
from .denoisers import TokenDenoiser, update_ema
from .export import token_metadata


class TokenTrainable:
    """Soft tokens (and their EMA) injected into a frozen backbone."""

    kind = "tokens"
    checkpoint_names = ("tokens", "ema")

    def __init__(self, backbone, tokens, ema_tokens, injector, token_meta: dict, ema_decay: float):
        self.trained, self.averaged, self.switch = tokens, ema_tokens, injector
        self.denoiser = TokenDenoiser(backbone, injector, tokens, ema_tokens)
        self.token_meta, self.ema_decay = token_meta, ema_decay

    def parameters(self):
        return self.trained.parameters()

    def named_parameters(self):
        return self.trained.named_parameters()

    def after_step(self) -> None:
        update_ema(self.averaged, self.trained, self.ema_decay)

    def norms(self) -> dict[str, float]:
        """Mean L2 norm of a token per set (psi+, psi-) and of the EMA's psi+: how far tokens reach into attention."""
        tokens, ema = self.trained, self.averaged
        with torch.no_grad():
            norms = {f"token_norm_{'pos' if s == 0 else 'neg'}": float(tokens.sets[s].norm(dim=-1).mean())
                     for s in range(tokens.num_sets)}
            norms["token_norm_ema_pos"] = float(ema.sets[0].norm(dim=-1).mean())
            norms["time_table_norm"] = float(tokens.time_table.norm(dim=-1).mean())
        return norms

    def export(self, out: Path, config, step: int, num_images: int) -> Path:
        from .export import export_run
        from .model_card import write_model_card

        path = export_run(out, self.trained, self.averaged, self.token_meta, step, main=config.train.export_tokens)
        write_model_card(out, config, num_images=num_images)  # README.md for the Hub, beside the files
        return path

    def remove(self) -> None:
        self.switch.remove()


def make_tokens(config: Config, backbone) -> SoftTokens:
    """Token sets for the backbone: N tokens (UNet), or N per block for the first `blocks` blocks (MM-DiT)."""
    count = config.tokens.num_tokens * (config.tokens.blocks if backbone.family == "mmdit" else 1)
    init = None
    if config.tokens.init == "empty_prompt":
        embeds = backbone.encode_text([""]).embeds
        if backbone.family == "mmdit":  # MM-DiT tokens live after the context embedder
            embeds = backbone.context_width_tokens(embeds)
        init = embeds[0, 0].float().cpu()  # the BOS position of the empty prompt
    per_block = config.tokens.time_table == "per_block"
    if per_block and backbone.family != "mmdit":
        raise ValueError("tokens.time_table per_block applies to MM-DiT (SD3) models, whose blocks each get their own "
                         "tokens; UNet tokens are one set, so use 'shared'")
    num_sets = get_method(config.method.name).token_sets(config.method)  # AGSM: psi+ and psi-, unless ablated
    return SoftTokens(count, backbone.token_width, num_sets=num_sets,
                      num_buckets=config.tokens.num_buckets, num_train_timesteps=backbone.num_train_timesteps,
                      init_std=config.tokens.init_std, init_tokens=init,
                      time_groups=config.tokens.blocks if per_block else 1, time_init_std=config.tokens.time_init_std)


def make_ema_tokens(config: Config, tokens: SoftTokens) -> SoftTokens:
    """The EMA tokens: a copy of the online tokens, or (method.ema_init independent, the public code) a fresh
    normal(0, init_std) draw, so that the targets' reference starts near the plain model."""
    if config.method.ema_init == "copy":
        ema = copy.deepcopy(tokens)
    else:
        ema = SoftTokens(tokens.total_tokens, tokens.width, num_sets=tokens.num_sets,
                         num_buckets=tokens.time_table.shape[0], num_train_timesteps=tokens.num_train_timesteps,
                         init_std=config.tokens.init_std,
                         time_groups=tokens.time_table.shape[1] if tokens.time_table.ndim == 3 else 1,
                         time_init_std=config.tokens.time_init_std)
    return ema.requires_grad_(False)


def make_trainable(config: Config, backbone, accelerator):
    """What this run trains (training/trainables.py), as the method's spec says: soft tokens (agsm, softrepa, dsm) or
    the backbone (dpo, inpo, spo)."""
    if get_method(config.method.name).trains == "backbone":
        from .backbone_trainable import BackboneTrainable

        return BackboneTrainable(config, backbone)
    tokens = make_tokens(config, backbone).to(accelerator.device)
    ema_tokens = make_ema_tokens(config, tokens).to(accelerator.device)
    placement = placement_for(backbone.family, config.tokens.stages, config.tokens.blocks)
    token_meta = token_metadata(backbone.describe(), placement, config.method.name, config.to_dict()["method"],
                                trained_on=backbone.trained_on)
    injector = install_tokens(backbone.denoiser, backbone.family, tokens, placement)
    return TokenTrainable(backbone, tokens, ema_tokens, injector, token_meta, config.method.ema_decay)
