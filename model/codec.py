"""The audio codec behind MusicGen's token interface: waveform <-> codes [B, K, T] at ``frame_rate`` Hz.

Where a token becomes sound: ``decode``. The real presets use the EnCodec (32 kHz, 4 codebooks x 2048, 50 Hz)
shipped inside the MusicGen checkpoint; the tiny preset uses a random EnCodec of the same class. Any codec with
these five members can stand in (a later issue adds a small one trained here).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import EncodecModel


class EncodecCodec(nn.Module):
    """Frozen transformers ``EncodecModel`` with the codes laid out as the decoder uses them."""

    def __init__(self, model: EncodecModel):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        config = model.config
        self.sample_rate = int(config.sampling_rate)
        self.frame_rate = int(config.frame_rate)
        self.num_codebooks = int(config.num_quantizers)
        self.codebook_size = int(config.codebook_size)

    def train(self, mode: bool = True) -> "EncodecCodec":
        return super().train(False)  # frozen

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav float [B, 1, S] at ``sample_rate`` (any device) -> codes long [B, K, T] on the codec's device."""
        weight = next(self.model.parameters())
        encoded = self.model.encode(wav.to(device=weight.device, dtype=weight.dtype), bandwidth=None)
        return encoded.audio_codes[0]  # [chunks=1, B, K, T] -> [B, K, T]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes long [B, K, T] -> wav float32 [B, 1, S]."""
        audio = self.model.decode(codes[None].to(next(self.model.parameters()).device), [None]).audio_values
        return audio.float()
