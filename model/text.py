"""The optional text prompt: a frozen T5 encoder (MusicGen's own) and a trainable projection to the decoder width.

    prompts (list of str) --tokenizer--> ids [B, Lt], mask [B, Lt] --T5 encoder (frozen)--> [B, Lt, Dt]
    --projection (trainable; MusicGen's ``enc_to_dec_proj`` when the checkpoint has one)--> states [B, Lt, Ddec]

The states go beside the fused video states in the decoder's cross-attention memory (``model.guidance.joint_memory``).
An empty prompt gets an all-zero mask: it is the null text, as in guidance. Built only when ``text.enabled``.

Sources (``TextConfig``): a ``MusicgenForConditionalGeneration`` checkpoint (its ``text_encoder`` and
``enc_to_dec_proj``), a ``T5EncoderModel`` id or folder (a saved model bundles a local encoder this way), or
``random_init`` (tiny preset, tests). Quantized like the decoder (``model.decoder.load_options``). The tokenizer is
``AutoTokenizer`` of the source, or ``"byte"``: ByT5's byte tokenizer, which needs no files (offline tests).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from common.device import Placement, move_module
from common.errors import UserError
from model.config import TOKENIZER_BYTES, DecoderConfig, TextConfig
from model.decoder import load_options

# Kept in full precision when the text encoder is quantized with the decoder's settings: everything of a MusicGen
# checkpoint that is not its T5 encoder is discarded anyway; the projection trains.
TEXT_SKIP_QUANTIZATION = ["audio_encoder", "decoder", "enc_to_dec_proj"]
# Captions whose frozen encoder states are kept, most recently used first out last: T5-base, ~25 tokens x 768 in
# bf16 is ~40 kB a caption, so 4096 of them ~160 MB of accelerator memory; a larger set cycles through the cache.
CACHE_SIZE = 4096


class TextPromptError(UserError):
    """A prompt the model cannot take (no text encoder); one line for the user."""


class TextConditioner(nn.Module):
    """Prompts -> projected text states [B, Lt, Ddec] and mask [B, Lt]. The encoder is frozen; the projection trains."""

    def __init__(self, encoder: nn.Module, projection: nn.Linear, tokenizer, max_tokens: int,
                 tokenizer_name: str | None, cache_size: int = CACHE_SIZE):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.projection = projection
        self.tokenizer, self.max_tokens, self.tokenizer_name = tokenizer, max_tokens, tokenizer_name
        # caption -> frozen encoder states [Lt_i, Dt]: a clip's caption is encoded once per run, not once per step
        self._states: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size

    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    def tokenize(self, prompts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, Lt] and mask [B, Lt] (long) on the CPU; an empty or None prompt has an all-zero mask."""
        texts = [p.strip() if p else "" for p in prompts]
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt")
        ids, mask = encoded["input_ids"], encoded["attention_mask"].long()
        empty = torch.tensor([not t for t in texts])
        return ids, mask.masked_fill(empty[:, None], 0)

    def forward(self, prompts: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected states [B, Lt, Ddec] (fp32, zero at masked tokens, as MusicGen does) and mask [B, Lt]."""
        texts = [p.strip() if p else "" for p in prompts]
        _, mask = self.tokenize(texts)
        mask = mask.to(self.device)
        new = sorted({t for t in texts if t and t not in self._states})
        if new:
            ids, new_mask = self.tokenize(new)
            ids, new_mask = ids.to(self.device), new_mask.to(self.device)
            with torch.no_grad():  # frozen: no activations kept for a backward pass
                hidden = self.encoder(input_ids=ids, attention_mask=new_mask).last_hidden_state
            for text, states, row_mask in zip(new, hidden, new_mask):
                self._states[text] = states[: int(row_mask.sum())].clone()  # not a view of the batch
        hidden = torch.zeros(len(texts), mask.shape[1], self.encoder.config.d_model, device=self.device)
        for row, text in enumerate(texts):
            if text:
                cached = self._states[text]
                self._states.move_to_end(text)
                hidden[row, : len(cached)] = cached.float()
        while len(self._states) > self.cache_size:
            self._states.popitem(last=False)
        states = self.projection(hidden)
        return states * mask[..., None].to(states.dtype), mask

    def place(self, placement: Placement) -> None:
        """The encoder in the decoder's dtype on ``placement.device`` (a bitsandbytes encoder is not moved); the
        projection in fp32, as the fusion. Cached encoder states are dropped (they were on the old device)."""
        self._states.clear()
        if not (getattr(self.encoder, "is_loaded_in_4bit", False) or getattr(self.encoder, "is_loaded_in_8bit", False)):
            move_module(self.encoder, placement.device, placement.decoder)
        move_module(self.projection, placement.device, torch.float32)


def build_text_conditioner(cfg: TextConfig, decoder_cfg: DecoderConfig, decoder_width: int,
                           placement: Placement) -> TextConditioner:
    """The text conditioner of ``cfg``: encoder and projection from the source, or random (seeded by the caller).

    The projection is MusicGen's ``enc_to_dec_proj`` when the checkpoint has one of the right shape, else a fresh
    ``nn.Linear(Dt, Ddec)``; either way it trains and is saved with the trained weights.
    """
    from transformers import AutoConfig, T5Config, T5EncoderModel

    checkpoint_projection = None
    if cfg.random_init is not None:
        encoder = T5EncoderModel(T5Config(**cfg.random_init))
    elif AutoConfig.from_pretrained(cfg.encoder).model_type == "musicgen":
        from transformers import MusicgenForConditionalGeneration

        full = MusicgenForConditionalGeneration.from_pretrained(
            cfg.encoder, **load_options(decoder_cfg, placement, TEXT_SKIP_QUANTIZATION))
        encoder, checkpoint_projection = full.text_encoder, getattr(full, "enc_to_dec_proj", None)
        del full
    else:
        encoder = T5EncoderModel.from_pretrained(cfg.encoder,
                                                 **load_options(decoder_cfg, placement, TEXT_SKIP_QUANTIZATION))
    projection = nn.Linear(encoder.config.d_model, decoder_width)
    if checkpoint_projection is not None and checkpoint_projection.weight.shape == projection.weight.shape:
        projection.load_state_dict({k: v.float() for k, v in checkpoint_projection.state_dict().items()})
    name = tokenizer_name(cfg)
    conditioner = TextConditioner(encoder, projection, load_tokenizer(name, cfg.encoder), cfg.max_tokens, name)
    conditioner.place(placement)
    return conditioner


def tokenizer_name(cfg: TextConfig) -> str | None:
    """``"byte"``, a Hub id or folder, or None (the encoder's own): a random-init encoder has no files, so bytes."""
    if cfg.tokenizer is None and cfg.random_init is not None:
        return TOKENIZER_BYTES
    return cfg.tokenizer


def load_tokenizer(name: str | None, encoder: str):
    """ByT5's byte tokenizer for ``"byte"`` (no files), else ``AutoTokenizer`` of ``name`` or of the encoder."""
    if name == TOKENIZER_BYTES:
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name or encoder)


def prompt_list(prompt: str | list[str] | None, batch: int) -> list[str] | None:
    """One prompt per clip: a string is used for every clip; None stays None (video only)."""
    if prompt is None:
        return None
    prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
    if len(prompts) != batch:
        raise TextPromptError(f"{len(prompts)} prompts for {batch} clips: give one per clip or a single string")
    return prompts
