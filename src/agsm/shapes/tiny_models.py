"""Builders for the tiny SD1.5-architecture parts: word-level tokenizer, CLIP text encoder, VAE, UNet, scheduler.

Sizes are the arguments' defaults; pretrain.py records the ones it used in train_info.json.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from ..tiny import word_tokenizer

from .spec import COLORS, NUMBER_WORDS, RELATIONS, SHAPES

MAX_LENGTH = 16  # the longest caption is 10 words + bos + eos


def grammar_words() -> list[str]:
    words = ["a", "an", "and"] + list(COLORS) + list(SHAPES) + [s + "s" for s in SHAPES] + list(NUMBER_WORDS)
    for phrase in RELATIONS.values():
        words += [w for w in phrase.split() if w not in words]
    return list(dict.fromkeys(words))


def build_tokenizer(max_length: int = MAX_LENGTH) -> PreTrainedTokenizerFast:
    """A CLIP-like word-level tokenizer over the grammar's words (see agsm.tiny.word_tokenizer)."""
    return word_tokenizer(grammar_words(), max_length)


def build_text_encoder(tokenizer: PreTrainedTokenizerFast, hidden: int = 64, layers: int = 2, heads: int = 4) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_vae(channels: tuple[int, ...] = (16, 32, 32, 32)) -> AutoencoderKL:
    """64x64x3 <-> 8x8x4: three downsamplings between four blocks, one layer each."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels, layers_per_block=1, norm_num_groups=8,
    )


def build_unet(cross_attention_dim: int, channels: tuple[int, ...] = (64, 128), heads: int = 4) -> UNet2DConditionModel:
    """Epsilon-predicting UNet on 8x8x4 latents; cross-attention at every level and in the middle."""
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=channels,
        down_block_types=("CrossAttnDownBlock2D",) * len(channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(channels),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=cross_attention_dim, attention_head_dim=heads, norm_num_groups=16,
    )


def build_scheduler() -> DDIMScheduler:
    """Stable Diffusion's noise schedule, for training (add_noise) and sampling alike."""
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )
