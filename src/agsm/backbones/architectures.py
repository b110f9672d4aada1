"""Every real architecture this project builds from a config, at any scale, with random weights (no download).

    from agsm.backbones.architectures import build_pipeline
    pipe = build_pipeline("sd3", "toy", seed=0)   # a stock StableDiffusion3Pipeline, 32 px, on a CPU in seconds

Scales:
- `toy`: the real classes at toy size (32 px images, 16x16x4 latents, two-layer text encoders): every stage
  (training, loading, sampling, editing) runs in tests and CI on a CPU. SD1.5, SDXL, SD3 (without T5, or with a
  two-layer T5 encoder: build_pipeline("sd3", "toy", t5=True)).
- `full`: the published sizes, for speed and memory benchmarks. SD1.5: UNet 320/640/1280/1280 with
  cross-attention width 768, VAE 128/256/512/512, CLIP ViT-L/14 text encoder (12 layers, width 768, 77
  positions). SD3 medium: MM-DiT of 24 joint blocks, width 1536 (24 heads of 64), patch 2 on 16-channel
  latents, context 4096 -> 1536, pooled 2048; CLIP-L and CLIP-G text encoders with projection; VAE with 16
  latent channels. T5-XXL is left out (diffusers allows an SD3 pipeline without it), so text is CLIP only.
- The ShapesWorld base models' own sizes are in shapes/tiny_models.py, built from the parts below.
Parts: `word_tokenizer` (a CLIP-like word-level tokenizer over a fixed vocabulary, wrapped as a stock
PreTrainedTokenizerFast), `clip_text_encoder`, `t5_tokenizer` and `t5_text_encoder` (SD3's third encoder),
`vae`, `unet`, `ddim_scheduler`, `flow_scheduler`; the MM-DiT is SD3Transformer2DModel called with its config
directly.
"""
from __future__ import annotations

import torch

WORDS = ("a an the and of to on in with above below left right one two three four red green blue yellow "
         "purple orange white black circle square triangle circles squares triangles cat dog photo").split()
BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"
T5_PAD, T5_EOS = "<pad>", "</s>"
SCALES = ("toy", "full")


# --- parts --------------------------------------------------------------------------------------------------------

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


def clip_text_encoder(tokenizer, hidden: int, layers: int = 2, heads: int = 4, projection: int | None = None,
                      mlp_ratio: int = 4, vocab_size: int | None = None, positions: int | None = None,
                      act: str = "quick_gelu"):
    """A CLIPTextModel, or CLIPTextModelWithProjection when `projection` is given (SDXL's and SD3's encoders).

    vocab_size and positions default to the tokenizer's (a word-level vocabulary, its maximum length).
    """
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden,
                            intermediate_size=mlp_ratio * hidden, num_attention_heads=heads, num_hidden_layers=layers,
                            max_position_embeddings=positions or tokenizer.model_max_length,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id, hidden_act=act, projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def t5_tokenizer(words=WORDS, max_length: int = 256):
    """A T5-like word-level tokenizer: ids <pad> 0, </s> 1, <unk> 2, then `words`; a caption is its words and </s>,
    with no start token, padded with <pad> (T5's layout), wrapped as a stock PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([T5_PAD, T5_EOS, UNK, *words]))}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {T5_EOS}", special_tokens=[(T5_EOS, vocab[T5_EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=T5_EOS, pad_token=T5_PAD, unk_token=UNK,
                                   model_max_length=max_length)


def t5_text_encoder(tokenizer, width: int, layers: int = 2, heads: int = 4):
    """A T5EncoderModel (SD3's third text encoder) of `width` = the transformer's joint_attention_dim, since the
    pipeline places its states beside the CLIP states padded to that width. Relative positions, gated GELU as T5
    v1.1, no dropout."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), d_model=width, d_kv=width // heads, d_ff=2 * width,
                      num_layers=layers, num_heads=heads, relative_attention_num_buckets=8,
                      relative_attention_max_distance=64, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    return T5EncoderModel(config)


def vae(channels: tuple[int, ...], sample_size: int, latent_channels: int = 4, layers_per_block: int = 1,
        norm_groups: int = 32, **extra):
    """An AutoencoderKL with len(channels) - 1 downsamplings (a factor 8 for four blocks)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                         block_out_channels=tuple(channels), down_block_types=("DownEncoderBlock2D",) * len(channels),
                         up_block_types=("UpDecoderBlock2D",) * len(channels), layers_per_block=layers_per_block,
                         norm_num_groups=norm_groups, sample_size=sample_size, **extra)


def unet(cross_attention_dim: int, channels: tuple[int, ...], sample_size: int, layers_per_block: int = 1,
         attention_head_dim: int = 8, norm_groups: int = 32, cross_attention_everywhere: bool = True, **extra):
    """A UNet2DConditionModel on 4-channel latents. cross_attention_everywhere: every level attends to the text
    (the toy and ShapesWorld sizes, too small to spare a level); False keeps diffusers' default, SD1.5's layout
    (no attention at the deepest level)."""
    from diffusers import UNet2DConditionModel

    blocks = {}
    if cross_attention_everywhere:
        blocks = {"down_block_types": ("CrossAttnDownBlock2D",) * len(channels),
                  "up_block_types": ("CrossAttnUpBlock2D",) * len(channels)}
    return UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4,
                                layers_per_block=layers_per_block, block_out_channels=tuple(channels),
                                cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
                                norm_num_groups=norm_groups, **blocks, **extra)


def ddim_scheduler(prediction_type: str = "epsilon", steps_offset: int = 1):
    """Stable Diffusion's noise schedule (scaled-linear betas 0.00085..0.012 over 1000 steps) with a DDIM sampler."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=steps_offset,
                         prediction_type=prediction_type)


