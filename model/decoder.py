"""Build the MusicGen decoder (optionally 4/8-bit, with LoRA) and its EnCodec from a ``DecoderConfig``.

Real presets load a ``MusicgenForConditionalGeneration`` checkpoint (Hub id or folder) and keep two of its three
parts: the decoder (``MusicgenForCausalLM``, which reads ``encoder_hidden_states`` at its own width) and the
EnCodec. The T5 text encoder is dropped: our condition is the fused video sequence.
"""
from __future__ import annotations

import sys

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model, prepare_model_for_kbit_training
from torch import nn
from transformers import (BitsAndBytesConfig, EncodecConfig, EncodecModel, MusicgenConfig, MusicgenDecoderConfig,
                          MusicgenForCausalLM, MusicgenForConditionalGeneration, T5Config)

from common.device import Placement, move_module, placement_for
from model.codec import EncodecCodec
from model.config import ConfigError, DecoderConfig, LoraConfig
from model.errors import CheckpointError
from model.spectral_codec import SpectralCodec

# Modules kept in full precision when the decoder is quantized: the output heads and token embeddings are small
# and sensitive; the codec and text encoder are not part of the decoder. Names are full paths in the checkpoint
# (a decoder-only checkpoint has no "decoder." prefix).
SKIP_QUANTIZATION = ["text_encoder", "audio_encoder", "enc_to_dec_proj", "decoder.lm_heads",
                     "decoder.model.decoder.embed_tokens", "lm_heads", "model.decoder.embed_tokens"]


def random_musicgen(sizes: dict, seed: int = 0) -> MusicgenForConditionalGeneration:
    """A randomly initialised MusicGen of the same classes, from ``sizes = {decoder: {...}, codec: {...}}`` (config fields).

    Seeded, so the project's untrained default model is the same on every machine.
    """
    decoder = MusicgenDecoderConfig(**{"num_codebooks": 4, **sizes.get("decoder", {})})
    decoder.pad_token_id = decoder.bos_token_id = decoder.decoder_start_token_id = decoder.vocab_size
    codec = EncodecConfig(**{"sampling_rate": 32000, "audio_channels": 1, **sizes.get("codec", {})})
    text = T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    config = MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=decoder)
    config.decoder_start_token_id = config.pad_token_id = decoder.vocab_size
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MusicgenForConditionalGeneration(config).eval()
        _randomise_codebooks(model.audio_encoder)
    return model


@torch.no_grad()
def _randomise_codebooks(codec: EncodecModel) -> None:
    """EnCodec's codebooks are zero-initialised buffers (filled only by pretrained weights), so a random codec would
    decode every code to the same sound; random codebooks make different codes sound different."""
    for layer in codec.quantizer.layers:
        layer.codebook.embed.normal_()


def base_model(decoder: nn.Module) -> nn.Module:
    """The ``MusicgenForCausalLM`` inside a peft wrapper (or the decoder itself)."""
    return decoder.get_base_model() if hasattr(decoder, "get_base_model") else decoder


def _quantization(bits: str, compute_dtype: torch.dtype,
                  skip: list[str] = SKIP_QUANTIZATION) -> BitsAndBytesConfig | None:
    if bits == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=skip)
    if bits == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return None


def load_options(cfg: DecoderConfig, placement: Placement, skip: list[str] = SKIP_QUANTIZATION) -> dict:
    """``from_pretrained`` arguments: dtype, and for a bitsandbytes base its config and an explicit device map
    (without one the base could land on ``cuda:0`` while the rest of the model sits elsewhere). ``skip``: module
    names kept in full precision (``model.text`` quantizes the T5 encoder with the same call)."""
    bits = cfg.quantization if cfg.quantization != "none" else placement.quantization
    options = {"dtype": placement.decoder}
    if bits != "none":
        options.update(quantization_config=_quantization(bits, placement.decoder, skip),
                       device_map={"": placement.device})
    return options


