"""LAION improved aesthetic predictor: a linear head on the L2-normalised CLIP ViT-L/14 image embedding.

Weights layout (one folder, or the mapping {"head": ..., "clip": ...}):
    sac+logos+ava1-l14-linearMSE.pth   from github.com/christophschuhmann/improved-aesthetic-predictor
                                       (state dict layers.{0,2,4,6,7}.{weight,bias}, see heads.py)
    clip/                              openai/clip-vit-large-patch14 in the Hugging Face layout

The score is the head's output (about 1-10 on real images). Prompts are not used: `score(images)` is enough.

    metric = load_metric("aesthetic", "weights/aesthetic")
    scores = metric.score(images)
"""
from __future__ import annotations

from .base import ImageTextMetric
from .clip_score import CLIP_L14, load_embedder
from .heads import LinearStackHead
from .weights import Part, load_checkpoint, resolve

PARTS = [Part("head", "sac+logos+ava1-l14-linearMSE.pth", "file",
              "github.com/christophschuhmann/improved-aesthetic-predictor (the file sac+logos+ava1-l14-linearMSE.pth)"),
         Part("clip", "clip", CLIP_L14.kind, CLIP_L14.source)]


class AestheticScore(ImageTextMetric):
    """head(normalise(CLIP ViT-L/14 image embedding))."""

    name = "aesthetic"
    uses_prompts = False

    def __init__(self, weights, **options):
        super().__init__(**options)
        paths = resolve(self.name, weights, PARTS)
        self.clip = load_embedder(paths["clip"], paths["clip"], self.device, self.dtype, torchvision_pixels=True)
        self.head = LinearStackHead.from_state_dict(load_checkpoint(paths["head"]), paths["head"])
        width = self.clip.model.config.projection_dim
        if self.head.dims[0] != width:
            raise ValueError(f"{paths['head']} expects {self.head.dims[0]}-d embeddings but the CLIP in "
                             f"{paths['clip']} gives {width}-d ones; the predictor needs CLIP ViT-L/14")
        self.head.to(self.device).eval()  # float32 whatever the CLIP dtype: it is tiny

    def _score_batch(self, images, prompts):
        return self.head(self.clip.images(images)).squeeze(-1)
