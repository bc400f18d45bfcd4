"""Classifier-free guidance in one place: the null condition, its use as training dropout, and the guided logits.

The null condition is the one MusicGen itself was trained with for "no text": all-zero encoder states with an
all-zero attention mask (and, with the time-aligned term, a zero additive term). Training drops the video
condition to it with probability ``condition_dropout``; inference runs the conditional and null branches as one
batch of 2B and mixes their logits (audiocraft, MusicGen).

Every function takes the condition's tensors in any number ([B, L, D] states, [B, L] mask, [B, S, D] aligned
term, ...), all batch-first, and treats them alike: the null version of each is zeros.
"""
from __future__ import annotations

import torch


def null_condition(*condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The unconditional input with the shapes of ``condition``'s tensors."""
    return tuple(torch.zeros_like(t) for t in condition)


def drop_condition(*condition: torch.Tensor, p: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Training-time dropout: each sample's condition becomes the null condition with probability ``p``."""
    if p <= 0:
        return condition
    drop = torch.rand(condition[0].shape[0], generator=generator, device=condition[0].device) < p  # [B]
    return tuple(torch.where(drop.view(-1, *[1] * (t.dim() - 1)), torch.zeros_like(t), t) for t in condition)


def with_null_branch(*condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """[B, ...] tensors -> [2B, ...]: conditional rows first, null rows second (one batched forward)."""
    return tuple(torch.cat([t, torch.zeros_like(t)]) for t in condition)


def guided_logits(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """[2B, ...] logits from ``with_null_branch`` inputs -> [B, ...]: uncond + scale * (cond - uncond)."""
    conditional, unconditional = logits.chunk(2)
    return unconditional + scale * (conditional - unconditional)
