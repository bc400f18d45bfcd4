"""The video-music embedding: two small towers that map a video and a piece of music onto one time grid of
L2-normalised vectors, so that "how well does this music fit" and "where should it start" are both dot products.

Both towers emit one vector per 0.1 s step (``STEP_RATE``). A video of K steps against music at offset o scores

    score(o) = 1/K * sum_k < v_k , m_(o + k) >        v [K, d], m [S, d], every row L2-normalised

i.e. the cosine of the two flattened, step-normalised sequences. A single pooled vector per clip could not tell
music that is half a beat late from aligned music; a grid of vectors can, and every offset of a long track is one
sliding dot product (``offset_scores``) over music embeddings computed once per track (which the library caches).
Each step still sees about 3 s of context (dilated convolutions), so style — palette vs key, instrument, tempo —
is in every step too.

    video: VideoFeatures --video_grid--> semantic [K, Dc] + motion [K, Dm] --VideoTower--> [K, d]
    music: frames [4 S, F] (model/music_features.py, 40 Hz) --MusicTower (stride 4)--> [S, d]

Training (``training/retrieval_head.py``): symmetric InfoNCE with a learned temperature, plus the same music shifted
by half a beat as hard negatives (MuVi-style sync negatives, DESIGN.md §3). ``use_motion=False`` is the ablation: the
same head with the motion stream left out.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from model.features import VideoFeatures
from model.music_features import FRAME_RATE, MUSIC_FEATURE_DIM

STEP_RATE = 10  # steps per second of the shared grid
FRAMES_PER_STEP = FRAME_RATE // STEP_RATE  # music frames (40 Hz) per step


@dataclass
class EmbeddingConfig:
    """Sizes of the head; ``semantic_dim`` / ``motion_dim`` must match the video encoders that made the features."""

    semantic_dim: int = 64
    motion_dim: int = 30
    music_dim: int = MUSIC_FEATURE_DIM
    width: int = 128
    dim: int = 64
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    use_motion: bool = True
    init_temperature: float = 0.07

    def validate(self) -> "EmbeddingConfig":
        for name in ("semantic_dim", "motion_dim", "music_dim", "width", "dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"embedding.{name} must be positive, got {getattr(self, name)}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"embedding.dilations must be positive integers, got {self.dilations}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def steps_in(seconds: float) -> int:
    """Whole grid steps in ``seconds``."""
    return int(math.floor(seconds * STEP_RATE + 1e-6))


def video_grid(features: VideoFeatures, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample both streams onto the grid: -> semantic [K, Dc], motion [K, Dm] (zeros where there is no motion).

    Step k covers ``[k, k + 1) / STEP_RATE`` s. It takes the last CLIP token sampled at or before its centre, and the
    first flow token stamped at or after its centre (a flow token describes the interval *before* its stamp, so
    that one covers the step; the nearest one can lie before a cut).
    """
    steps = steps_in(features.duration) if steps is None else steps
    centres = (torch.arange(steps, dtype=torch.float32) + 0.5) / STEP_RATE  # [K]
    semantic = features.semantic.float()
    pick = torch.searchsorted(features.semantic_times.float().contiguous(), centres, right=True) - 1
    semantic = semantic[pick.clamp(0, max(semantic.shape[0] - 1, 0))] if semantic.shape[0] else \
        torch.zeros(steps, semantic.shape[-1])
    motion = features.motion.float()
    if motion.shape[0] == 0:
        return semantic, torch.zeros(steps, motion.shape[-1] if motion.dim() == 2 else 0)
    pick = torch.searchsorted(features.motion_times.float().contiguous(), centres - 1e-4)
    return semantic, motion[pick.clamp(0, motion.shape[0] - 1)]


