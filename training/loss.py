"""The training objective: MusicGen's cross-entropy over the codebooks, optionally weighted per step.

    loss = codebook_cross_entropy(*model(features, codes, lengths, condition_dropout=p), weights)

``weights`` are the beat-weighted loss of DESIGN.md §3 (``training/beat_weights.py``); padding and the delay
pattern's filler positions carry the label ``IGNORE_INDEX`` and are never scored.
"""
from __future__ import annotations

import torch
from torch import nn

from model.delay import IGNORE_INDEX


def codebook_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over codebooks of the cross-entropy (MusicGen's objective).

    logits [B, K, S, V], labels [B, K, S] (``IGNORE_INDEX`` not scored), weights [B, K, S] optional per-step
    weights, on the labels' device (a batch moves to the device whole: ``training.batches.Batch.to``).
    """
    per_token = nn.functional.cross_entropy(logits.permute(0, 3, 1, 2).float(), labels.clamp_min(0),
                                            reduction="none")  # [B, K, S]
    scored = (labels != IGNORE_INDEX).float()
    if weights is not None:
        scored = scored * weights
    per_codebook = (per_token * scored).sum(dim=(0, 2)) / scored.sum(dim=(0, 2)).clamp_min(1e-8)  # [K]
    return per_codebook.mean()
