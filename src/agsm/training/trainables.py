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
"""
from __future__ import annotations

from pathlib import Path

import torch

from .denoisers import TokenDenoiser, update_ema


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
