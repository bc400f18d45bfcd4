"""Audio embedders for FAD: each maps mono audio ``[samples]`` at ``sample_rate`` to frames ``[T, D]``.

An embedder is any object with ``name``, ``sample_rate`` and ``__call__(wav) -> [T, D]``; FAD pools the frames.
Which embedder is used changes the numbers completely, so reports name it:

- ``vggish`` (``scoring.vggish``): the papers' choice; needs the published weights.
- ``clap`` (``scoring.clap``): LAION CLAP audio embeddings through transformers; needs the Hub weights.
- ``codec``: continuous codec latents (as fadtk's ``encodec-emb``): any ``encode_embeddings(wav) -> [T, D]``
  callable, e.g. the project's own codec, or a transformers ``EncodecModel`` via ``encodec_encode_fn``.
- ``mel``: log-mel statistics, **weight-free** and always available; a sanity check that moves with timbre and
  loudness, not a perceptual embedding: never compare it with published FAD numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import librosa
import numpy as np
import torch

from scoring.audio import split_windows


@dataclass
class MelStatsEmbedder:
    """Weight-free embedder: per ``window_seconds`` window, mean and std of each log-mel band -> ``[T, 2 * n_mels]``."""

    name: str = "mel"
    sample_rate: int = 16_000
    n_mels: int = 64
    window_seconds: float = 1.0

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=wav, sr=self.sample_rate, n_fft=512, hop_length=160,
                                             n_mels=self.n_mels, fmin=60.0, fmax=self.sample_rate / 2)
        log_mel = np.log(mel + 1e-6)  # [n_mels, frames]
        per_window = max(1, round(self.window_seconds * self.sample_rate / 160))
        chunks = [log_mel[:, i:i + per_window] for i in range(0, log_mel.shape[1], per_window)]
        chunks = [c for c in chunks if c.shape[1] >= per_window // 2] or chunks[:1]
        return np.stack([np.concatenate([c.mean(axis=1), c.std(axis=1)]) for c in chunks]).astype(np.float32)


@dataclass
class CodecEmbedder:
    """Codec-latent embedder around ``encode_fn(wav [samples] float32) -> [T, D]`` at ``sample_rate``.

    ``encode_fn`` should return the codec's continuous latents (before quantisation), one row per codec frame.
    """

    encode_fn: Callable[[np.ndarray], np.ndarray | torch.Tensor]
    sample_rate: int
    name: str = "codec"

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        frames = self.encode_fn(np.asarray(wav, dtype=np.float32))
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().float().cpu().numpy()
        if frames.ndim != 2:
            raise ValueError(f"codec encode_fn must return [T, D] frames; got shape {frames.shape}")
        return frames.astype(np.float32)


def encodec_encode_fn(model: torch.nn.Module, max_seconds: float = 30.0) -> Callable[[np.ndarray], torch.Tensor]:
    """``encode_fn`` for a transformers ``EncodecModel``: encoder latents ``[T, D]`` (fadtk's ``encodec-emb``).

    Long audio is encoded in ``max_seconds`` windows to bound memory; the frames are concatenated.
    """
    rate = model.config.sampling_rate

    @torch.no_grad()
    def encode(wav: np.ndarray) -> torch.Tensor:
        frames = []
        for piece in split_windows(wav, int(max_seconds * rate), min_size=model.config.hop_length):
            x = torch.from_numpy(np.ascontiguousarray(piece))[None, None]  # [1, 1, samples]
            frames.append(model.encoder(x)[0].T)  # [D, T] -> [T, D]
        return torch.cat(frames)

    return encode


def load_codec_embedder(name_or_path: str = "facebook/encodec_32khz") -> CodecEmbedder:
    """EnCodec latents from a transformers ``EncodecModel`` folder or Hub id (raises ``OSError`` offline)."""
    from transformers import EncodecModel

    model = EncodecModel.from_pretrained(name_or_path).eval()
    return CodecEmbedder(encodec_encode_fn(model), model.config.sampling_rate, name="codec")
