"""The tiny ShapesWorld models' sizes: their parts, built with agsm.backbones.architectures' part builders.

SD1.5 architecture: word-level tokenizer, CLIP text encoder, VAE, UNet, DDIM scheduler (pretraining/sd15.py).
SD3 architecture: tokenizer, two CLIP encoders with projection, MM-DiT, flow Euler scheduler, and the sd15-tiny
VAE reused frozen (pretraining/sd3.py).
SDXL architecture: two CLIP encoders (the second with projection, for the pooled text), a UNet with SDXL's added
conditioning (pooled text + time ids), the DDIM scheduler, and the sd15-tiny VAE reused frozen (pretraining/sdxl.py).
Sizes are the arguments' defaults; the pretraining commands record the ones they used in train_info.json.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, PreTrainedTokenizerFast

from ..backbones import architectures as arch
from ..backbones.architectures import word_tokenizer
from .spec import COLORS, NUMBER_WORDS, RELATIONS, SHAPES

MAX_LENGTH = 16  # the longest caption is 10 words + bos + eos


def grammar_words() -> list[str]:
    words = ["a", "an", "and"] + list(COLORS) + list(SHAPES) + [s + "s" for s in SHAPES] + list(NUMBER_WORDS)
    for phrase in RELATIONS.values():
        words += [w for w in phrase.split() if w not in words]
    return list(dict.fromkeys(words))


def build_tokenizer(max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    """A CLIP-like word-level tokenizer over the grammar's words (see agsm.backbones.architectures.word_tokenizer)."""
    return word_tokenizer(grammar_words(), max_length)


def build_text_encoder(tokenizer: PreTrainedTokenizerFast, hidden: int = 64, layers: int = 2, heads: int = 4) -> CLIPTextModel:
    """The CLIP text encoder of sd15-tiny, over the grammar's vocabulary."""
    return arch.clip_text_encoder(tokenizer, hidden, layers, heads)


def build_vae(channels: tuple[int, ...] = (16, 32, 32, 32)) -> AutoencoderKL:
    """64x64x3 <-> 8x8x4: three downsamplings between four blocks, one layer each."""
    return arch.vae(channels, sample_size=64, norm_groups=8)


def build_unet(cross_attention_dim: int, channels: tuple[int, ...] = (64, 128), heads: int = 4) -> UNet2DConditionModel:
    """Epsilon-predicting UNet on 8x8x4 latents; cross-attention at every level and in the middle."""
    return arch.unet(cross_attention_dim, channels, sample_size=8, attention_head_dim=heads, norm_groups=16,
                     mid_block_type="UNetMidBlock2DCrossAttn")


def build_scheduler() -> DDIMScheduler:
    """Stable Diffusion's noise schedule, for training (add_noise) and sampling alike."""
    return arch.ddim_scheduler("epsilon", steps_offset=1)


# --- The tiny SD3-architecture parts (pretraining/sd3.py) --------------------------------------------------------
# Two CLIP encoders with projection (no T5), an MM-DiT on 8x8x4 latents with patch 1 (64 image tokens), the
# sd15-tiny VAE (frozen, shared) and a flow-matching Euler scheduler with shift 1 (SD3 uses 3 for 1024 px; an
# 8x8 latent needs no shift towards noise).

SD3_TEXT_HIDDEN = 64
SD3_TEXT_LAYERS = 3  # SD3 takes the penultimate hidden state as context, the last layer only feeds the pooled text
SD3_WIDTH = 128
SD3_LAYERS = 6
SD3_HEADS = 4
SD3_DUAL_ATTENTION_LAYERS = (0, 1)  # SD3.5-style blocks first, then plain SD3 joint blocks


