"""ImageReward: BLIP (ViT image encoder + BERT text encoder cross-attending to image tokens) and a linear head.

Weights layout (one folder, or the mapping {"checkpoint": ..., "med_config": ..., "tokenizer": ...}):
    ImageReward.pt      from the Hugging Face repo THUDM/ImageReward (state dict, keys blip.* and mlp.*)
    med_config.json     from the same repo (the BERT config of the text encoder)
    tokenizer/          google-bert/bert-base-uncased's tokenizer files (vocab.txt, tokenizer_config.json, ...)

Score = (head([CLS] state of the text encoder) - 0.16717362830052426) / 1.0333394966054072, the normalised reward
(the paper shows x100). Prompts are tokenised to 35 tokens and images go through CLIP's preprocessing at 224 px,
as in the original. The `image-reward` package is not used: it pins old library versions and downloads at
import. Its checkpoint is mapped onto the stock transformers BlipVisionModel and BlipTextModel (with
cross-attention), which are the same networks; the key mapping is in `_vision_key` below.

    metric = load_metric("imagereward", "weights/imagereward")
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from .base import ImageTextMetric
from .heads import LINEAR_AT, LinearStackHead
from .preprocess import clip_pixels
from .weights import Part, check_keys, load_checkpoint, resolve

MEAN, STD = 0.16717362830052426, 1.0333394966054072
MAX_LENGTH = 35
REPO = "the Hugging Face repo THUDM/ImageReward (hf download THUDM/ImageReward ImageReward.pt med_config.json " \
       "--local-dir FOLDER)"
PARTS = [Part("checkpoint", "ImageReward.pt", "file", REPO), Part("med_config", "med_config.json", "file", REPO),
         Part("tokenizer", "tokenizer", "tokenizer", "the Hugging Face repo google-bert/bert-base-uncased "
              "(hf download google-bert/bert-base-uncased --include '*.json' '*.txt' --local-dir FOLDER/tokenizer)")]

VISION, TEXT, HEAD = "blip.visual_encoder.", "blip.text_encoder.", "mlp."
# Present in the original state dict but unused for the reward (the contrastive projections, a position buffer).
UNUSED = ["blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias",
          "blip.text_encoder.embeddings.position_ids"]
BLOCK = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
         "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
VISION_TOP = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding",
              "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
              "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
              "norm.weight": "post_layernorm.weight", "norm.bias": "post_layernorm.bias"}
TEXT_LAYER = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "attention.output.LayerNorm", "crossattention.self.query", "crossattention.self.key",
              "crossattention.self.value", "crossattention.output.dense", "crossattention.output.LayerNorm",
              "intermediate.dense", "output.dense", "output.LayerNorm"]
TEXT_TOP = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]


def expected_keys(vision_layers: int, text_layers: int) -> list[str]:
    """Every key of an ImageReward checkpoint with these depths that the reward needs."""
    keys = [VISION + k for k in VISION_TOP] + [TEXT + k for k in TEXT_TOP]
    keys += [f"{VISION}blocks.{i}.{name}.{p}" for i in range(vision_layers) for name in BLOCK
             for p in ("weight", "bias")]
    keys += [f"{TEXT}encoder.layer.{i}.{name}.{p}" for i in range(text_layers) for name in TEXT_LAYER
             for p in ("weight", "bias")]
    return keys + [f"{HEAD}layers.{i}.{p}" for i in LINEAR_AT for p in ("weight", "bias")]


def _vision_key(key: str) -> str:
    """BLIP ViT key (after "blip.visual_encoder.") -> transformers BlipVisionModel key."""
    if key in VISION_TOP:
        return VISION_TOP[key]
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)
    if match and match.group(2) in BLOCK:
        return f"encoder.layers.{match.group(1)}.{BLOCK[match.group(2)]}.{match.group(3)}"
    raise KeyError(f"no BlipVisionModel key for {VISION}{key}")


def map_key(key: str) -> tuple[str, str]:
    """("vision" | "text" | "head", key in that module) for an ImageReward.pt key that the reward uses."""
    if key.startswith(VISION):
        return "vision", _vision_key(key[len(VISION):])
    if key.startswith(TEXT):
        return "text", key[len(TEXT):]  # med.py's BertModel and BlipTextModel share their key names
    if key.startswith(HEAD):
        return "head", key[len(HEAD):]
    raise KeyError(f"unexpected key {key!r}")


def split_checkpoint(state: dict[str, torch.Tensor]):
    """(vision, text, head) state dicts in the transformers / LinearStackHead layouts; unused keys dropped."""
    parts = {"vision": {}, "text": {}, "head": {}}
    for key, value in state.items():
        if key not in UNUSED:
            part, name = map_key(key)
            parts[part][name] = value
    return parts["vision"], parts["text"], parts["head"]


def vision_config(state: dict[str, torch.Tensor]):
    """The BLIP ViT's config, read from tensor shapes (ImageReward uses ViT-L/16 at 224 px; heads of width 64)."""
    from transformers import BlipVisionConfig

    width = state[VISION + "cls_token"].shape[-1]
    patch = state[VISION + "patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(state[VISION + "pos_embed"].shape[1] - 1)
    layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith(VISION + "blocks."))
    return BlipVisionConfig(hidden_size=width, intermediate_size=state[VISION + "blocks.0.mlp.fc1.weight"].shape[0],
                            num_hidden_layers=layers, num_attention_heads=max(1, width // 64), image_size=grid * patch,
                            patch_size=patch, hidden_act="gelu", layer_norm_eps=1e-6)


def text_config_of(med: dict, encoder_width: int, source="med_config.json"):
    """BlipTextConfig from med.py's BERT config; cross-attention reads `encoder_width` features (the ViT width)."""
    from transformers import BlipTextConfig

    if not med.get("add_cross_attention", False):
        raise ValueError(f"{source} has no add_cross_attention: true; is it ImageReward's med_config.json?")
    names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "max_position_embeddings", "hidden_act", "layer_norm_eps", "pad_token_id")
    missing = [n for n in names if n not in med]
    if missing:
        raise ValueError(f"{source} lacks {missing}; is it ImageReward's med_config.json?")
    # Special-token ids are only used for generation, which the reward does not do.
    return BlipTextConfig(**{n: med[n] for n in names}, encoder_hidden_size=encoder_width, is_decoder=True,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, bos_token_id=None,
                          eos_token_id=None, sep_token_id=None)


