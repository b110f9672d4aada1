"""ShapesWorld: a synthetic compositional world with an exact judge (src/agsm/shapes/README.md).

    from agsm.shapes import sample_many, render, verify
    smp = sample_many(1, seed=0)[0]
    verify(render(smp.scene), smp.prompt).correct   # True

Modules: spec (constants, dataclasses), scenes (seeded sampling), render, grammar (captions and
parsing), detect, verify (the judge), suite (the evaluation suite), dataset (training sets),
robustness (measuring the judge), restate (other true captions of a scene), and, needing torch and
diffusers, tiny_models, pretraining (one resumable trainer for both tiny models; `python -m agsm.shapes.pretrain`),
generate, evaluate.
"""

from .detect import Detection, detect
from .grammar import caption, parse_prompt, to_prompt
from .render import render
from .requirements import ObjectSpec, Requirements
from .scenes import Sample, sample, sample_many
from .spec import CATEGORIES, COLORS, SHAPES, Scene, ShapeObject
from .verify import Verdict, judge, verify

__all__ = [
    "CATEGORIES", "COLORS", "SHAPES", "Detection", "ObjectSpec", "Requirements", "Sample", "Scene", "ShapeObject",
    "Verdict", "caption", "detect", "judge", "parse_prompt", "render", "sample", "sample_many", "to_prompt", "verify",
]
