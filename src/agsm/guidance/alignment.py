"""Alignment-guided sampling on a stock diffusers pipeline: the AGSM target applied by the frozen model at every step.

    from agsm.guidance import align_guidance, make_negatives
    negatives = make_negatives("hard", prompts)             # prompt -> K-1 one-attribute perturbations
    with align_guidance(pipe, negatives, gamma=1.0, temperature=0.1, where="conditional"):
        images = pipe(prompts, ...).images

Works on StableDiffusionPipeline, StableDiffusionXLPipeline and StableDiffusion3Pipeline, with or without soft tokens
loaded, through two temporary wrappers and no copied sampler:
- `pipe.encode_prompt` (an instance attribute shadowing the method): it records the call's prompts and encodes their
  negatives with the pipeline's own encoder and the same options (clip skip, LoRA scale, SD3's sequence length),
  giving SDXL and SD3 their pooled embeddings too;
- a forward hook on the denoiser (UNet or MM-DiT transformer): after each call it runs the negatives on the
  conditional rows' latents, timestep and extra inputs (SDXL's time ids), and changes the conditional rows:
  where="conditional": eps(c) -> eps(c) + gamma D, before classifier-free guidance (the guidance scale s multiplies
      the shift, where AGSM's tokens act);
  where="after-guidance": eps(c) -> eps(c) + (gamma / s) D, so the guided prediction u + s (c - u) gains exactly
      gamma D (without guidance, s = 1).
The rule itself (D, the weights, the plug-in approximation) is agsm.guidance.rule. Cost: K-1 extra denoiser rows per
conditional row per step; gamma 0 installs nothing, so it is the stock pipeline bit for bit.
With soft tokens loaded, the negatives are predicted as conditional-branch calls (psi+), whatever the tokens'
unconditional-branch option says, since they stand in for the conditional prediction of another caption.
Not accounted for: SDXL's guidance_rescale (after-guidance then adds gamma D before the rescale) and SD3's skip-layer
guidance (its extra conditional call would be shifted as well).
"""
from __future__ import annotations

import hashlib
import inspect
import json
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate

import torch

from ..pipelines import active_injector, denoiser_of
from .negatives import NegativeSpec, negatives_for_call
from .rule import REWARD_SPACES, alignment_direction, reward_scale_at

WHERE = ("conditional", "after-guidance")
_PROMPT_ARGS = ("prompt", "prompt_2", "prompt_3")
_CLEARED_ARGS = ("negative_prompt", "negative_prompt_2", "negative_prompt_3", "prompt_embeds",
                 "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
_SAMPLE_ARGS = ("sample", "hidden_states")  # UNet, MM-DiT


@dataclass
class _CallNegatives:
    """The negatives of one pipeline call: their embeddings and, per conditional row, which of them it takes."""

    rows: int                     # conditional rows (prompts x images per prompt)
    embeds: torch.Tensor | None   # [M, L, D] for the M negative texts
    pooled: torch.Tensor | None   # [M, P] (SDXL, SD3) or None
    per_row: list[list[int]]      # conditional row -> indices into the M texts


class AlignmentGuidance:
    """The rule's settings and negatives; `applied(pipe)` is the context under which a pipeline samples with it."""

    def __init__(self, negatives: NegativeSpec, gamma: float = 1.0, temperature: float = 0.1,
                 where: str = "conditional", reward_space: str = "target", description: str | None = None):
        if not gamma >= 0:
            raise ValueError(f"alignment guidance gamma {gamma} must be >= 0 (0: the stock pipeline)")
        if not temperature > 0:
            raise ValueError(f"alignment guidance temperature {temperature} must be > 0")
        if where not in WHERE:
            raise ValueError(f"alignment guidance where {where!r} is not one of {', '.join(WHERE)}")
        if reward_space not in REWARD_SPACES:
            raise ValueError(f"alignment guidance reward_space {reward_space!r} is not one of "
                             f"{', '.join(REWARD_SPACES)}")
        self.negatives, self.gamma, self.temperature = negatives, float(gamma), float(temperature)
        self.where, self.reward_space, self.description = where, reward_space, description

    def identity(self) -> dict:
        """What makes images drawn under this guidance what they are (an evaluation's resume identity)."""
        record = {"rule": "alignment guidance", "gamma": self.gamma, "temperature": self.temperature,
                  "where": self.where, "reward_space": self.reward_space, "negatives": self.description}
        if isinstance(self.negatives, dict):
            text = json.dumps(self.negatives, sort_keys=True)
            record["negatives_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        return record

    @contextmanager
    def applied(self, pipe):
        if self.gamma == 0:  # nothing installed: the stock pipeline, bit for bit
            yield pipe
            return
        hook = _Hook(self, pipe)
        try:
            yield pipe
        finally:
            hook.remove()


def align_guidance(pipe, negatives: NegativeSpec, gamma: float = 1.0, temperature: float = 0.1,
                   where: str = "conditional", reward_space: str = "target"):
    """Context manager: `pipe` samples with alignment guidance inside the block (module docstring). `negatives`:
    one list of texts per prompt of each call, a prompt -> texts table (agsm.guidance.make_negatives), or a function
    of the call's prompts returning one list per prompt."""
    return AlignmentGuidance(negatives, gamma, temperature, where, reward_space).applied(pipe)


class _Hook:
    """The two wrappers on one pipeline, and what they pass each other within a call."""

    def __init__(self, guidance: AlignmentGuidance, pipe):
        self.guidance, self.pipe = guidance, pipe
        self.denoiser = denoiser_of(pipe)
        if getattr(self.denoiser, "_agsm_alignment_hook", None) is not None:
            raise ValueError("alignment guidance is already applied to this pipeline's denoiser; leave the other "
                             "align_guidance block first")
        self.encode = pipe.encode_prompt
        self.encode_signature = inspect.signature(self.encode)
        self.forward_signature = inspect.signature(type(self.denoiser).forward)
        self.call: _CallNegatives | None = None
        self.busy = False
        self.shadowed = vars(pipe).get("encode_prompt")
        pipe.encode_prompt = self._encode_prompt
        self.handle = self.denoiser.register_forward_hook(self._after_denoiser, with_kwargs=True)
        self.denoiser._agsm_alignment_hook = self

    def remove(self) -> None:
        self.handle.remove()
        vars(self.denoiser).pop("_agsm_alignment_hook", None)
        if self.shadowed is not None:
            self.pipe.encode_prompt = self.shadowed
        else:
            vars(self.pipe).pop("encode_prompt", None)

    # ---- the prompts of a call, and their negatives' embeddings ----
    def _encode_prompt(self, *args, **kwargs):
        out = self.encode(*args, **kwargs)
        arguments = dict(self.encode_signature.bind(*args, **kwargs).arguments)
        prompt = arguments.get("prompt")
        if prompt is None:  # embeddings given directly: no text to find negatives for
            self.call = None
            return out
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        per_prompt = int(arguments.get("num_images_per_prompt") or 1)
        negatives = negatives_for_call(self.guidance.negatives, prompts)
        texts = list(dict.fromkeys(n for group in negatives for n in group))
        index = {t: i for i, t in enumerate(texts)}
        per_row = [[index[n] for n in group] for group in negatives for _ in range(per_prompt)]
        embeds = pooled = None
        if texts:
            for name in _PROMPT_ARGS:
                if name in self.encode_signature.parameters:
                    arguments[name] = texts
            for name in _CLEARED_ARGS:
                if name in self.encode_signature.parameters:
                    arguments[name] = None
            arguments.update(num_images_per_prompt=1, do_classifier_free_guidance=False)
            encoded = self.encode(**arguments)
            embeds, pooled = encoded[0], (encoded[2] if len(encoded) == 4 else None)
        self.call = _CallNegatives(len(per_row), embeds, pooled, per_row)
        return out

    # ---- each denoiser call ----
    def _after_denoiser(self, module, args, kwargs, output):
        if self.busy:  # our own call for the negatives
            return None
        call = self.call
        if call is None:
            raise ValueError("alignment guidance needs the prompts as text (pipe(prompt=[...])) to find their "
                             "negatives; this call passed prompt_embeds")
        arguments = dict(self.forward_signature.bind(module, *args, **kwargs).arguments)
        arguments.pop(next(iter(self.forward_signature.parameters)))  # self
        sample_name = next(n for n in _SAMPLE_ARGS if n in arguments)
        batch = arguments[sample_name].shape[0]
        if batch == 2 * call.rows:
            first, scale = call.rows, float(self.pipe.guidance_scale)  # [unconditional, conditional] halves
        elif batch == call.rows:
            first, scale = 0, 1.0
        else:
            raise ValueError(f"alignment guidance: a denoiser call of {batch} rows for {call.rows} conditional rows; "
                             "it supports the stock pipelines' batches (conditional, or unconditional + conditional)")
        prediction = output[0] if isinstance(output, tuple) else output.sample
        guided_rows = [r for r in range(call.rows) if call.per_row[r]]
        if not guided_rows:
            return None
        negative_rows = [first + r for r in guided_rows for _ in call.per_row[r]]
        texts = [i for r in guided_rows for i in call.per_row[r]]
        others = self._predict_negatives(module, arguments, batch, negative_rows, texts, call)
        factor = self.guidance.gamma / (scale if self.guidance.where == "after-guidance" else 1.0)
        reward_scale = reward_scale_at(self.pipe, arguments.get("timestep"), 1, self.guidance.reward_space,
                                       prediction.device)
        shifted = prediction.clone()
        # where each row's negatives start in `others` (rows in order, each with its own count)
        starts = dict(zip(guided_rows, accumulate((len(call.per_row[r]) for r in guided_rows), initial=0)))
        for count in sorted({len(call.per_row[r]) for r in guided_rows}):  # hard negatives: counts may differ
            group = [r for r in guided_rows if len(call.per_row[r]) == count]
            own = prediction[[first + r for r in group]]
            picks = torch.tensor([starts[r] + j for r in group for j in range(count)], device=others.device)
            mine = others[picks].reshape(len(group), count, *others.shape[1:])
            scales = reward_scale.expand(len(group)) if reward_scale is not None else None
            direction, _ = alignment_direction(own, mine, self.guidance.temperature, scales)
            shifted[[first + r for r in group]] = (own.float() + factor * direction).to(prediction.dtype)
        if isinstance(output, tuple):
            return (shifted, *output[1:])
        output.sample = shifted
        return output

    def _predict_negatives(self, module, arguments: dict, batch: int, rows: list[int], texts: list[int],
                           call: _CallNegatives) -> torch.Tensor:
        """The denoiser on the conditional rows' inputs with the negatives' text conditioning."""
        picked = {name: _rows_of(value, batch, rows) for name, value in arguments.items()}
        picked["encoder_hidden_states"] = call.embeds[texts].to(arguments["encoder_hidden_states"].dtype)
        if "pooled_projections" in arguments and call.pooled is not None:
            picked["pooled_projections"] = call.pooled[texts].to(arguments["pooled_projections"].dtype)
        added = picked.get("added_cond_kwargs")
        if added and "text_embeds" in added and call.pooled is not None:
            picked["added_cond_kwargs"] = {**added, "text_embeds": call.pooled[texts].to(added["text_embeds"].dtype)}
        picked["return_dict"] = False
        injector = active_injector(self.pipe)
        saved = (injector.set_index_fn, injector.hidden_fn) if injector is not None else None
        self.busy = True
        try:
            if injector is not None:  # the negatives are conditional predictions: psi+ for every row
                injector.set_index_fn = injector.hidden_fn = None
            return module(**picked)[0]
        finally:
            self.busy = False
            if injector is not None:
                injector.set_index_fn, injector.hidden_fn = saved


def _rows_of(value, batch: int, rows: list[int]):
    """`value` with its per-row entries (a leading dimension of `batch`) taken at `rows`, through dicts and tuples."""
    if isinstance(value, torch.Tensor):
        return value[rows] if value.ndim and value.shape[0] == batch else value
    if isinstance(value, dict):
        return {k: _rows_of(v, batch, rows) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_rows_of(v, batch, rows) for v in value)
    return value
