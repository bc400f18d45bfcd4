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


# ---------------------------------------------------------------------------------------------- with a text prompt
# The cross-attention memory of a model with a text encoder is [video states ; text states] along L (``joint_memory``).
# Dropping one stream zeroes its states and its mask (for the video, also the time-aligned term): the same null as
# above, per stream. Training drops the two independently with ``drop_condition``: first the video (the draw a
# model without text makes), then the text with its own probability, so a sample loses either alone, both or
# neither. Without a prompt the functions above are used unchanged (the video-only path).


def joint_memory(video_states: torch.Tensor, video_mask: torch.Tensor, text_states: torch.Tensor,
                 text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """States [B, Lv, D] + [B, Lt, D] -> [B, Lv + Lt, D]; masks [B, Lv] + [B, Lt] -> [B, Lv + Lt] (video first)."""
    return torch.cat([video_states, text_states], dim=1), torch.cat([video_mask, text_mask.to(video_mask.dtype)], dim=1)


def drop_streams(video: tuple[torch.Tensor, ...], text: tuple[torch.Tensor, ...], p_video: float, p_text: float,
                 generator: torch.Generator | None = None) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Training-time dropout of the video and the text, independent per sample: each alone, both, or neither.

    ``video`` is (states [B, Lv, D], mask [B, Lv][, aligned [B, S, D]]), ``text`` (states [B, Lt, D], mask [B, Lt]).
    """
    video = drop_condition(*video, p=p_video, generator=generator)
    return video, drop_condition(*text, p=p_text, generator=generator)


def with_text_branches(video_states: torch.Tensor, video_mask: torch.Tensor, text_states: torch.Tensor,
                       text_mask: torch.Tensor, aligned: torch.Tensor | None = None) -> tuple[torch.Tensor | None, ...]:
    """The three guidance branches as one batch of 3B rows: video+text, video only (text zeroed), null.

    Returns memory states [3B, Lv + Lt, D], mask [3B, Lv + Lt] and the aligned term [3B, S, D] (or None): the
    video's aligned term in the first two blocks, zeros in the null block.
    """
    states, mask = joint_memory(video_states, video_mask, text_states, text_mask)
    video_only = joint_memory(video_states, video_mask, torch.zeros_like(text_states), torch.zeros_like(text_mask))
    states = torch.cat([states, video_only[0], torch.zeros_like(states)])
    mask = torch.cat([mask, video_only[1], torch.zeros_like(mask)])
    if aligned is not None:
        aligned = torch.cat([aligned, aligned, torch.zeros_like(aligned)])
    return states, mask, aligned


def guided_text_logits(logits: torch.Tensor, scale: float, text_scale: float) -> torch.Tensor:
    """[3B, ...] logits from ``with_text_branches`` inputs -> [B, ...]:
    null + scale * (video - null) + text_scale * (video+text - video)."""
    full, video, null = logits.chunk(3)
    return null + scale * (video - null) + text_scale * (full - video)
