"""Classifier-free guidance in one place: the null condition, its use as training dropout, and the guided logits.

The null condition is the one MusicGen itself was trained with for "no text": all-zero encoder states with an
all-zero attention mask. Training drops the video condition to it with probability ``condition_dropout``;
inference runs the conditional and null branches as one batch of 2B and mixes their logits (audiocraft, MusicGen).
"""
from __future__ import annotations

import torch


def null_condition(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The unconditional input with the shapes of ``hidden`` [B, L, D] and ``mask`` [B, L]."""
    return torch.zeros_like(hidden), torch.zeros_like(mask)


def drop_condition(hidden: torch.Tensor, mask: torch.Tensor, p: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time dropout: each sample's condition becomes the null condition with probability ``p``."""
    if p <= 0:
        return hidden, mask
    drop = torch.rand(hidden.shape[0], generator=generator, device=hidden.device) < p  # [B]
    null_hidden, null_mask = null_condition(hidden, mask)
    return (torch.where(drop[:, None, None], null_hidden, hidden),
            torch.where(drop[:, None], null_mask, mask))


def with_null_branch(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L, D], [B, L] -> [2B, L, D], [2B, L]: conditional rows first, null rows second (one batched forward)."""
    null_hidden, null_mask = null_condition(hidden, mask)
    return torch.cat([hidden, null_hidden]), torch.cat([mask, null_mask])


def guided_logits(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """[2B, ...] logits from ``with_null_branch`` inputs -> [B, ...]: uncond + scale * (cond - uncond)."""
    conditional, unconditional = logits.chunk(2)
    return unconditional + scale * (conditional - unconditional)