def flow_scheduler(shift: float = 1.0):
    """SD3's flow-matching Euler sampler: sigma = t / 1000, x_t = (1 - sigma) x0 + sigma eps, with `shift`."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


# --- toy scale ----------------------------------------------------------------------------------------------------

def _toy_vae():
    return vae((32, 32), sample_size=32, norm_groups=16)


def tiny_sd15_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """StableDiffusionPipeline with SD1.5's architecture at toy size (32 px images, 16x16x4 latents)."""
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    return StableDiffusionPipeline(
        vae=_toy_vae(), text_encoder=clip_text_encoder(tokenizer, 32, mlp_ratio=2), tokenizer=tokenizer,
        unet=unet(32, (32, 64), sample_size=16, norm_groups=16), scheduler=ddim_scheduler(prediction_type),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def tiny_sdxl_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """StableDiffusionXLPipeline with SDXL's architecture at toy size: two text encoders, pooled text, time ids."""
    from diffusers import StableDiffusionXLPipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    time_dim, proj = 8, 32
    xl_unet = unet(64, (32, 64), sample_size=16, norm_groups=16, addition_embed_type="text_time",
                   addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=6 * time_dim + proj,
                   use_linear_projection=True)
    return StableDiffusionXLPipeline(
        vae=_toy_vae(), text_encoder=clip_text_encoder(tokenizer, 32, mlp_ratio=2),
        text_encoder_2=clip_text_encoder(tokenizer, 32, projection=proj, mlp_ratio=2),
        tokenizer=tokenizer, tokenizer_2=word_tokenizer(), unet=xl_unet, scheduler=ddim_scheduler(prediction_type))


def tiny_sd3_pipeline(seed: int = 0, dual_attention_layers: tuple[int, ...] = (0,), t5: bool = False):
    """StableDiffusion3Pipeline with SD3's architecture at toy size: two CLIP encoders with projection, no T5
    (with `t5`, a two-layer T5 encoder), an MM-DiT (joint blocks, the first ones with SD3.5's dual attention), a
    flow-matching Euler scheduler.

    32 px images, 16x16x4 latents, patch 2. The VAE needs explicit shift and scaling factors (None breaks decoding).
    The T5 encoder is built last, so every other weight is the same as without it for the same seed.
    """
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(eos_last=True)  # pooled text must come from the end-of-text token
    width, proj = 32, 16
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=6, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=2 * width, caption_projection_dim=32,
        pooled_projection_dim=2 * proj, pos_embed_max_size=16, dual_attention_layers=dual_attention_layers)
    toy_vae = _toy_vae()
    toy_vae.register_to_config(shift_factor=0.0, scaling_factor=1.0)
    clip_1 = clip_text_encoder(tokenizer, width, projection=proj, mlp_ratio=2)
    clip_2 = clip_text_encoder(tokenizer, width, projection=proj, mlp_ratio=2)
    tokenizer_3 = t5_tokenizer() if t5 else None
    text_encoder_3 = t5_text_encoder(tokenizer_3, transformer.config.joint_attention_dim) if t5 else None
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=flow_scheduler(), vae=toy_vae, text_encoder=clip_1, tokenizer=tokenizer,
        text_encoder_2=clip_2, tokenizer_2=word_tokenizer(eos_last=True), text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3)


