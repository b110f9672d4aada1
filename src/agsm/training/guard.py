"""Finite or stop: a training step whose loss or gradients are not finite never reaches the tokens.

A NaN in one step (a learning rate far too high, a damaged latent) spreads through AdamW into every token
within a step or two, and the run would go on to export NaN tokens that draw black images. So each step is
checked after the backward pass: a bad step is skipped (no optimiser step, no EMA update) while fewer than
train.max_bad_steps have been skipped, and otherwise training stops with an error naming the step, the batch's
images and captions, and the last good checkpoint to resume from.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import AgsmError

log = logging.getLogger("agsm.train")


class NonFiniteTraining(AgsmError):
    """Training produced a NaN or infinity; the message says where and how to go on."""


def non_finite_parts(loss: torch.Tensor, tokens: torch.nn.Module, check_grads: bool = True) -> list[str]:
    """What is not finite: 'loss (nan)', 'gradient of sets', ...; empty when all is finite."""
    bad = [] if bool(torch.isfinite(loss).all()) else [f"loss ({loss.item()})"]
    for name, p in tokens.named_parameters():
        if check_grads and p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            bad.append(f"gradient of {name}")
    return bad


def non_finite_tokens(tokens: torch.nn.Module) -> list[str]:
    return [name for name, p in tokens.named_parameters() if not bool(torch.isfinite(p).all())]


def all_finite(tensors) -> torch.Tensor:
    """A 0-d bool tensor on the tensors' device: every element of every tensor is finite. Built without reading
    anything back, so each check costs one host-device sync (issue 17), the names only when something is bad."""
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


class StepGuard:
    """Decides per step: go on, skip (counted in `state.skipped`), or stop with NonFiniteTraining."""

    def __init__(self, max_bad_steps: int, lr: float, last_checkpoint):
        self.max_bad_steps, self.lr = max_bad_steps, lr
        self.last_checkpoint = last_checkpoint  # a callable returning the newest finished checkpoint or None

    def should_skip(self, accelerator, state, loss, tokens, batch_files) -> bool:
        """True when this step must be skipped; raises when the skip budget is spent. `batch_files()` lists the
        batch's (image file, captions), asked only for the error message.

        With a loss scaler (fp16) overflowing gradients are its business (it skips the step itself), so only
        the loss is checked. The verdict is summed over processes, so every process decides alike.
        """
        check_grads = accelerator.scaler is None
        finite = all_finite([loss, *(p.grad for _, p in tokens.named_parameters()
                                     if check_grads and p.grad is not None)])
        flag = accelerator.reduce((~finite).float().reshape(1), reduction="sum")  # bad processes
        if float(flag.sum()) == 0:  # the step's one read of a device value
            return False
        bad = non_finite_parts(loss, tokens, check_grads=check_grads)
        where = ", ".join(bad) or "another process's loss or gradients"
        if state.skipped < self.max_bad_steps:
            state.skipped += 1
            log.warning("step %d: non-finite %s; skipped (%d of train.max_bad_steps %d)", state.step + 1, where,
                        state.skipped, self.max_bad_steps)
            return True
        raise NonFiniteTraining(self._message(f"non-finite {where}", state, batch_files()))

    def check_tokens(self, state, tokens) -> None:
        """After the update: tokens that became non-finite (finite but huge gradients) stop the run too."""
        if bool(all_finite([p for _, p in tokens.named_parameters()])):
            return
        bad = non_finite_tokens(tokens)
        if bad:
            raise NonFiniteTraining(self._message(f"the optimiser step made {', '.join(bad)} non-finite", state, []))

    def _message(self, what: str, state, batch_files) -> str:
        last = self.last_checkpoint()
        shown = "; ".join(f"{Path(f).name}: {_short(captions)}" for f, captions in batch_files[:8])
        more = f" (+{len(batch_files) - 8} more)" if len(batch_files) > 8 else ""
        batch = f" Batch images and captions: {shown}{more}." if shown else ""
        resume = f"then --resume from the last good checkpoint, {last}" if last is not None else \
            "then run again (no checkpoint was written yet)"
        return (f"training stopped at step {state.step + 1}: {what} (train.lr {self.lr}, {state.skipped} step(s) "
                f"skipped before).{batch} Nothing was exported. Usual causes: a learning rate far too high (start "
                f"again with a lower train.lr and --overwrite) or damaged data (fix it, {resume}); "
                "train.max_bad_steps N skips up to N bad steps.")


def _short(captions: list[str], limit: int = 80) -> str:
    return " | ".join(c if len(c) <= limit else c[:limit] + "..." for c in captions)