def load_musicgen(cfg: DecoderConfig, placement: Placement | None = None) -> tuple[MusicgenForCausalLM, nn.Module]:
    """(decoder, codec) per ``cfg``, the decoder stored as ``placement`` says (dtype; bitsandbytes 4/8-bit base
    on its device); the codec is wrapped to the token interface of ``model.codec`` and kept in fp32.

    - EnCodec (``cfg.codec`` is None): both from a ``MusicgenForConditionalGeneration`` — ``cfg.random_init`` or
      ``cfg.base`` (Hub id or local folder; weights download once).
    - Spectral codec (demo): the codec from ``cfg.codec["weights"]``; the decoder from ``cfg.random_init`` or from
      ``cfg.base``, a ``MusicgenForCausalLM`` folder (e.g. pretrained here on music alone).
    """
    placement = placement or placement_for("cpu", "fp32")
    if cfg.codec is not None:
        return _decoder_only(cfg, placement), _spectral_codec(cfg.codec)
    if cfg.random_init is not None:
        _refuse_random_quantized(cfg)
        full = random_musicgen(cfg.random_init)
        decoder = full.decoder
        move_module(decoder, dtype=placement.decoder)
    else:
        full, info = MusicgenForConditionalGeneration.from_pretrained(cfg.base, output_loading_info=True,
                                                                      **load_options(cfg, placement))
        _report_loading(cfg.base, info, strict=False)
        decoder = full.decoder
    codec = full.audio_encoder
    move_module(codec, dtype=torch.float32)
    del full.text_encoder
    return decoder, EncodecCodec(codec)


def _refuse_random_quantized(cfg: DecoderConfig) -> None:
    if cfg.quantization != "none":
        raise ConfigError("decoder.quantization needs a checkpoint to quantize while loading (bitsandbytes); a "
                          "random_init decoder must be saved first (see bench/gpu_check.py)")


def _decoder_only(cfg: DecoderConfig, placement: Placement) -> MusicgenForCausalLM:
    if cfg.random_init is not None:
        _refuse_random_quantized(cfg)
        config = MusicgenDecoderConfig(**{"num_codebooks": 4, **cfg.random_init.get("decoder", {})})
        config.pad_token_id = config.bos_token_id = config.decoder_start_token_id = config.vocab_size
        decoder = MusicgenForCausalLM(config).eval()
        move_module(decoder, dtype=placement.decoder)
        return decoder
    decoder, info = MusicgenForCausalLM.from_pretrained(cfg.base, output_loading_info=True,
                                                        **load_options(cfg, placement))
    _report_loading(cfg.base, info, strict=True)  # a decoder folder written by this project: exact keys
    return decoder.eval()


def _report_loading(source: str, info: dict, strict: bool) -> None:
    """Missing or unexpected weights are the only sign of a broken checkpoint: an error for our own folders, a
    warning (never silenced) for a Hub checkpoint."""
    missing = [k for k in info.get("missing_keys", []) if "embed_positions" not in k]  # sinusoids: not stored
    unexpected = list(info.get("unexpected_keys", []))
    if not (missing or unexpected):
        return
    message = f"{source}: checkpoint weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
    if strict:
        raise CheckpointError(message)
    print(f"warning: {message}", file=sys.stderr)


def _spectral_codec(settings: dict) -> SpectralCodec:
    options = {k: settings[k] for k in ("sample_rate", "n_fft", "hop", "griffin_lim_iters") if k in settings}
    return SpectralCodec.load(settings["weights"], **options)


def place_decoder(decoder: nn.Module, placement: Placement) -> None:
    """Move a decoder to ``placement.device`` (its storage dtype was chosen when it was loaded; a bitsandbytes
    base was loaded onto its device and is not moved)."""
    if not (getattr(decoder, "is_loaded_in_4bit", False) or getattr(decoder, "is_loaded_in_8bit", False)):
        move_module(decoder, placement.device)


def add_lora(decoder: MusicgenForCausalLM, lora: LoraConfig, quantized: bool, gradient_checkpointing: bool):
    """Freeze the decoder and wrap it with peft LoRA adapters on ``lora.targets`` (module-name suffixes)."""
    decoder.requires_grad_(False)
    if quantized:
        decoder = prepare_model_for_kbit_training(decoder, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                 target_modules=list(lora.targets), bias="none")
    return get_peft_model(decoder, peft_config)
