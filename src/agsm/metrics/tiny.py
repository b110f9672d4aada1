"""Tiny random stand-ins for every metric's weights, written in the real layouts (see docs/metrics.md).

They are the real classes (CLIPModel, BlipVisionModel, BlipTextModel, the linear head) at toy sizes, saved the way
the real files are (Hugging Face folders, the open_clip and BLIP state-dict layouts), so loading, preprocessing and
scoring run end to end on a CPU with no download. Scores from them mean nothing.

    python -c "from agsm.metrics.tiny import write_tiny_weights; write_tiny_weights('hpsv2', '/tmp/hps')"
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .heads import LINEAR_AT, LinearStackHead
from .imagereward import MAX_LENGTH, TEXT, expected_keys, map_key, text_config_of
from .openclip_keys import TRANSPOSED, expected_openclip_keys, map_openclip_key

IMAGE_SIZE = 32
BERT_WORDS = "a an the of and on in with red green blue yellow cat dog photo circle square two one".split()


def clip_tokenizer():
    """A CLIPTokenizer over the 256 byte-level symbols (with and without </w>) and no merges: no unknown tokens.

    As in CLIP's vocabulary the special tokens come last, so end-of-text has the highest id (open_clip pools there).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {}
    for token in [*alphabet, *(a + "</w>" for a in alphabet), "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def clip_processor(image_size: int = IMAGE_SIZE):
    from transformers import CLIPImageProcessorPil, CLIPProcessor

    images = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    return CLIPProcessor(image_processor=images, tokenizer=clip_tokenizer())


def tiny_clip_model(hidden_act: str = "quick_gelu", seed: int = 0):
    """A CLIPModel with 2-layer, 32-wide towers on 32 px images and 16-d embeddings."""
    from transformers import CLIPConfig, CLIPModel

    tok = clip_tokenizer()
    tower = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                 hidden_act=hidden_act)
    config = CLIPConfig(text_config=dict(tower, vocab_size=len(tok), max_position_embeddings=77,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id),
                        vision_config=dict(tower, image_size=IMAGE_SIZE, patch_size=8), projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    # Real CLIP embeddings share a common component, so most cosines are positive (CLIP scores of 20-35). Give the
    # tiny towers one: a random final LayerNorm bias, and a first projection row along it, in both towers.
    with torch.no_grad():
        for norm, projection in ((model.vision_model.post_layernorm, model.visual_projection),
                                 (model.text_model.final_layer_norm, model.text_projection)):
            norm.bias.copy_(torch.randn_like(norm.bias))
            projection.weight[0] = 0.5 * norm.bias / norm.bias.norm()
    return model


def write_clip_folder(folder, hidden_act: str = "quick_gelu", seed: int = 0, processor: bool = True) -> Path:
    """A tiny CLIP in the Hugging Face layout (config, weights and, unless processor=False, processor files)."""
    folder = Path(folder)
    tiny_clip_model(hidden_act, seed).save_pretrained(folder)
    if processor:
        clip_processor().save_pretrained(folder)
    return folder


def to_openclip(model) -> dict[str, torch.Tensor]:
    """A transformers CLIPModel's weights in open_clip's key layout (the inverse of openclip_keys)."""
    hf = model.state_dict()
    config = model.config
    keys = expected_openclip_keys(config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers)
    out = {}
    for key in keys:
        targets = list(map_openclip_key(key, torch.zeros(3)))  # the transformers names this key maps to
        value = torch.cat([hf[t] for t in targets]) if len(targets) == 3 else hf[targets[0]]
        out[key] = value.t().contiguous() if key in TRANSPOSED else value.clone()
    return out


def bert_tokenizer():
    from transformers import BertTokenizer

    vocab = {}
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, *letters, *("##" + c for c in letters)]:
        vocab.setdefault(token, len(vocab))
    return BertTokenizer(vocab=vocab)


def tiny_head(width: int, seed: int = 0) -> LinearStackHead:
    """A LinearStackHead width -> 24 -> 16 -> 8 -> 4 -> 1 whose weights keep the output's spread visible."""
    torch.manual_seed(seed + 1)
    head = LinearStackHead((width, 24, 16, 8, 4, 1))
    for i in LINEAR_AT:  # default init shrinks the signal ~3x per layer; unit gain keeps scores apart
        layer = head.layers[i]
        torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
        torch.nn.init.normal_(layer.bias, std=0.1)
    return head


def tiny_imagereward_state(seed: int = 0):
    """(ImageReward.pt state dict in the original BLIP layout, med_config dict) for a toy BLIP + head."""
    from transformers import BlipTextModel, BlipVisionConfig, BlipVisionModel

    torch.manual_seed(seed)
    vision = BlipVisionModel(BlipVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                              num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=8,
                                              layer_norm_eps=1e-6))
    med = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(bert_tokenizer()) + 2,
           "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "max_position_embeddings": MAX_LENGTH + 5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
           "pad_token_id": 0, "type_vocab_size": 2, "encoder_width": 128, "add_cross_attention": True,
           "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    text_config = text_config_of(med, 128)
    text_config.initializer_range = 0.2  # larger than BERT's 0.02 so the reward depends visibly on its inputs
    text = BlipTextModel(text_config, add_pooling_layer=False)
    head = tiny_head(32, seed)
    modules = {"vision": vision.state_dict(), "text": text.state_dict(), "head": head.state_dict()}
    state = {}
    for key in expected_keys(2, 2):
        part, name = map_key(key)
        state[key] = modules[part][name]
    # The contrastive projections the reward does not use, as the original file holds them.
    state.update({"blip.vision_proj.weight": torch.randn(8, 128), "blip.vision_proj.bias": torch.zeros(8),
                  "blip.text_proj.weight": torch.randn(8, 32), "blip.text_proj.bias": torch.zeros(8)})
    state[TEXT + "embeddings.position_ids"] = torch.arange(med["max_position_embeddings"]).expand(1, -1)
    return state, med


def write_tiny_weights(name: str, folder, seed: int = 0) -> Path:
    """Write the weights layout of metric `name` under `folder` with tiny random models; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "clip":
        write_clip_folder(folder, seed=seed)
    elif name == "pickscore":  # PickScore's processor comes from another repo: keep it in processor/
        write_clip_folder(folder, hidden_act="gelu", seed=seed, processor=False)
        clip_processor().save_pretrained(folder / "processor")
    elif name == "hpsv2":  # only the config and processor of clip/ are used: no weights there
        model = tiny_clip_model("gelu", seed)
        model.config.save_pretrained(folder / "clip")
        clip_processor().save_pretrained(folder / "clip")
        torch.save({"state_dict": to_openclip(model), "epoch": 1}, folder / "HPS_v2.1_compressed.pt")
    elif name == "aesthetic":
        write_clip_folder(folder / "clip", seed=seed)
        torch.save(tiny_head(16, seed).state_dict(), folder / "sac+logos+ava1-l14-linearMSE.pth")
    elif name == "imagereward":
        state, med = tiny_imagereward_state(seed)
        torch.save(state, folder / "ImageReward.pt")
        (folder / "med_config.json").write_text(json.dumps(med, indent=2))
        bert_tokenizer().save_pretrained(folder / "tokenizer")
    else:
        raise ValueError(f"unknown metric {name!r}; choose one of clip, pickscore, imagereward, hpsv2, aesthetic")
    return folder
