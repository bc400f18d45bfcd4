"""MusicGen's delay pattern: how codec codes [B, K, T] become decoder tokens and back.

Codebook k is delayed by k steps, so at step s the decoder predicts codebook 0 of frame s-1, codebook 1 of frame
s-2, ... — every codebook of a frame is predicted after the coarser ones of that frame. With K = 4, T = 3
(``B`` = BOS, ``P`` = pad, digits = frame index)::

    step:        0  1  2  3  4  5  6
    codebook 0:  B  0  1  2  P  P  P
    codebook 1:  B  P  0  1  2  P  P
    codebook 2:  B  P  P  0  1  2  P
    codebook 3:  B  P  P  P  0  1  2

This is the layout transformers' ``MusicgenForCausalLM.build_delay_pattern_mask`` produces for generation (BOS and
pad are both ``vocab_size`` in the released checkpoints), so training here and sampling agree with the stock
``generate()``. The decoder reads steps 0..T+K-2 and is trained to predict steps 1..T+K-1; pads are not scored.
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100


def delay_positions(num_codebooks: int, num_frames: int) -> torch.Tensor:
    """Bool [K, T + K]: True where a real code sits in the delayed layout (frame t of codebook k at step 1 + k + t)."""
    steps = torch.arange(num_frames + num_codebooks)
    start = 1 + torch.arange(num_codebooks)[:, None]
    return (steps >= start) & (steps < start + num_frames)


def delay_codes(codes: torch.Tensor, bos: int, pad: int) -> torch.Tensor:
    """codes [B, K, T] -> delayed tokens [B, K, T + K] (step 0 is BOS, see the module docstring)."""
    batch, num_codebooks, num_frames = codes.shape
    tokens = torch.full((batch, num_codebooks, num_frames + num_codebooks), pad, dtype=torch.long, device=codes.device)
    tokens[:, :, 0] = bos
    for k in range(num_codebooks):
        tokens[:, k, 1 + k: 1 + k + num_frames] = codes[:, k]
    return tokens


def undelay_codes(tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Delayed tokens [B, K, >= T + K] -> codes [B, K, T]; inverse of ``delay_codes``."""
    num_codebooks = tokens.shape[1]
    return torch.stack([tokens[:, k, 1 + k: 1 + k + num_frames] for k in range(num_codebooks)], dim=1)


def training_pair(codes: torch.Tensor, bos: int, pad: int,
                  lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """codes [B, K, T] (and real lengths in frames [B]) -> (decoder inputs [B, K, T+K-1], labels [B, K, T+K-1]).

    Labels are the inputs shifted by one step; pads and frames at or past a clip's length are ``IGNORE_INDEX``.
    """
    batch, num_codebooks, num_frames = codes.shape
    tokens = delay_codes(codes, bos, pad)
    real = delay_positions(num_codebooks, num_frames).to(codes.device)[None]  # [1, K, T+K]
    if lengths is not None:
        steps = torch.arange(num_frames + num_codebooks, device=codes.device)
        frame = steps[None, :] - 1 - torch.arange(num_codebooks, device=codes.device)[:, None]  # [K, T+K]
        real = real & (frame[None] < lengths.to(codes.device)[:, None, None])  # [B, K, T+K]
    labels = tokens.masked_fill(~real, IGNORE_INDEX)
    return tokens[:, :, :-1], labels[:, :, 1:]