def build_sd3_tokenizer(max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    """The grammar's word-level tokenizer with the end-of-text token given the largest id, as in CLIP's vocabulary.

    CLIPTextModelWithProjection pools the hidden state at the first end-of-text token, except when that token's id
    is 2 (a legacy rule for old configs), where it pools at the largest id instead; architectures.word_tokenizer puts
    end-of-text at id 2 unless eos_last. Pooled text conditions every SD3 block, so it must see the whole caption.
    """
    return word_tokenizer(grammar_words(), max_length, eos_last=True)


def build_sd3_text_encoder(tokenizer: PreTrainedTokenizerFast, hidden: int = SD3_TEXT_HIDDEN,
                           layers: int = SD3_TEXT_LAYERS, heads: int = 4):
    """A CLIPTextModelWithProjection; its projection width equals its hidden width."""
    if tokenizer.eos_token_id == 2:
        raise ValueError("the tokenizer's end-of-text id is 2, so CLIP would pool at the largest id instead; "
                         "use build_sd3_tokenizer()")
    return arch.clip_text_encoder(tokenizer, hidden, layers, heads, projection=hidden)


def build_sd3_transformer(text_hidden: int = SD3_TEXT_HIDDEN, width: int = SD3_WIDTH, layers: int = SD3_LAYERS,
                          heads: int = SD3_HEADS, dual_attention_layers: tuple[int, ...] = SD3_DUAL_ATTENTION_LAYERS):
    """MM-DiT on 8x8x4 latents, patch 1; context = both encoders' hidden states side by side (2 x text_hidden)."""
    from diffusers import SD3Transformer2DModel

    if width % heads:
        raise ValueError(f"width {width} must be a multiple of heads {heads}")
    if any(not 0 <= i < layers for i in dual_attention_layers):
        raise ValueError(f"dual_attention_layers {tuple(dual_attention_layers)} must lie in 0..{layers - 1}")
    return SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=layers,
        attention_head_dim=width // heads, num_attention_heads=heads, joint_attention_dim=2 * text_hidden,
        caption_projection_dim=width, pooled_projection_dim=2 * text_hidden, pos_embed_max_size=8,
        dual_attention_layers=tuple(dual_attention_layers), qk_norm="rms_norm",
    )


def build_flow_scheduler():
    """SD3's flow-matching Euler sampler: sigma = t / 1000, x_t = (1 - sigma) x0 + sigma eps, shift 1."""
    return arch.flow_scheduler(1.0)


def load_frozen_vae(path):
    """A copy of a trained AutoencoderKL with the explicit shift (0) that SD3's pipeline needs, in eval mode."""
    from pathlib import Path

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no VAE at {path} (config.json missing); pass the vae/ folder of a trained "
                                "pipeline such as src/agsm/shapes/models/sd15-tiny/vae")
    vae = AutoencoderKL.from_pretrained(path)
    if vae.config.scaling_factor is None:
        raise ValueError(f"the VAE at {path} has no scaling_factor; SD3's pipeline cannot decode without one")
    vae.register_to_config(shift_factor=0.0)
    vae.requires_grad_(False)
    return vae.eval()


# --- The tiny SDXL-architecture parts (pretraining/sdxl.py) ------------------------------------------------------
# SDXL's layout at ShapesWorld size: context = both encoders' penultimate hidden states side by side (CLIP-L 768 +
# CLIP-G 1280 in SDXL; 32 + 64 here), the second encoder's projected end-of-text state as pooled text, and six time
# ids (original size, crop corner, target size) embedded like SDXL's. Cross-attention at both levels and in the
# middle as in sd15-tiny: with 8x8 latents there is no level to spare for SDXL's attention-free first level.

SDXL_TEXT_HIDDEN = (32, 64)  # text_encoder (CLIPTextModel), text_encoder_2 (CLIPTextModelWithProjection)
SDXL_TEXT_LAYERS = 3  # the context is the penultimate state, as in SDXL; the last layer of encoder 2 feeds pooled
SDXL_TIME_DIM = 8  # per time id (SDXL: 256)


def build_sdxl_text_encoders(tokenizer: PreTrainedTokenizerFast, hidden: tuple[int, int] = SDXL_TEXT_HIDDEN,
                             layers: int = SDXL_TEXT_LAYERS, heads: int = 4):
    """(CLIPTextModel, CLIPTextModelWithProjection); the second pools at end-of-text, so the tokenizer must come
    from build_sd3_tokenizer (end-of-text with the largest id)."""
    if tokenizer.eos_token_id == 2:
        raise ValueError("the tokenizer's end-of-text id is 2, so CLIP would pool at the largest id instead; "
                         "use build_sd3_tokenizer()")
    return (arch.clip_text_encoder(tokenizer, hidden[0], layers, heads),
            arch.clip_text_encoder(tokenizer, hidden[1], layers, heads, projection=hidden[1]))


def build_sdxl_unet(text_hidden: tuple[int, int] = SDXL_TEXT_HIDDEN, channels: tuple[int, ...] = (32, 64),
                    heads: int = 4, time_dim: int = SDXL_TIME_DIM) -> UNet2DConditionModel:
    """Epsilon-predicting UNet on 8x8x4 latents with SDXL's `text_time` added conditioning and linear projections."""
    return arch.unet(sum(text_hidden), channels, sample_size=8, attention_head_dim=heads, norm_groups=16,
                     mid_block_type="UNetMidBlock2DCrossAttn", addition_embed_type="text_time",
                     addition_time_embed_dim=time_dim,
                     projection_class_embeddings_input_dim=6 * time_dim + text_hidden[1], use_linear_projection=True)
