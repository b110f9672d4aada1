"""Map an open_clip CLIP state dict (the layout of HPSv2's checkpoints) onto transformers' CLIPModel.

open_clip key                                   -> transformers CLIPModel key
visual.class_embedding [D]                      -> vision_model.embeddings.class_embedding
visual.conv1.weight                             -> vision_model.embeddings.patch_embedding.weight
visual.positional_embedding [P, D]              -> vision_model.embeddings.position_embedding.weight
visual.ln_pre / visual.ln_post                  -> vision_model.pre_layrnorm / vision_model.post_layernorm
visual.proj [D, E]                              -> visual_projection.weight [E, D] (transposed: x @ proj)
token_embedding / positional_embedding          -> text_model.embeddings.token_embedding / .position_embedding
ln_final                                        -> text_model.final_layer_norm
text_projection [W, E]                          -> text_projection.weight [E, W] (transposed)
logit_scale                                     -> logit_scale
{visual.}transformer.resblocks.{i}.             -> {vision_model|text_model}.encoder.layers.{i}.
    ln_1 / ln_2                                 ->     layer_norm1 / layer_norm2
    attn.in_proj_weight [3D, D] (and _bias)     ->     self_attn.q_proj / k_proj / v_proj (thirds, in that order)
    attn.out_proj                               ->     self_attn.out_proj
    mlp.c_fc / mlp.c_proj                       ->     mlp.fc1 / mlp.fc2
Both sides apply LayerNorm before attention and MLP, pool the class token (vision) and the end-of-text token
(text) after the final LayerNorm, and project without bias, so the mapped model computes the same embeddings,
given a config with open_clip's activation (exact GELU for ViT-H-14, not OpenAI's quick GELU).
"""
from __future__ import annotations

import torch

BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
         "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
DIRECT = {"visual.class_embedding": "vision_model.embeddings.class_embedding",
          "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
          "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
          "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
          "positional_embedding": "text_model.embeddings.position_embedding.weight",
          "logit_scale": "logit_scale"}
NORMS = {"visual.ln_pre": "vision_model.pre_layrnorm", "visual.ln_post": "vision_model.post_layernorm",
         "ln_final": "text_model.final_layer_norm"}
TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
TOWERS = {"visual.transformer.resblocks.": "vision_model.encoder.layers.",
          "transformer.resblocks.": "text_model.encoder.layers."}


def openclip_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The CLIPModel state dict for an open_clip one; a key with no rule raises KeyError naming it."""
    out = {}
    for key, value in state.items():
        out.update(map_openclip_key(key, value))
    return out


def expected_openclip_keys(vision_layers: int, text_layers: int) -> list[str]:
    """Every key an open_clip CLIP checkpoint with these depths holds (what the mapping needs, no more)."""
    keys = list(DIRECT) + list(TRANSPOSED)
    keys += [f"{norm}.{p}" for norm in NORMS for p in ("weight", "bias")]
    for prefix, depth in (("visual.transformer.resblocks.", vision_layers), ("transformer.resblocks.", text_layers)):
        for i in range(depth):
            keys += [f"{prefix}{i}.attn.in_proj_{p}" for p in ("weight", "bias")]
            keys += [f"{prefix}{i}.{name}.{p}" for name in BLOCK for p in ("weight", "bias")]
    return keys


def map_openclip_key(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """{transformers key: tensor} for one open_clip key (three of them for a fused attention projection)."""
    if key in DIRECT:
        return {DIRECT[key]: value}
    if key in TRANSPOSED:
        return {TRANSPOSED[key]: value.t().contiguous()}
    module, _, param = key.rpartition(".")
    if module in NORMS:
        return {f"{NORMS[module]}.{param}": value}
    for prefix, target in TOWERS.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            head = f"{target}{index}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rpartition("_")[2]  # weight | bias
                q, k, v = value.chunk(3, dim=0)
                return {f"{head}self_attn.{name}_proj.{kind}": t.contiguous() for name, t in zip("qkv", (q, k, v))}
            name, _, param = rest.rpartition(".")
            if name in BLOCK:
                return {f"{head}{BLOCK[name]}.{param}": value}
    raise KeyError(f"no transformers CLIPModel key for open_clip key {key!r}")
