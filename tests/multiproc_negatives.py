"""Record what each process of a training run sees and does, for tests/test_multiprocess_negatives.py.

Run under `accelerate launch` (any number of processes and machines): `python multiproc_negatives.py PREFIX
[overrides ...]` trains and then each process writes PREFIX-rank<r>.safetensors and .json: per step, the caption
pool its batch holds (embeddings, caption index, own-caption columns), its own images' caption texts, the t and
noise the AGSM step drew, the gradient the optimiser applied (after the all-reduce) and the parameters after the
update. The test imports `Recorder` to run the single-process reference in its own process, with `replay` set to
the multi-process files: that run then uses, step by step, the concatenation of the processes' t and noise.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class Recorder:
    """Spies on one training run; `install(setattr)` patches, `save` writes what was seen."""

    def __init__(self, replay: list[dict[str, torch.Tensor]] | None = None):
        self.tensors: dict[str, torch.Tensor] = {}
        self.captions: list[list[str]] = []  # per step, this process's own images' captions
        self.replay = replay
        self._batches = self._draws = self._updates = 0

    def install(self, patch) -> None:
        """Patch the training loop's batch builder, the AGSM step's noise draw and AdamW's step (patch(obj, name,
        value): setattr, or pytest's monkeypatch.setattr so the test undoes it)."""
        import agsm.objectives.agsm as agsm_objective
        import agsm.training.loop as loop

        build, draw, adamw_step = loop.build_step_batch, agsm_objective.draw_noise, torch.optim.AdamW.step
        recorder = self

        def spy_build(dataset, ids, *args, **kwargs):
            batch = build(dataset, ids, *args, **kwargs)
            recorder._record_batch(dataset, ids, batch)
            return batch

        def spy_draw(denoiser, x0, generator, share):
            t, eps = draw(denoiser, x0, generator, share)  # drawn in any case: the generator advances as always
            return recorder._noise(t, eps)

        def spy_step(optimizer, *args, **kwargs):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grads = [p.grad.detach().clone() for p in params]
            result = adamw_step(optimizer, *args, **kwargs)
            recorder._record_update(grads, params)
            return result

        patch(loop, "build_step_batch", spy_build)
        patch(agsm_objective, "draw_noise", spy_draw)
        patch(torch.optim.AdamW, "step", spy_step)

    def _record_batch(self, dataset, ids, batch) -> None:
        step = self._batches
        self._batches += 1
        for key, value in batch.captions.tensors().items():
            self.tensors[f"step{step}.pool.{key}"] = value.detach().cpu()
        self.tensors[f"step{step}.caption_index"] = batch.caption_index.cpu()
        self.tensors[f"step{step}.pos_index"] = batch.pos_index.cpu()
        self.tensors[f"step{step}.ids"] = ids.cpu()
        self.captions.append([dataset.captions[c] for i in ids.tolist() for c in dataset.caption_ids_of(i)])

    def _noise(self, t: torch.Tensor, eps: torch.Tensor):
        step = self._draws
        self._draws += 1
        if self.replay is not None:  # the processes' draws, in rank order: the global batch's t and noise
            t = torch.cat([r[f"step{step}.t"] for r in self.replay]).to(t.device, t.dtype)
            eps = torch.cat([r[f"step{step}.eps"] for r in self.replay]).to(eps.device, eps.dtype)
        self.tensors[f"step{step}.t"] = t.detach().cpu().contiguous()
        self.tensors[f"step{step}.eps"] = eps.detach().cpu().contiguous()
        return t, eps

    def _record_update(self, grads, params) -> None:
        step = self._updates
        self._updates += 1
        for i, (grad, param) in enumerate(zip(grads, params)):
            self.tensors[f"step{step}.grad{i}"] = grad.cpu()
            self.tensors[f"step{step}.param{i}"] = param.detach().cpu().clone()

    def save(self, prefix: str | Path, state) -> None:
        """Write PREFIX-rank<r>.safetensors and .json; `state` is accelerate's PartialState (ranks, machines)."""
        name = f"{prefix}-rank{state.process_index}"
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, f"{name}.safetensors")
        Path(f"{name}.json").write_text(json.dumps({
            "process_index": state.process_index, "local_process_index": state.local_process_index,
            "num_processes": state.num_processes, "captions": self.captions}))


def load_ranks(prefix: str | Path, num_processes: int) -> tuple[list[dict], list[dict]]:
    """The tensors and JSON that `save` wrote for every rank, in rank order."""
    tensors = [load_file(f"{prefix}-rank{r}.safetensors") for r in range(num_processes)]
    meta = [json.loads(Path(f"{prefix}-rank{r}.json").read_text()) for r in range(num_processes)]
    return tensors, meta


if __name__ == "__main__":
    from accelerate import PartialState

    from agsm.training.config import load_config
    from agsm.training.loop import train

    out_prefix, overrides = sys.argv[1], sys.argv[2:]
    recorder = Recorder()
    recorder.install(setattr)
    train(load_config(None, overrides))
    recorder.save(out_prefix, PartialState())
