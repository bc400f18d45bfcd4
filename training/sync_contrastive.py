"""The contrastive sync term of the generator's training (issue 19's last lever; DESIGN.md §3, MuVi).

Why: the cross-entropy rewards a hit at a cut only as much as any other right token, so the fused video states are
never asked directly *where* the music's onsets are. A trained video-music embedding head
(``training/retrieval_head.py``, ``models/demo-retrieval``) already embeds music on a 0.1 s grid in a way that tells
aligned music from music half a beat off. Here its music tower is frozen, and the time-aligned condition the decoder
reads at every step must, through a small training-only probe, pick its own crop's music out of the batch, and out
of the same music shifted by half a beat (the hard negative):

    aligned condition [B, T, H] (``VideoToMusic.full_condition``, one row per code frame)
        --mean over each 0.1 s step--> [B, S, H] --probe (Linear H -> d)--> video steps [B, S, d]
    music frames [B, 4 S, F] and the half-beat-shifted ones --frozen music tower--> [B, S, d] each

and the loss is the head's own symmetric InfoNCE with those shifted negatives (``training.contrastive.sync_info_nce``,
the head's learned scale). The
probe is trained with the generator and kept in training checkpoints, not in the saved model: inference never runs
it. Gradients reach the fusion (and its time-aligned projection) only.
"""
from __future__ import annotations

import torch
from torch import nn

from model.video_music_embedding import VideoMusicEmbedding, pair_similarity
from training.contrastive import MAX_LOG_SCALE, sync_info_nce

PROBE_PREFIX = "sync_probe."


def load_frozen_head(folder: str, device: torch.device) -> VideoMusicEmbedding:
    """The embedding head of ``folder`` on ``device``, eval mode, every parameter frozen."""
    from model.retrieval_checkpoint import load_head

    head = load_head(folder, device)
    head.requires_grad_(False)
    return head


def pool_steps(aligned: torch.Tensor, frame_rate: float, steps: int) -> torch.Tensor:
    """[B, T, H] per code frame -> [B, steps, H]: the mean over each 0.1 s step (frames past ``steps`` steps are
    left out; a step gets the frames whose time falls in it)."""
    frames = min(aligned.shape[1], max(1, round(steps * frame_rate / 10)))
    pooled = nn.functional.adaptive_avg_pool1d(aligned[:, :frames].transpose(1, 2).float(), steps)  # [B, H, S]
    return pooled.transpose(1, 2)


def sync_contrastive_loss(probe: nn.Module, head: VideoMusicEmbedding, aligned: torch.Tensor, frame_rate: float,
                          music: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The term for one batch, and figures for the log: in-batch accuracy and the share of clips whose own music
    scores above its half-beat shift.

    aligned [B, T, H] (decoder dtype, with gradients); music, shifted [B, 4 S, F] music frames."""
    steps = music.shape[1] // 4
    video = nn.functional.normalize(probe(pool_steps(aligned, frame_rate, steps)), dim=-1)  # [B, S, d]
    with torch.no_grad():
        own, off = head.embed_music(music.float()), head.embed_music(shifted.float())  # [B, S, d] each
    scale = head.logit_scale.clamp(max=MAX_LOG_SCALE).exp()
    loss, accuracy, above_shift = sync_info_nce(pair_similarity(video, own), pair_similarity(video, off), scale)
    return loss, {"sync_accuracy": accuracy, "sync_above_shift": above_shift}