def load_blip(checkpoint: Path, med_config: Path):
    """(BlipVisionModel, BlipTextModel, LinearStackHead) holding ImageReward.pt, loaded strictly, in eval mode."""
    from accelerate import init_empty_weights
    from transformers import BlipTextModel, BlipVisionModel

    state = load_checkpoint(checkpoint)
    shaped = [VISION + k for k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")]
    if any(k not in state for k in shaped):
        raise ValueError(f"{checkpoint} lacks {[k for k in shaped if k not in state]}; is it ImageReward.pt?")
    vcfg = vision_config(state)
    tcfg = text_config_of(json.loads(Path(med_config).read_text()), vcfg.hidden_size, med_config)
    check_keys(checkpoint, expected_keys(vcfg.num_hidden_layers, tcfg.num_hidden_layers), state, optional=UNUSED)
    vision_state, text_state, head_state = split_checkpoint(state)
    with init_empty_weights(include_buffers=False):
        vision, text = BlipVisionModel(vcfg), BlipTextModel(tcfg, add_pooling_layer=False)
    for model, part in ((vision, vision_state), (text, text_state)):
        try:
            model.load_state_dict(part, strict=True, assign=True)
        except RuntimeError as err:  # size mismatches between the checkpoint and med_config.json
            raise ValueError(f"{checkpoint} does not fit {med_config}: {err}") from err
    return vision.eval(), text.eval(), LinearStackHead.from_state_dict(head_state, checkpoint)


class ImageReward(ImageTextMetric):
    """The normalised ImageReward-v1.0 reward of each (image, prompt) pair."""

    name = "imagereward"

    def __init__(self, weights, **options):
        super().__init__(**options)
        from transformers import AutoTokenizer

        paths = resolve(self.name, weights, PARTS)
        vision, text, head = load_blip(paths["checkpoint"], paths["med_config"])
        self.vision = vision.to(self.device, self.dtype).eval()
        self.text = text.to(self.device, self.dtype).eval()
        self.head = head.to(self.device).eval()  # float32, as the original casts the features before the head
        self.tokenizer = AutoTokenizer.from_pretrained(paths["tokenizer"])
        if len(self.tokenizer) > text.config.vocab_size:
            raise ValueError(f"the tokenizer in {paths['tokenizer']} has {len(self.tokenizer)} tokens but "
                             f"{paths['med_config']} only {text.config.vocab_size}; use bert-base-uncased's")

    def _score_batch(self, images, prompts):
        # The original's transform: shorter side to 224 (bicubic), centre crop, OpenAI CLIP mean and std.
        pixels = clip_pixels(images, self.vision.config.image_size)
        image_tokens = self.vision(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                                return_tensors="pt")
        hidden = self.text(input_ids=tokens["input_ids"].to(self.device),
                           attention_mask=tokens["attention_mask"].to(self.device),
                           encoder_hidden_states=image_tokens).last_hidden_state
        reward = self.head(hidden[:, 0].float()).squeeze(-1)
        return (reward - MEAN) / STD
