"""Tiny pipelines of the real architectures, built from configs with random weights.

They let every stage (training, loading, sampling, benchmarks, tests) run on a CPU with no download.
The tokenizer is word-level over a fixed vocabulary, wrapped as a stock PreTrainedTokenizerFast.
"""
from __future__ import annotations

import torch

WORDS = ("a an the and of to on in with above below left right one two three four red green blue yellow "
         "purple orange white black circle square triangle circles squares triangles cat dog photo").split()


BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"


def word_tokenizer(words=WORDS, max_length: int = 16, eos_last: bool = False):
    """A CLIP-like word-level tokenizer: BOS, words, EOS, padded with EOS to max_length.

    Vocabulary: UNK, BOS, EOS, then `words` in their order (duplicates dropped), so ids are stable.
    eos_last: UNK, BOS, words, EOS instead, EOS with the largest id as in CLIP's vocabulary. CLIP text models pool at
    the first end-of-text token, except when its id is 2 (a legacy rule) where they pool at the largest id: models
    whose pooled text matters (SD3) need this order.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    order = [UNK, BOS, *words, EOS] if eos_last else [UNK, BOS, EOS, *words]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(order))}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=UNK, model_max_length=max_length)


def _text_encoder(tokenizer, hidden: int, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_attention_heads=4, num_hidden_layers=2,
                            max_position_embeddings=tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=16, sample_size=32)


def _scheduler(prediction_type: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def _unet(cross_attention_dim: int, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=16, **extra)


def tiny_sd15_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """StableDiffusionPipeline with SD1.5's architecture at toy size (32 px images, 16x16x4 latents)."""
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=_text_encoder(tokenizer, 32), tokenizer=tokenizer, unet=_unet(32),
        scheduler=_scheduler(prediction_type), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def tiny_sdxl_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """StableDiffusionXLPipeline with SDXL's architecture at toy size: two text encoders, pooled text, time ids."""
    from diffusers import StableDiffusionXLPipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    time_dim, proj = 8, 32
    unet = _unet(64, addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                 projection_class_embeddings_input_dim=6 * time_dim + proj, use_linear_projection=True)
    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=_text_encoder(tokenizer, 32), text_encoder_2=_text_encoder(tokenizer, 32, proj),
        tokenizer=tokenizer, tokenizer_2=word_tokenizer(), unet=unet, scheduler=_scheduler(prediction_type))


def _flow_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


def tiny_sd3_pipeline(seed: int = 0, dual_attention_layers: tuple[int, ...] = (0,)):
    """StableDiffusion3Pipeline with SD3's architecture at toy size: two CLIP encoders with projection, no T5,
    an MM-DiT (joint blocks, the first ones with SD3.5's dual attention), a flow-matching Euler scheduler.

    32 px images, 16x16x4 latents, patch 2. The VAE needs explicit shift and scaling factors (None breaks decoding).
    """
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(eos_last=True)  # pooled text must come from the end-of-text token
    width, proj = 32, 16
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=6, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=2 * width, caption_projection_dim=32,
        pooled_projection_dim=2 * proj, pos_embed_max_size=16, dual_attention_layers=dual_attention_layers)
    vae = _vae()
    vae.register_to_config(shift_factor=0.0, scaling_factor=1.0)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=_flow_scheduler(), vae=vae,
        text_encoder=_text_encoder(tokenizer, width, proj), tokenizer=tokenizer,
        text_encoder_2=_text_encoder(tokenizer, width, proj), tokenizer_2=word_tokenizer(eos_last=True),
        text_encoder_3=None, tokenizer_3=None)