# --- full scale ---------------------------------------------------------------------------------------------------

def _full_clip(tokenizer, hidden: int, layers: int, heads: int, projection: int | None = None, act="quick_gelu"):
    return clip_text_encoder(tokenizer, hidden, layers, heads, projection, vocab_size=49408, positions=77, act=act)


def sd15_full_pipeline(seed: int = 0):
    """StableDiffusionPipeline at SD1.5's published sizes, random weights (512 px)."""
    from diffusers import StableDiffusionPipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(max_length=77)
    full_unet = unet(768, (320, 640, 1280, 1280), sample_size=64, layers_per_block=2,
                     cross_attention_everywhere=False)
    full_vae = vae((128, 256, 512, 512), sample_size=512, layers_per_block=2)
    text = _full_clip(tokenizer, 768, 12, 12)
    return StableDiffusionPipeline(vae=full_vae, text_encoder=text, tokenizer=tokenizer, unet=full_unet,
                                   scheduler=ddim_scheduler(steps_offset=0), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def sdxl_full_pipeline(seed: int = 0):
    """StableDiffusionXLPipeline at SDXL base 1.0's published sizes, random weights (1024 px). UNet: 320/640/1280,
    no attention at the first level, 2 and 10 transformer layers at the other two (10 in the mid block), heads of
    64, cross-attention width 2048, pooled text + six time ids (256 each).
    Text: CLIP ViT-L/14 (768, 12 layers) and OpenCLIP ViT-bigG/14 (1280, 32 layers, projection 1280). VAE as
    SD1.5's with SDXL's scaling factor. DDIM, as `agsm sample` uses for UNet models."""
    from diffusers import StableDiffusionXLPipeline

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = word_tokenizer(max_length=77), word_tokenizer(max_length=77)
    xl_unet = unet(2048, (320, 640, 1280), sample_size=128, layers_per_block=2, attention_head_dim=(5, 10, 20),
                   cross_attention_everywhere=False,
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                   transformer_layers_per_block=(1, 2, 10), addition_embed_type="text_time",
                   addition_time_embed_dim=256, projection_class_embeddings_input_dim=6 * 256 + 1280,
                   use_linear_projection=True)
    xl_vae = vae((128, 256, 512, 512), sample_size=1024, layers_per_block=2, scaling_factor=0.13025,
                 force_upcast=True)
    text = _full_clip(tokenizer, 768, 12, 12)
    text_2 = _full_clip(tokenizer_2, 1280, 32, 20, 1280, act="gelu")
    return StableDiffusionXLPipeline(vae=xl_vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer_2, unet=xl_unet, scheduler=ddim_scheduler())


def sd3_full_pipeline(seed: int = 0):
    """StableDiffusion3Pipeline at SD3 medium's published sizes without T5, random weights (1024 px)."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tokenizer = word_tokenizer(max_length=77, eos_last=True)
    transformer = SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                                        attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                        caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)
    full_vae = vae((128, 256, 512, 512), sample_size=1024, latent_channels=16, layers_per_block=2,
                   use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5305)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=flow_scheduler(shift=3.0), vae=full_vae,
        text_encoder=_full_clip(tokenizer, 768, 12, 12, 768), tokenizer=tokenizer,
        text_encoder_2=_full_clip(tokenizer, 1280, 32, 20, 1280, act="gelu"),
        tokenizer_2=word_tokenizer(max_length=77, eos_last=True), text_encoder_3=None, tokenizer_3=None)


_BUILDERS = {("sd15", "toy"): tiny_sd15_pipeline, ("sdxl", "toy"): tiny_sdxl_pipeline,
             ("sd3", "toy"): tiny_sd3_pipeline, ("sd15", "full"): sd15_full_pipeline,
             ("sdxl", "full"): sdxl_full_pipeline, ("sd3", "full"): sd3_full_pipeline}


def build_pipeline(architecture: str, scale: str = "toy", seed: int = 0, **options):
    """A stock diffusers pipeline of `architecture` (sd15, sdxl, sd3) at `scale` (toy, full), random weights."""
    builder = _BUILDERS.get((architecture, scale))
    if builder is None:
        known = ", ".join(f"{a}/{s}" for a, s in _BUILDERS)
        raise ValueError(f"no {architecture!r} pipeline at scale {scale!r}; built here: {known}")
    return builder(seed=seed, **options)
