"""Autoregressive sampling of codec codes from the decoder, with the KV cache and batched guidance.

Written out (instead of calling ``generate()``) so the whole path from condition to codes is one readable loop:
one decoder forward per step over [cond; null] rows, guidance mix, top-k/temperature sampling with a seeded
generator, and the delay pattern of ``model.delay`` enforced as tokens are written. ``stock_generate`` keeps
transformers' own ``generate()`` for comparison (tests check both give the same greedy tokens).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from model.delay import delay_positions, undelay_codes
from model.guidance import guided_logits, with_null_branch


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


@torch.no_grad()
def sample_codes(decoder, hidden: torch.Tensor, mask: torch.Tensor, num_frames: int, num_codebooks: int,
                 start_token: int, guidance_scale: float = 1.0, top_k: int = 250, temperature: float = 1.0,
                 generator: torch.Generator | None = None, greedy: bool = False, progress: bool = False) -> torch.Tensor:
    """Sample codes [B, K, T] conditioned on encoder states ``hidden`` [B, L, D] with mask [B, L].

    ``decoder`` is a ``MusicgenForCausalLM`` (possibly peft-wrapped). With ``guidance_scale > 1`` the null branch is
    appended and both run in the same forward ([2B] rows); the KV cache makes each step cost one token per row.
    """
    batch = hidden.shape[0]
    guided = guidance_scale > 1.0
    if guided:
        hidden, mask = with_null_branch(hidden, mask)
    real = delay_positions(num_codebooks, num_frames).to(hidden.device)  # [K, T+K]
    tokens = torch.full((batch, num_codebooks, num_frames + num_codebooks), start_token, dtype=torch.long,
                        device=hidden.device)
    past = None
    for step in tqdm(range(num_frames + num_codebooks - 1), desc="generating", unit="step", disable=not progress,
                     leave=False):
        current = tokens[:, :, step:step + 1]  # [B, K, 1]
        if guided:
            current = torch.cat([current, current])
        out = decoder(input_ids=current.reshape(-1, 1), encoder_hidden_states=hidden, encoder_attention_mask=mask,
                      past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1].reshape(-1, num_codebooks, out.logits.shape[-1])  # [B or 2B, K, V]
        if guided:
            logits = guided_logits(logits, guidance_scale)
        picked = _pick(logits.reshape(batch * num_codebooks, -1), top_k, temperature, generator, greedy)
        tokens[:, :, step + 1] = torch.where(real[:, step + 1], picked.view(batch, num_codebooks), start_token)
    return undelay_codes(tokens, num_frames)


@torch.no_grad()
def stock_generate(decoder, hidden: torch.Tensor, mask: torch.Tensor, num_frames: int, num_codebooks: int,
                   start_token: int, guidance_scale: float = 1.0, greedy: bool = True, **sampling) -> torch.Tensor:
    """The same request through transformers' ``MusicgenForCausalLM.generate`` -> codes [B, K, T] (for comparison).

    transformers 5.23's ``generate`` mis-sizes ``encoder_attention_mask`` once guidance doubles the batch, so the
    mask is not passed: this path is exact only for unpadded conditions (the null rows are all zeros, and attention
    over zero states gives the same output masked or not).
    """
    batch = hidden.shape[0]
    if not bool(mask.all()):
        raise ValueError("stock_generate needs an unpadded condition (mask all ones)")
    if guidance_scale > 1.0:
        hidden, _ = with_null_branch(hidden, mask)
    start = torch.full((batch * num_codebooks, 1), start_token, dtype=torch.long, device=hidden.device)
    out = decoder.generate(input_ids=start, encoder_hidden_states=hidden,
                           max_length=num_frames + num_codebooks, do_sample=not greedy,
                           guidance_scale=guidance_scale if guidance_scale > 1.0 else None,
                           decoder_start_token_id=start_token, pad_token_id=start_token, bos_token_id=start_token,
                           num_return_sequences=1, **sampling)
    return out.reshape(batch, num_codebooks, -1)[:, :, :num_frames]
