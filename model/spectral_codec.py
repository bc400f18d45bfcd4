"""A small codec with MusicGen's token interface that can be fitted on 2 CPU cores in minutes (the demo preset).

Why not train an EnCodec here: transformers' ``EncodecModel`` quantizer is inference-only (zero-initialised codebook
buffers, no EMA update, no straight-through gradient); trained from scratch on CPU it gave a drone. Instead:

- encode: log-magnitude STFT frames (n_fft 2048, hop 640 -> 50 Hz at 32 kHz) quantized by a *residual* stack of
  k-means codebooks: codebook k quantizes what codebooks 0..k-1 left over, so codebook 0 is the coarse spectrum
  (the one MusicGen's delay pattern predicts first) and the others refine it;
- decode: sum the chosen centroids -> magnitude -> Griffin-Lim phase reconstruction (torchaudio).

Same members as ``model.codec.EncodecCodec``: ``sample_rate``, ``frame_rate``, ``num_codebooks``, ``codebook_size``,
``encode(wav [B, 1, S]) -> codes [B, K, T]`` and ``decode(codes) -> wav [B, 1, T * hop]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio
from safetensors.torch import load_file, save_file
from torch import nn

LOG_FLOOR = 1e-4  # magnitude floor before the log: about -80 dB, below what the ear notices in music


class SpectralCodec(nn.Module):
    """Residual k-means over log-magnitude STFT frames; ``codebooks`` float [K, C, n_fft // 2 + 1]."""

    def __init__(self, codebooks: torch.Tensor, sample_rate: int = 32000, n_fft: int = 2048, hop: int = 640,
                 griffin_lim_iters: int = 48):
        super().__init__()
        if codebooks.shape[-1] != n_fft // 2 + 1:
            raise ValueError(f"codebooks have {codebooks.shape[-1]} bins, n_fft {n_fft} needs {n_fft // 2 + 1}")
        self.register_buffer("codebooks", codebooks.float())
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.sample_rate, self.n_fft, self.hop, self.griffin_lim_iters = sample_rate, n_fft, hop, griffin_lim_iters
        self.frame_rate = sample_rate // hop
        self.num_codebooks, self.codebook_size = int(codebooks.shape[0]), int(codebooks.shape[1])
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> "SpectralCodec":
        return super().train(False)  # fitted, never trained by gradient

    def log_magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, S] -> log-magnitude frames [B, T, F], T = ceil(S / hop)."""
        frames = -(-wav.shape[-1] // self.hop)
        spec = torch.stft(wav[:, 0].to(self.window.device).float(), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True)  # [B, F, S // hop + 1]
        return spec.abs().clamp_min(LOG_FLOOR).log()[:, :, :frames].transpose(1, 2)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav float [B, 1, S] at ``sample_rate`` -> codes long [B, K, T]."""
        residual = self.log_magnitude(wav)  # [B, T, F]
        codes = []
        for codebook in self.codebooks:  # [C, F]
            index = torch.cdist(residual, codebook[None].expand(residual.shape[0], -1, -1)).argmin(-1)  # [B, T]
            residual = residual - codebook[index]
            codes.append(index)
        return torch.stack(codes, dim=1)

    def reconstruct_log_magnitude(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] -> log-magnitude frames [B, T, F] (sum of the chosen centroids)."""
        return sum(self.codebooks[k][codes[:, k]] for k in range(self.num_codebooks))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes long [B, K, T] -> wav float32 [B, 1, T * hop] (Griffin-Lim, deterministic start).

        The inverse STFT pads by ``n_fft // 2`` on each side, so it needs more than that many samples: music shorter
        than that (a clip of a frame or two) is made from its codes with the last frame held, then cut to length.
        """
        frames = codes.shape[-1]
        if frames == 0:
            return torch.zeros(codes.shape[0], 1, 0)
        shortest = self.n_fft // (2 * self.hop) + 1  # frames whose samples exceed the iSTFT's padding
        if frames < shortest:
            codes = torch.cat([codes, codes[..., -1:].expand(*codes.shape[:2], shortest - frames)], dim=-1)
        magnitude = self.reconstruct_log_magnitude(codes.to(self.window.device).long()).exp().transpose(1, 2)  # [B, F, T]
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)  # centred STFT of T * hop samples: T + 1 frames
        wav = torchaudio.functional.griffinlim(magnitude, self.window, self.n_fft, self.hop, self.n_fft, power=1.0,
                                               n_iter=self.griffin_lim_iters, momentum=0.99,
                                               length=codes.shape[-1] * self.hop, rand_init=False)
        return wav[:, None, :frames * self.hop].float()

    def settings(self) -> dict:
        return {"type": "spectral", "sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop": self.hop,
                "griffin_lim_iters": self.griffin_lim_iters, "num_codebooks": self.num_codebooks,
                "codebook_size": self.codebook_size}

    def save(self, path: str | Path) -> None:
        """Codebooks as float16 safetensors (written to a temporary name, then renamed)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"codebooks": self.codebooks.half().contiguous()}, str(tmp),
                  metadata={k: str(v) for k, v in self.settings().items()})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, griffin_lim_iters: int = 48, sample_rate: int = 32000, n_fft: int = 2048,
             hop: int = 640) -> "SpectralCodec":
        return cls(load_file(str(path))["codebooks"].float(), sample_rate, n_fft, hop, griffin_lim_iters)


def fit_codebooks(frames: np.ndarray, num_codebooks: int, codebook_size: int, seed: int = 0,
                  batch_size: int = 4096) -> torch.Tensor:
    """Residual k-means: log-magnitude frames [N, F] -> codebooks [K, C, F] (scikit-learn MiniBatchKMeans)."""
    from sklearn.cluster import MiniBatchKMeans

    residual = frames.astype(np.float32)
    codebooks = []
    for stage in range(num_codebooks):
        kmeans = MiniBatchKMeans(codebook_size, batch_size=batch_size, n_init=3, random_state=seed + stage,
                                 max_iter=100, reassignment_ratio=0.01).fit(residual)
        centroids = kmeans.cluster_centers_.astype(np.float32)
        residual = residual - centroids[kmeans.predict(residual)]
        codebooks.append(centroids)
    return torch.from_numpy(np.stack(codebooks))
