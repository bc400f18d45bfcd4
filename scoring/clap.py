"""CLAP embeddings (Wu et al., "Large-scale Contrastive Language-Audio Pretraining", 2023) and the CLAP score.

Used two ways: as a FAD embedder (one 512-d vector per 10 s window, FAD pooled over windows) and for the CLAP
score, the cosine similarity between a generated clip's embedding and a reference clip's (audio-audio) or its
text's (audio-text), as in stable-audio-metrics. Weights: ``laion/clap-htsat-unfused`` through transformers'
``ClapModel`` (a Hub download; pass a local folder to work offline).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scoring.audio import split_windows

CLAP_MODEL = "laion/clap-htsat-unfused"


@dataclass
class ClapEmbedder:
    """48 kHz mono ``[samples]`` -> ``[N, D]`` L2-normalised CLAP audio embeddings, one per ``window_seconds``."""

    model: torch.nn.Module  # transformers ClapModel
    feature_extractor: object  # transformers ClapFeatureExtractor
    tokenizer: object | None = None
    name: str = "clap"
    window_seconds: float = 10.0

    @property
    def sample_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> np.ndarray:
        windows = split_windows(wav, int(self.window_seconds * self.sample_rate), min_size=self.sample_rate)
        inputs = self.feature_extractor(windows, sampling_rate=self.sample_rate, return_tensors="pt")
        out = self.model.get_audio_features(**inputs)
        out = getattr(out, "pooler_output", out)  # transformers 5 returns a model output, 4 a tensor
        return torch.nn.functional.normalize(out, dim=-1).numpy()

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """``len(texts)`` strings -> ``[len(texts), D]`` L2-normalised CLAP text embeddings."""
        if self.tokenizer is None:
            raise ValueError("this CLAP embedder was built without a tokenizer; text embeddings need one")
        inputs = self.tokenizer(texts, padding=True, return_tensors="pt")
        out = self.model.get_text_features(**inputs)
        out = getattr(out, "pooler_output", out)
        return torch.nn.functional.normalize(out, dim=-1).numpy()


def clap_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two clips' mean embeddings; ``a`` ``[N, D]``, ``b`` ``[M, D]`` (or ``[D]``) -> [-1, 1].

    A clip's embedding is the normalised mean of its window embeddings (stable-audio-metrics averages
    windows the same way for long audio).
    """
    mean_a, mean_b = np.atleast_2d(a).mean(axis=0), np.atleast_2d(b).mean(axis=0)
    denom = np.linalg.norm(mean_a) * np.linalg.norm(mean_b)
    return float(mean_a @ mean_b / denom) if denom > 0 else 0.0


def load_clap(name_or_path: str = CLAP_MODEL) -> ClapEmbedder:
    """CLAP model, feature extractor and tokenizer from a Hub id or local folder (raises ``OSError`` offline)."""
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    model = ClapModel.from_pretrained(name_or_path).eval()
    return ClapEmbedder(model, ClapFeatureExtractor.from_pretrained(name_or_path),
                        AutoTokenizer.from_pretrained(name_or_path))
