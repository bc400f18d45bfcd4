"""Temporal cross-attention fusion of the semantic and motion streams, projected to the decoder's hidden size.

Where a frame becomes a token: each stream's features are projected to ``d_fuse`` and given a sinusoidal embedding
of their *timestamp in seconds*, so a flow token at 3.1 s and a CLIP token at 3.0 s look close in time whatever the
sampling rates. Motion tokens then attend to semantic tokens along time (cross-attention: "what kind of scene is
this motion in"), and a few self-attention layers run over the union of both token sets. The result, one token per
input token, is projected to the MusicGen decoder width and read by its cross-attention.

Keeping the semantic tokens in the output sequence means a clip with no motion tokens (a single frame, or the
"w/o motion" ablation) still has a condition, and a batch never contains a fully masked row.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from model.features import FeatureBatch

ALIGNED_OFFSETS = (-1, 0, 1)  # tokens around a decoder step's time that its time-aligned term sees


def timestamp_embedding(times: torch.Tensor, dim: int, max_period: float, min_period: float = 0.05) -> torch.Tensor:
    """Sinusoidal embedding of times in seconds: [B, T] -> [B, T, dim].

    Periods are spaced geometrically from ``min_period`` (resolves 10-20 fps frames) to ``max_period`` (a whole clip),
    unlike token-index embeddings whose meaning depends on the frame rate.
    """
    half = dim // 2
    periods = torch.exp(torch.linspace(math.log(min_period), math.log(max_period), half, device=times.device))
    angles = 2 * math.pi * times[..., None].float() / periods  # [B, T, half]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return nn.functional.pad(embedding, (0, dim - 2 * half))


def drop_streams(batch: FeatureBatch, p: float, generator: torch.Generator | None = None) -> FeatureBatch:
    """Per-stream condition dropout (training only): each clip loses its semantic stream with probability ``p`` and,
    independently, its motion stream.

    Why: trained with both streams always present, the fusion can lean on the picture (the synthetic set's palette
    also predicts its music), so a video that looks like nothing it has seen pushes the condition off its world.
    A dropped semantic stream becomes all-zero features (a "no picture" input: the tokens keep their times, so
    motion still has something to attend to); a dropped motion stream is masked out, exactly the input a clip
    without motion tokens gives. Shapes are unchanged: [B, Tc, Dc] and [B, Tf, Dm].
    """
    size = batch.semantic.shape[0]
    device = batch.semantic.device
    no_picture = torch.rand(size, generator=generator, device=device) < p  # [B]
    no_motion = torch.rand(size, generator=generator, device=device) < p  # [B]
    semantic = batch.semantic.masked_fill(no_picture[:, None, None], 0.0)
    motion_mask = batch.motion_mask & ~no_motion[:, None]
    motion = batch.motion.masked_fill(no_motion[:, None, None], 0.0)
    return FeatureBatch(semantic, batch.semantic_times, batch.semantic_mask, motion, batch.motion_times, motion_mask)


class CrossAttentionBlock(nn.Module):
    """Pre-LayerNorm block: queries attend to a context sequence, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm_query, self.norm_context = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """query [B, Tq, D], context [B, Tc, D], context_mask [B, Tc] (True = real) -> [B, Tq, D]."""
        context = self.norm_context(context)
        attended, _ = self.attention(self.norm_query(query), context, context, key_padding_mask=~context_mask,
                                     need_weights=False)
        query = query + attended
        return query + self.feed_forward(self.norm_ff(query))


