"""HPSv2.1: an open_clip ViT-H/14 fine-tuned on human preferences; score = cos(image, text) (the paper shows x100).

Weights layout (one folder, or the mapping {"checkpoint": ..., "clip": ...}):
    HPS_v2.1_compressed.pt   from the Hugging Face repo xswu/HPSv2 (open_clip state dict, under "state_dict")
    clip/                    laion/CLIP-ViT-H-14-laion2B-s32B-b79K in the Hugging Face layout; only its config.json,
                             tokenizer and preprocessor files are used (the weights come from the checkpoint)

The open_clip package is not used: it needs torchvision, whose wheels pin one torch build each. The checkpoint is
mapped onto a stock transformers CLIPModel instead (openclip_keys.py gives the key mapping). Images are
preprocessed as open_clip does (preprocess.py: shorter side to 224 bicubic, centre crop, OpenAI mean/std); the
text goes through the laion folder's CLIP tokenizer, the same BPE as open_clip's, 77 tokens.

    metric = load_metric("hpsv2", "weights/hpsv2")
"""
from __future__ import annotations

import logging

from .base import ImageTextMetric
from .clip_score import VIT_H14_PROCESSOR, ClipEmbedder
from .openclip_keys import expected_openclip_keys, openclip_to_transformers
from .weights import Part, check_keys, load_checkpoint, resolve

log = logging.getLogger(__name__)

PARTS = [Part("checkpoint", "HPS_v2.1_compressed.pt", "file", "the Hugging Face repo xswu/HPSv2 "
              "(hf download xswu/HPSv2 HPS_v2.1_compressed.pt --local-dir FOLDER)"),
         Part("clip", "clip", "config+processor", VIT_H14_PROCESSOR)]


def load_openclip_checkpoint(checkpoint, config_dir):
    """A transformers CLIPModel (config from `config_dir`) with an open_clip checkpoint's weights, loaded strictly."""
    from accelerate import init_empty_weights
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig.from_pretrained(config_dir)
    for tower in (config.vision_config, config.text_config):
        if tower.hidden_act != "gelu":
            log.warning("%s/config.json sets hidden_act=%s; open_clip ViT-H-14 (HPSv2) uses exact GELU ('gelu')",
                        config_dir, tower.hidden_act)
    state = load_checkpoint(checkpoint)
    check_keys(checkpoint, expected_openclip_keys(config.vision_config.num_hidden_layers,
                                                  config.text_config.num_hidden_layers), state)
    with init_empty_weights(include_buffers=False):  # no random init of a 1B-parameter model
        model = CLIPModel(config)
    try:
        model.load_state_dict(openclip_to_transformers(state), strict=True, assign=True)
    except RuntimeError as err:  # size mismatches: the checkpoint and config.json describe different models
        raise ValueError(f"{checkpoint} does not fit the model described by {config_dir}/config.json: {err}") from err
    return model.eval()


class HPSv2(ImageTextMetric):
    """cos(image, text) of HPSv2.1's CLIP ViT-H/14."""

    name = "hpsv2"

    def __init__(self, weights, **options):
        super().__init__(**options)
        from transformers import CLIPProcessor

        paths = resolve(self.name, weights, PARTS)
        model = load_openclip_checkpoint(paths["checkpoint"], paths["clip"])
        self.clip = ClipEmbedder(model, CLIPProcessor.from_pretrained(paths["clip"]), self.device, self.dtype,
                                 torchvision_pixels=True)

    def _score_batch(self, images, prompts):
        return self.clip.cosine(images, prompts)