class DilatedBlock(nn.Module):
    """Residual 1-D convolution block over time: [B, C, T] -> [B, C, T] (same length, zero padding)."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, width)
        self.conv = nn.Conv1d(width, width, kernel_size=3, dilation=dilation, padding=dilation)
        self.mix = nn.Conv1d(width, width, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(nn.functional.gelu(self.conv(self.norm(x))))


class ConvStack(nn.Module):
    """Dilated blocks then a projection to the shared space: [B, C, T] -> [B, T, d], each row L2-normalised."""

    def __init__(self, width: int, dim: int, dilations: list[int]):
        super().__init__()
        self.blocks = nn.Sequential(*[DilatedBlock(width, d) for d in dilations])
        self.out = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.blocks(x).transpose(1, 2)  # [B, T, C]
        return nn.functional.normalize(self.out(hidden), dim=-1)


class VideoTower(nn.Module):
    """semantic [B, K, Dc] + motion [B, K, Dm] on the grid -> [B, K, d]."""

    def __init__(self, config: EmbeddingConfig):
        super().__init__()
        self.use_motion = config.use_motion
        self.semantic_in = nn.Linear(config.semantic_dim, config.width)
        self.motion_in = nn.Linear(config.motion_dim, config.width) if config.use_motion else None
        self.stack = ConvStack(config.width, config.dim, config.dilations)

    def forward(self, semantic: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        hidden = self.semantic_in(semantic)  # [B, K, C]
        if self.motion_in is not None:
            hidden = hidden + self.motion_in(motion)
        return self.stack(nn.functional.gelu(hidden).transpose(1, 2))


class MusicTower(nn.Module):
    """music frames [B, 4 S, F] at 40 Hz -> [B, S, d] at 10 Hz (a stride-4 convolution keeps sub-step timing)."""

    def __init__(self, config: EmbeddingConfig):
        super().__init__()
        self.frames_in = nn.Conv1d(config.music_dim, config.width, kernel_size=FRAMES_PER_STEP, stride=FRAMES_PER_STEP)
        self.stack = ConvStack(config.width, config.dim, config.dilations)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        steps = frames.shape[1] // FRAMES_PER_STEP
        x = frames[:, : steps * FRAMES_PER_STEP].transpose(1, 2)  # [B, F, 4 S]
        return self.stack(nn.functional.gelu(self.frames_in(x)))


class VideoMusicEmbedding(nn.Module):
    """Both towers and the learned temperature of the contrastive loss."""

    def __init__(self, config: EmbeddingConfig):
        super().__init__()
        self.config = config.validate()
        self.video = VideoTower(config)
        self.music = MusicTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def embed_video(self, semantic: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """semantic [B, K, Dc], motion [B, K, Dm] -> [B, K, d] (motion is ignored when ``use_motion`` is off)."""
        return self.video(semantic, motion)

    def embed_music(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, 4 S, F] -> [B, S, d]."""
        return self.music(frames)

    @torch.no_grad()
    def embed_features(self, features: VideoFeatures) -> torch.Tensor:
        """One clip's ``VideoFeatures`` -> [K, d] on the grid (K = whole steps of its duration)."""
        semantic, motion = video_grid(features)
        device = self.logit_scale.device
        return self.embed_video(semantic[None].to(device), motion[None].to(device))[0]

    @torch.no_grad()
    def embed_wav(self, wav: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Mono music of any length -> [S, d] (S = whole steps)."""
        from model.music_features import music_features

        frames = torch.from_numpy(music_features(wav, sample_rate))
        if frames.shape[0] < FRAMES_PER_STEP:
            return torch.zeros(0, self.config.dim)
        return self.embed_music(frames[None].to(self.logit_scale.device))[0]


def pair_similarity(video: torch.Tensor, music: torch.Tensor) -> torch.Tensor:
    """Every video against every music of the same length: [B, K, d] x [B', K, d] -> [B, B'] (mean step cosine)."""
    return torch.einsum("ikd,jkd->ij", video, music) / video.shape[1]


def offset_scores(video: torch.Tensor, music: torch.Tensor) -> torch.Tensor:
    """One video [K, d] slid along one track [S, d] -> scores [S - K + 1], entry o = music starting at step o.

    A track shorter than the video (S < K) gets one score: the first S video steps against the whole track.
    """
    steps = video.shape[0]
    if music.shape[0] < steps:
        video, steps = video[: music.shape[0]], music.shape[0]
    if steps == 0:
        return torch.full((1,), float("nan"))
    # conv1d is a sliding dot product: input [1, d, S], weight [1, d, K] -> [1, 1, S - K + 1]
    scores = nn.functional.conv1d(music.T[None].float(), video.T[None].float())
    return scores[0, 0] / steps


def best_window_similarity(video: torch.Tensor, music: torch.Tensor) -> torch.Tensor:
    """Every video [B, K, d] against every music [B', S, d] (S >= K) at every offset, each pair scored by its best
    window: -> [B, B'] (how the command ranks a library, batched)."""
    # each music [B', d, S] filtered by each video [B, d, K] -> [B', B, S - K + 1] sliding mean step cosines
    scores = nn.functional.conv1d(music.transpose(1, 2).float(), video.transpose(1, 2).float()) / video.shape[1]
    return scores.amax(dim=2).T
