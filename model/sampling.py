"""Autoregressive sampling of codec codes from the decoder, with a KV cache and batched guidance.

Written out (instead of calling ``generate()``) so the whole path from condition to codes is one readable loop:
one decoder step per generated token over [cond; null] rows, guidance mix, top-k/temperature sampling with a
seeded generator, and the delay pattern of ``model.delay`` enforced as tokens are written.

A step runs through ``model.fast_decoder.FastDecoder`` (static cache, no per-step framework overhead, optional
bf16/int8 weights) when the decoder's projections are plain ``nn.Linear`` layers, else through the decoder's own
transformers forward (``TransformersSteps``: bitsandbytes 4/8-bit bases). ``stock_generate`` keeps transformers'
``generate()`` for comparison; in fp32 all three give the same greedy tokens (tests/test_bench.py).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from model.aligned import aligned_injection
from model.delay import delay_codes, delay_positions, undelay_codes
from model.fast_decoder import FastDecoder, supports
from model.guidance import guided_logits, guided_text_logits, with_null_branch, with_text_branches


class TransformersSteps:
    """One step = the decoder's own forward with transformers' KV cache (the reference path)."""

    def __init__(self, decoder):
        self.decoder = decoder

    def start(self, hidden: torch.Tensor, mask: torch.Tensor, steps: int,
              aligned: torch.Tensor | None = None) -> None:
        self.hidden, self.mask = hidden, mask
        self.past = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.injection = aligned_injection(self.decoder, aligned)  # adds aligned[:, t] at step t
        self.injection.__enter__()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, K] -> logits [N, K, V]."""
        out = self.decoder(input_ids=tokens.reshape(-1, 1), encoder_hidden_states=self.hidden,
                           encoder_attention_mask=self.mask, past_key_values=self.past, use_cache=True)
        self.past = out.past_key_values
        return out.logits[:, -1].reshape(tokens.shape[0], tokens.shape[1], -1)

    def finish(self) -> None:
        self.injection.__exit__(None, None, None)
        self.hidden = self.mask = self.past = self.injection = None


def stepper_for(decoder, precision: str = "float32"):
    """The fastest exact way to step ``decoder``: ``FastDecoder`` if it supports it, else ``TransformersSteps``."""
    if supports(decoder):
        return FastDecoder(decoder, precision)
    if precision != "float32":
        raise ValueError(f"precision {precision!r} needs plain nn.Linear decoder weights (not a bitsandbytes base)")
    return TransformersSteps(decoder)


