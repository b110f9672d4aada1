"""The one training loop of the ShapesWorld base models; the architecture comes in as a `Recipe`.

Per step: the recipe draws step k's batch (from a generator seeded by (seed, stage, k), so a resumed run equals
an uninterrupted one) and computes the loss; the loop does AdamW with warmup + cosine learning rate, gradient-norm
clipping, EMA weights with a short memory early on, an atomic checkpoint every `checkpoint_every` steps (and at
the end), the mean loss every `log_every` steps (the loss curve), a progress bar and the wall time across resumes.
The loss stays on the device between log steps: no host sync inside the loop except at logging and checkpoints.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint
from ...utils.progress import progress as progress_bar  # a tqdm bar in a terminal, whole lines in a log

log = logging.getLogger(__name__)


class Recipe:
    """One training stage of one architecture, as the loop sees it; subclasses fill in the attributes and the
    first four methods."""

    name: str  # the checkpoint is WORK/NAME.pt; also the progress and log label
    steps: int
    lr: float  # the peak learning rate
    warmup: int = 0
    weight_decay: float = 0.01
    clip: float | None = 1.0  # gradient-norm bound; None: no clipping
    ema_decay: float | None = None  # None: no EMA copies, the online weights are the result
    device: str = "cpu"
    checkpoint_every: int = 1000
    log_every: int = 250

    def build(self) -> dict[str, torch.nn.Module]:
        """The online modules under their checkpoint names, freshly initialised (under the recipe's own seed) or
        loaded; the optimiser takes their parameters in this order. The recipe keeps them for `loss`."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The options that change the trained weights: a checkpoint made with others is refused."""
        raise NotImplementedError

    def batch(self, step: int):
        """Everything random about step `step`, drawn from the stage's generator for that step."""
        raise NotImplementedError

    def loss(self, batch) -> torch.Tensor:
        """The scalar training loss of one batch under the online modules."""
        raise NotImplementedError

    def context(self):
        """A context manager around the whole loop (entered after resuming); nothing by default."""
        return nullcontext()


@dataclass
class Trained:
    """What a stage leaves: its modules (EMA copies None without EMA), wall seconds in all, the loss curve."""

    online: dict[str, torch.nn.Module]
    ema: dict[str, torch.nn.Module] | None
    wall: float
    losses: list[list]

    @property
    def result(self) -> dict[str, torch.nn.Module]:
        """The weights to export: the EMA copies where there are any, else the online modules."""
        return self.ema if self.ema is not None else self.online


def cosine_lr(step: int, total: int, peak: float, warmup: int = 0, floor: float = 0.1) -> float:
    """Linear warmup to `peak` over `warmup` steps, then a cosine down to floor * peak at step `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay_at(step: int, decay: float) -> float:
    """Short memory early, while the weights move fast: min(decay, (1 + step) / (10 + step))."""
    return min(decay, (1 + step) / (10 + step))


def train(recipe: Recipe, work: Path) -> Trained:
    """Train (or resume) `recipe` to recipe.steps, checkpointing in `work`; see the module docstring."""
    online = {k: m.to(recipe.device) for k, m in recipe.build().items()}
    ema = None
    if recipe.ema_decay is not None:
        ema = {k: copy.deepcopy(m).eval().requires_grad_(False) for k, m in online.items()}
    params = [p for m in online.values() for p in m.parameters()]
    ema_params = [p for m in (ema or {}).values() for p in m.parameters()]
    cuda = recipe.device.startswith("cuda")
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=cuda or None)
    path = Path(work) / f"{recipe.name}.pt"
    resumed = checkpoint.resume(path, recipe.settings(), online, ema, opt, recipe.device)
    step, wall, losses = resumed["step"], resumed["wall"], resumed["losses"]
    for module in online.values():
        module.train()  # from_pretrained hands modules over in eval mode
    # The losses since the last log step travel in the checkpoint, so a resumed curve equals an uninterrupted one.
    loss_sum, since = torch.tensor(resumed["window"][0], device=recipe.device), resumed["window"][1]
    t0, mark = time.time(), (time.time(), step)
    bar = progress_bar(total=recipe.steps, initial=step, desc=recipe.name, mininterval=5.0)
    with recipe.context():
        while step < recipe.steps:
            loss = recipe.loss(recipe.batch(step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip is not None:
                torch.nn.utils.clip_grad_norm_(params, recipe.clip)
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, recipe.steps, recipe.lr, recipe.warmup)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, params, 1 - ema_decay_at(step, recipe.ema_decay))
            loss_sum += loss.detach()
            step += 1
            bar.update(1)
            if step % recipe.log_every == 0 or step == recipe.steps:
                mean_loss = loss_sum.item() / (step - since)  # the only host sync between checkpoints
                losses.append([step, round(mean_loss, 5)])
                loss_sum.zero_()
                since = step
                bar.set_postfix(loss=f"{mean_loss:.4f}")
            if step % recipe.checkpoint_every == 0 or step == recipe.steps:
                now, elapsed = time.time(), wall + time.time() - t0
                rate = (now - mark[0]) / (step - mark[1])  # since the last checkpoint (the first includes compiling)
                window = [loss_sum.item(), since]
                checkpoint.save_atomic(checkpoint.state(online, ema, opt, step, elapsed, losses, window,
                                                        recipe.settings()), path)
                mark = (time.time(), step)
                log.info("%s step %d/%d loss %s, %.4f s/step, %.1f min in all", recipe.name, step, recipe.steps,
                         losses[-1][1] if losses else "-", rate, elapsed / 60)
    bar.close()
    if cuda:
        torch.cuda.synchronize()
    return Trained(online, ema, wall + time.time() - t0, losses)
