"""The contract between the two streams and the fusion: features with timestamps, padded into batches with masks.

Each stream returns its tokens *and* when they happened (seconds from the clip start). Fusion embeds those times,
so streams sampled at different rates (CLIP at 2 fps, flow at 10 fps) line up without resampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class VideoFeatures:
    """Features of one clip (numpy or torch, CPU).

    semantic:       [Tc, Dc]  CLIP image embeddings (L2-normalised), one per sampled frame
    semantic_times: [Tc]      seconds
    motion:         [Tf, Dm]  optical-flow features, one per consecutive frame pair (Tf may be 0)
    motion_times:   [Tf]      seconds (time of the later frame of each pair)
    duration:       seconds of video the features cover
    """

    semantic: torch.Tensor
    semantic_times: torch.Tensor
    motion: torch.Tensor
    motion_times: torch.Tensor
    duration: float

    def without_motion(self) -> "VideoFeatures":
        """The "w/o motion" condition: the motion stream removed, the semantic stream kept."""
        empty = self.motion[:0]
        return VideoFeatures(self.semantic, self.semantic_times, empty, self.motion_times[:0], self.duration)

    def crop(self, start: float, seconds: float) -> "VideoFeatures":
        """Tokens with ``start <= t < start + seconds``, times shifted so the crop starts at 0."""
        keep_s = (self.semantic_times >= start) & (self.semantic_times < start + seconds)
        keep_m = (self.motion_times >= start) & (self.motion_times < start + seconds)
        return VideoFeatures(self.semantic[keep_s], self.semantic_times[keep_s] - start,
                             self.motion[keep_m], self.motion_times[keep_m] - start,
                             min(seconds, max(0.0, self.duration - start)))

    @staticmethod
    def from_arrays(semantic, semantic_times, motion, motion_times, duration: float) -> "VideoFeatures":
        """Build from numpy arrays or lists (e.g. a cached dataset row); floats become float32 tensors."""
        def tensor(x, dims):
            t = torch.as_tensor(np.asarray(x, dtype=np.float32))
            return t.reshape(0, *([0] * (dims - 1))) if t.numel() == 0 and t.dim() < dims else t

        return VideoFeatures(tensor(semantic, 2), tensor(semantic_times, 1), tensor(motion, 2),
                             tensor(motion_times, 1), float(duration))


@dataclass
class FeatureBatch:
    """Padded batch of ``VideoFeatures``; masks are True where a token is real.

    semantic [B, Tc, Dc], semantic_times [B, Tc], semantic_mask [B, Tc],
    motion [B, Tf, Dm], motion_times [B, Tf], motion_mask [B, Tf].
    """

    semantic: torch.Tensor
    semantic_times: torch.Tensor
    semantic_mask: torch.Tensor
    motion: torch.Tensor
    motion_times: torch.Tensor
    motion_mask: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "FeatureBatch":
        return FeatureBatch(*(getattr(self, f).to(device, non_blocking=non_blocking) for f in self.__dataclass_fields__))

    def pin_memory(self) -> "FeatureBatch":
        return FeatureBatch(*(getattr(self, f).pin_memory() for f in self.__dataclass_fields__))


def _pad(seqs: list[torch.Tensor], dim: int, min_length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """list of [T_i, dim] -> ([B, T_max, dim] zero-padded, [B, T_max] bool mask); T_max >= ``min_length``."""
    t_max = max(min_length, max(s.shape[0] for s in seqs))
    out = torch.zeros(len(seqs), t_max, dim)
    mask = torch.zeros(len(seqs), t_max, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s.float().reshape(s.shape[0], dim)
        mask[i, : s.shape[0]] = True
    return out, mask


def collate_features(items: list[VideoFeatures], semantic_dim: int, motion_dim: int) -> FeatureBatch:
    """Pad a list of clips into one ``FeatureBatch`` (dims are passed so empty streams still have a width)."""
    semantic, semantic_mask = _pad([f.semantic for f in items], semantic_dim)
    semantic_times, _ = _pad([f.semantic_times[:, None] for f in items], 1)
    # no clip with motion tokens: a motion stream of length 0 (fusion skips it without reading a tensor)
    motion, motion_mask = _pad([f.motion for f in items], motion_dim, min_length=0)
    motion_times, _ = _pad([f.motion_times[:, None] for f in items], 1, min_length=0)
    return FeatureBatch(semantic, semantic_times[..., 0], semantic_mask, motion, motion_times[..., 0], motion_mask)