def _pick(logits: torch.Tensor, top_k: int, temperature: float, generator: torch.Generator | None,
          greedy: bool) -> torch.Tensor:
    """logits [N, V] -> token ids [N]."""
    if greedy:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _prompted_layout(prompt: torch.Tensor | None, batch: int, num_codebooks: int, num_frames: int, start_token: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Delayed tokens [B, K, T+K] (BOS/pad everywhere, the prompt in place) and the prompt's positions [K, T+K]."""
    tokens = torch.full((batch, num_codebooks, num_frames + num_codebooks), start_token, dtype=torch.long,
                        device=device)
    if prompt is None or prompt.shape[-1] == 0:
        return tokens, torch.zeros(num_codebooks, num_frames + num_codebooks, dtype=torch.bool, device=device)
    if prompt.shape[:2] != (batch, num_codebooks) or prompt.shape[-1] >= num_frames:
        raise ValueError(f"prompt must be [{batch}, {num_codebooks}, P < {num_frames}], got {list(prompt.shape)}")
    length = prompt.shape[-1]
    tokens[:, :, :length + num_codebooks] = delay_codes(prompt.to(device), start_token, start_token)
    forced = delay_positions(num_codebooks, length).to(device)  # [K, P+K]
    forced = torch.cat([forced, forced.new_zeros(num_codebooks, num_frames - length)], dim=1)  # [K, T+K]
    return tokens, forced


@torch.no_grad()
def sample_codes(decoder, hidden: torch.Tensor, mask: torch.Tensor, num_frames: int, num_codebooks: int,
                 start_token: int, guidance_scale: float = 1.0, top_k: int = 250, temperature: float = 1.0,
                 generator: torch.Generator | None = None, greedy: bool = False, progress: bool = False,
                 aligned: torch.Tensor | None = None, prompt: torch.Tensor | None = None,
                 text: tuple[torch.Tensor, torch.Tensor] | None = None, text_scale: float = 0.0) -> torch.Tensor:
    """Sample codes [B, K, T] conditioned on encoder states ``hidden`` [B, L, D] with mask [B, L] (and, for models
    with the time-aligned term, ``aligned`` [B, T + K - 1, D] added to step t's input).

    ``prompt`` codes [B, K, P] (P < T) continue earlier music (MusicGen's audio-prompt continuation): they are
    written into the delayed layout as they would have been sampled, the decoder reads them step by step (teacher
    forcing, same cache), and only the other tokens are sampled; the output starts with the prompt exactly.

    ``decoder`` is a ``MusicgenForCausalLM`` (possibly peft-wrapped), or a stepper (``FastDecoder``,
    ``TransformersSteps``) to choose the path. With ``guidance_scale > 1`` the null branch is appended and both run
    in the same step ([2B] rows); the KV cache makes each step cost one token per row.

    ``text`` (states [B, Lt, D], mask [B, Lt]) adds a text prompt: the video+text, video-only and null branches run
    as [3B] rows and mix with ``guidance_scale`` (video) and ``text_scale`` (``model.guidance.guided_text_logits``).
    Without it the path above is taken unchanged.
    """
    steps = decoder if hasattr(decoder, "step") else stepper_for(decoder)
    batch = hidden.shape[0]
    guided = guidance_scale > 1.0
    condition = (hidden, mask) if aligned is None else (hidden, mask, aligned)
    if text is not None:
        condition, rows = with_text_branches(hidden, mask, *text, aligned), 3
    elif guided:
        condition, rows = with_null_branch(*condition), 2
    else:
        rows = 1
    hidden, mask, aligned = (*condition, None)[:3]
    real = delay_positions(num_codebooks, num_frames).to(hidden.device)  # [K, T+K]
    tokens, forced = _prompted_layout(prompt, batch, num_codebooks, num_frames, start_token, hidden.device)
    prompted = range(num_codebooks - 1, 0 if prompt is None else prompt.shape[-1])  # steps whose next step is all prompt
    steps.start(hidden, mask, num_frames + num_codebooks - 1, aligned)
    for step in tqdm(range(num_frames + num_codebooks - 1), desc="generating", unit="step", disable=not progress,
                     leave=False):
        current = tokens[:, :, step]  # [B, K]
        logits = steps.step(torch.cat([current] * rows) if rows > 1 else current)  # [rows x B, K, V]
        if step in prompted:  # the next step is all prompt: nothing to sample (known without reading a tensor)
            continue
        if rows == 3:
            logits = guided_text_logits(logits, guidance_scale, text_scale)
        elif guided:
            logits = guided_logits(logits, guidance_scale)
        picked = _pick(logits.reshape(batch * num_codebooks, -1), top_k, temperature, generator, greedy)
        sampled = torch.where(real[:, step + 1], picked.view(batch, num_codebooks), start_token)
        tokens[:, :, step + 1] = torch.where(forced[:, step + 1], tokens[:, :, step + 1], sampled)
    steps.finish()
    return undelay_codes(tokens, num_frames)


@torch.no_grad()
def stock_generate(decoder, hidden: torch.Tensor, mask: torch.Tensor, num_frames: int, num_codebooks: int,
                   start_token: int, guidance_scale: float = 1.0, greedy: bool = True, **sampling) -> torch.Tensor:
    """The same request through transformers' ``MusicgenForCausalLM.generate`` -> codes [B, K, T] (for comparison).

    Two arguments are needed for ``generate()`` (transformers 5.23) to compute what the model computes in a
    teacher-forced forward (without them greedy tokens agreed with one only ~3 % of the time):

    - ``past_key_values=EncoderDecoderCache(...)``: for a decoder-only class ``generate()`` creates a plain
      ``DynamicCache``, and MusicGen's cross-attention then appends the encoder keys to the same layer's
      *self*-attention cache (it grows by L + 1 per step and the positions drift to step x (L + 1));
    - ``attention_mask`` of ones: ``generate()`` otherwise derives it from ``input_ids != pad_token_id``, and
      MusicGen's BOS *is* its pad id (2048), so the BOS position is masked out of self-attention throughout.

    The encoder mask ([cond; null] rows) is passed as it is; padded conditions are fine.
    """
    batch = hidden.shape[0]
    if guidance_scale > 1.0:
        hidden, mask = with_null_branch(hidden, mask)
    start = torch.full((batch * num_codebooks, 1), start_token, dtype=torch.long, device=hidden.device)
    out = decoder.generate(input_ids=start, attention_mask=torch.ones_like(start), encoder_hidden_states=hidden,
                           encoder_attention_mask=mask,
                           past_key_values=EncoderDecoderCache(DynamicCache(), DynamicCache()),
                           max_length=num_frames + num_codebooks, do_sample=not greedy,
                           guidance_scale=guidance_scale if guidance_scale > 1.0 else None,
                           decoder_start_token_id=start_token, pad_token_id=start_token, bos_token_id=start_token,
                           num_return_sequences=1, **sampling)
    return out.reshape(batch, num_codebooks, -1)[:, :, :num_frames]
