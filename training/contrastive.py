"""The retrieval head's objective: symmetric InfoNCE over the batch, with sync hard negatives.

For B video crops v_i [C, d] and the aligned music crops m_i [C, d] of the same clips, plus the same music shifted
by half a beat m~_i (DESIGN.md §3: MuVi's sync negatives — a non-whole number of beats, so the shifted music does
not line up with the beat grid again):

    video -> music: softmax over [ s(v_i, m_1..m_B) , s(v_i, m~_1..m~_B) ] * scale, target m_i
    music -> video: softmax over  s(v_1..v_B, m_j) * scale,                          target v_j

s is the mean step cosine of ``model.video_music_embedding.pair_similarity``; ``scale`` = exp(learned log scale),
capped at 100 as in CLIP.

    CropBatch: semantic [B, C, Dc], motion [B, C, Dm] (video crops), music [B, T, F] (whole clips, 40 Hz),
               start [B] and shifted [B] (music steps where the aligned and the shifted crops begin)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from data.retrieval_pairs import ClipPair
from model.video_music_embedding import STEP_RATE, VideoMusicEmbedding, pair_similarity

MAX_LOG_SCALE = math.log(100.0)
SHIFT_BEATS = 0.5


@dataclass
class CropBatch:
    semantic: torch.Tensor
    motion: torch.Tensor
    music: torch.Tensor
    start: torch.Tensor
    shifted: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "CropBatch":
        return CropBatch(*(getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)))


def shift_steps(beat: float) -> int:
    """Half a beat in grid steps (at least one step)."""
    return max(1, round(SHIFT_BEATS * beat * STEP_RATE))


def make_crops(pairs: list[ClipPair], crop_steps: int, rng: np.random.Generator) -> CropBatch:
    """Random ``crop_steps`` crops of ``pairs`` and where their aligned / half-beat-shifted music begins.

    Every clip's music is trimmed to the batch's shortest (whole steps), so the tower sees one tensor.
    """
    music_steps = min(min(p.music.shape[0] // 4, p.semantic.shape[0]) for p in pairs)
    semantic, motion, starts, shifted = [], [], [], []
    for pair in pairs:
        delta = shift_steps(pair.beat)
        start = int(rng.integers(0, music_steps - crop_steps + 1))
        sign = rng.choice([-1, 1])
        if not 0 <= start + sign * delta <= music_steps - crop_steps:
            sign = -sign
        semantic.append(pair.semantic[start:start + crop_steps]), motion.append(pair.motion[start:start + crop_steps])
        starts.append(start), shifted.append(start + sign * delta)
    music = torch.stack([p.music[: music_steps * 4] for p in pairs])
    return CropBatch(torch.stack(semantic), torch.stack(motion), music, torch.tensor(starts), torch.tensor(shifted))


def gather_steps(sequence: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """[B, S, d] and starts [B] -> [B, length, d]: each row's window starting at its own step."""
    index = starts[:, None] + torch.arange(length, device=starts.device)[None]  # [B, length]
    return torch.gather(sequence, 1, index[..., None].expand(-1, -1, sequence.shape[-1]))


def sync_info_nce(sim: torch.Tensor, sim_shifted: torch.Tensor, scale: torch.Tensor
                  ) -> tuple[torch.Tensor, float, float]:
    """The symmetric InfoNCE above from the pair similarities [B, B] of video i with aligned music j and with shifted
    music j: (loss, in-batch accuracy, share of clips whose own music scores above its shift). Also the
    generator's contrastive sync term (``training/sync_contrastive.py``)."""
    target = torch.arange(sim.shape[0], device=sim.device)
    video_to_music = nn.functional.cross_entropy(scale * torch.cat([sim, sim_shifted], dim=1), target)
    music_to_video = nn.functional.cross_entropy(scale * sim.T, target)
    accuracy = (sim.argmax(dim=1) == target).float().mean().item()
    above_shift = (sim.diagonal() > sim_shifted.diagonal()).float().mean().item()
    return (video_to_music + music_to_video) / 2, accuracy, above_shift


def contrastive_loss(head: VideoMusicEmbedding, batch: CropBatch) -> tuple[torch.Tensor, dict]:
    """The loss of one batch, and figures for the log (in-batch accuracy, share of aligned > shifted)."""
    crop = batch.semantic.shape[1]
    video = head.embed_video(batch.semantic, batch.motion)  # [B, C, d]
    music = head.embed_music(batch.music)  # [B, S, d] whole clips, as a library track is embedded
    aligned, shifted = gather_steps(music, batch.start, crop), gather_steps(music, batch.shifted, crop)
    scale = head.logit_scale.clamp(max=MAX_LOG_SCALE).exp()
    loss, accuracy, above_shift = sync_info_nce(pair_similarity(video, aligned), pair_similarity(video, shifted), scale)
    return loss, {"accuracy": accuracy, "sync": above_shift}
