"""Real architectures with random weights (no download): for benchmarks of speed and memory.

SD1.5 follows the published configs: UNet 320/640/1280/1280 with cross-attention width 768,
VAE 128/256/512/512, CLIP ViT-L/14 text encoder (12 layers, width 768, 77 positions).
SD3 medium: MM-DiT of 24 joint blocks, width 1536 (24 heads of 64), patch 2 on 16-channel latents,
context 4096 -> 1536, pooled 2048; CLIP-L and CLIP-G text encoders with projection; VAE with 16 latent
channels. T5-XXL is left out (diffusers allows an SD3 pipeline without it), so text is CLIP only.
"""
from __future__ import annotations

import torch

from .tiny import word_tokenizer


def _clip(tokenizer, hidden: int, layers: int, heads: int, projection: int | None = None, act="quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                            num_attention_heads=heads, num_hidden_layers=layers, max_position_embeddings=77,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, hidden_act=act, projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def sd3_architecture_pipeline(seed: int = 0):
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline)

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(max_length=77, eos_last=True)
    transformer = SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                                        attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                        caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=1024, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5305)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=_clip(tokenizer, 768, 12, 12, 768), tokenizer=tokenizer,
        text_encoder_2=_clip(tokenizer, 1280, 32, 20, 1280, act="gelu"),
        tokenizer_2=word_tokenizer(max_length=77, eos_last=True),
        text_encoder_3=None, tokenizer_3=None)


def sd15_architecture_pipeline(seed: int = 0):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    torch.manual_seed(seed)
    tokenizer = word_tokenizer(max_length=77)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    text = _clip(tokenizer, 768, 12, 12)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
