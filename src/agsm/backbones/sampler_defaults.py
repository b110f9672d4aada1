"""The sampler settings (steps, guidance) a model is drawn with when the command line gives none.

One rule for every command (`agsm sample`, `agsm eval shapes|coco|geneval-export`, the demo):
1. the model's own recommendation, `sampler.json` in its folder: {"steps": 25, "guidance": 6.0, "why": "..."}.
   The shipped ShapesWorld models have one (their settings were chosen once, before their suite was scored), and
   `agsm shapes pretrain` writes one into each model it trains;
2. else the architecture's evaluation sampler, docs/method.md's defaults table: SD1.5 and SDXL DDIM 30 steps, CFG 7;
   SD3 its flow-matching Euler scheduler, 28 steps, CFG 4.
--steps / --guidance override either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SAMPLER_FILE = "sampler.json"


@dataclass(frozen=True)
class SamplerSettings:
    steps: int
    guidance: float
    source: str  # where the values came from, recorded with a run: "model", "architecture" or "given"


# docs/method.md, "Defaults", row "evaluation sampler".
ARCHITECTURE_SAMPLERS = {"sd15": SamplerSettings(30, 7.0, "architecture"),
                         "sdxl": SamplerSettings(30, 7.0, "architecture"),
                         "sd3": SamplerSettings(28, 4.0, "architecture")}
STEPS_HELP = ("sampler steps (default: the model's recommended sampler, sampler.json in its folder, else its "
              "architecture's: SD1.5/SDXL 30, SD3 28)")
GUIDANCE_HELP = ("classifier-free guidance scale (default: the model's recommended sampler, else its architecture's: "
                 "SD1.5/SDXL 7, SD3 4)")


def read_model_sampler(folder) -> SamplerSettings | None:
    """The sampler recommended in `folder`/sampler.json, or None when the folder has none."""
    if not folder:
        return None
    path = Path(folder) / SAMPLER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        steps, guidance = data["steps"], data["guidance"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a sampler recommendation ({exc!r}); it must be JSON like "
                         '{"steps": 25, "guidance": 6.0}: fix or delete it') from None
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1 or not isinstance(guidance, (int, float)):
        raise ValueError(f"{path}: steps {steps!r} must be an integer >= 1 and guidance {guidance!r} a number; "
                         "fix or delete the file")
    return SamplerSettings(steps, float(guidance), "model")


def write_model_sampler(folder, steps: int, guidance: float, why: str) -> Path:
    """Record a model's recommended sampler in its folder (read back by read_model_sampler)."""
    from ..utils.atomic_files import write_json

    path = Path(folder) / SAMPLER_FILE
    write_json(path, {"steps": int(steps), "guidance": float(guidance), "why": why}, indent=2)
    return path


def default_sampler(pipe) -> SamplerSettings:
    """The model's recommended sampler (the folder the pipeline was loaded from), else its architecture's."""
    from ..pipelines import pipeline_architecture

    recommended = read_model_sampler(getattr(pipe, "name_or_path", None))
    return recommended or ARCHITECTURE_SAMPLERS[pipeline_architecture(pipe)]


def resolve_sampler_settings(pipe, steps: int | None = None, guidance: float | None = None) -> SamplerSettings:
    """steps and guidance as given, default_sampler(pipe)'s where None; source says which won."""
    if steps is not None and steps < 1:
        raise ValueError(f"--steps {steps} must be >= 1")
    default = default_sampler(pipe)
    if steps is not None and guidance is not None:
        return SamplerSettings(steps, guidance, "given")
    source = default.source if steps is None and guidance is None else f"{default.source} and given"
    return SamplerSettings(default.steps if steps is None else steps,
                           default.guidance if guidance is None else guidance, source)


def resolve_sampler(pipe, steps: int | None = None, guidance: float | None = None) -> tuple[int, float]:
    """(steps, guidance): as given, else the model's recommended sampler, else its architecture's."""
    settings = resolve_sampler_settings(pipe, steps, guidance)
    return settings.steps, settings.guidance