class TemporalFusion(nn.Module):
    """(semantic [B, Tc, Dc], motion [B, Tf, Dm], their times and masks) -> (hidden [B, Tf + Tc, Ddec], mask)."""

    def __init__(self, semantic_dim: int, motion_dim: int, decoder_dim: int, d_fuse: int = 256, heads: int = 4,
                 cross_layers: int = 1, self_layers: int = 2, dropout: float = 0.1, use_motion: bool = True,
                 max_period_seconds: float = 60.0, time_aligned: bool = False, stream_dropout: float = 0.0):
        super().__init__()
        self.use_motion, self.d_fuse, self.max_period = use_motion, d_fuse, max_period_seconds
        self.stream_dropout = stream_dropout
        self.semantic_in = nn.Sequential(nn.Linear(semantic_dim, d_fuse), nn.LayerNorm(d_fuse))
        self.motion_in = nn.Sequential(nn.Linear(motion_dim, d_fuse), nn.LayerNorm(d_fuse))
        self.stream_embedding = nn.Parameter(torch.zeros(2, d_fuse))  # tells semantic and motion tokens apart
        self.cross = nn.ModuleList([CrossAttentionBlock(d_fuse, heads, dropout) for _ in range(cross_layers)])
        self.self_attention = nn.ModuleList([
            nn.TransformerEncoderLayer(d_fuse, heads, 4 * d_fuse, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(self_layers)
        ])
        self.norm = nn.LayerNorm(d_fuse)
        self.project = nn.Linear(d_fuse, decoder_dim)
        self.aligned_project = None
        if time_aligned:  # zero-initialised: training starts from the cross-attention-only model
            self.aligned_project = nn.Linear(len(ALIGNED_OFFSETS) * d_fuse, decoder_dim)
            nn.init.zeros_(self.aligned_project.weight), nn.init.zeros_(self.aligned_project.bias)

    def _embed(self, features: torch.Tensor, times: torch.Tensor, proj: nn.Module, stream: int) -> torch.Tensor:
        """[B, T, D_in] + times [B, T] -> [B, T, d_fuse]."""
        time = timestamp_embedding(times, self.d_fuse, self.max_period)
        return proj(features) + time + self.stream_embedding[stream]

    def forward(self, batch: FeatureBatch, num_steps: int = 0,
                frame_rate: float = 50.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Encoder hidden states [B, L, Ddec], their attention mask [B, L] (long, 1 = real token), and — with
        ``time_aligned`` and ``num_steps`` > 0 — the per-step additive term [B, num_steps, Ddec] (step s at s / frame_rate s)."""
        if self.training and self.stream_dropout > 0:
            batch = drop_streams(batch, self.stream_dropout)
        semantic = self._embed(batch.semantic, batch.semantic_times, self.semantic_in, 0)  # [B, Tc, d]
        tokens, mask, times = semantic, batch.semantic_mask, batch.semantic_times
        dense = 0  # how many leading tokens form the densest stream (used for the time-aligned term)
        if self.use_motion and batch.motion.shape[1] > 0:  # some clip has motion tokens (model/features.py)
            motion = self._embed(batch.motion, batch.motion_times, self.motion_in, 1)  # [B, Tf, d]
            for block in self.cross:
                motion = block(motion, semantic, batch.semantic_mask)
            tokens = torch.cat([motion, semantic], dim=1)  # [B, Tf + Tc, d]
            mask = torch.cat([batch.motion_mask, batch.semantic_mask], dim=1)
            times = torch.cat([batch.motion_times, batch.semantic_times], dim=1)
            dense = motion.shape[1]
        for layer in self.self_attention:
            tokens = layer(tokens, src_key_padding_mask=~mask)
        tokens = self.norm(tokens)
        hidden = self.project(tokens) * mask[..., None]  # [B, L, Ddec]
        aligned = None
        if self.aligned_project is not None and num_steps > 0:
            aligned = self._frame_aligned(tokens, mask, times, dense, num_steps, frame_rate)
        return hidden, mask.long(), aligned

    def _frame_aligned(self, tokens, mask, times, dense: int, num_steps: int, frame_rate: float) -> torch.Tensor:
        """[B, L, d] -> [B, num_steps, Ddec]: for each decoder step, the densest stream's tokens around its time.

        Step s (time t = s / frame_rate) predicts the code frame at t, so it must see what happens *at* t. A motion
        token is stamped with the later frame of its pair and describes the interval before it, so the token that
        covers t is the first one stamped at or after t; the nearest token can be the one before a cut. Each step
        gets the covering token and its neighbours (``ALIGNED_OFFSETS``), concatenated: [B, S, 3 d] -> [B, S, Ddec].
        """
        if dense:  # motion tokens when there are any, else the semantic ones
            tokens, mask, times = tokens[:, :dense], mask[:, :dense], times[:, :dense]
        step_times = torch.arange(num_steps, device=tokens.device) / frame_rate - 1e-6  # [S]
        real = mask.sum(dim=1).clamp_min(1)  # [B] real tokens (sorted by time, padding at the end)
        late = times.masked_fill(~mask, float("-inf"))[:, None, :] < step_times[None, :, None]  # [B, S, L]
        covering = torch.minimum(late.sum(-1), real[:, None] - 1)  # [B, S] first token stamped at or after t
        picked = []
        for offset in ALIGNED_OFFSETS:
            index = (covering + offset).clamp_min(0)
            index = torch.minimum(index, real[:, None] - 1)
            picked.append(torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1])))  # [B, S, d]
        has_tokens = mask.any(dim=1)[:, None, None]
        return self.aligned_project(torch.cat(picked, dim=-1)) * has_tokens
