"""KL divergence between an audio tagger's label distributions on generated and reference music.

Definition (audiocraft ``metrics/kld.py``, used by MusicGen, VidMuse and the dual-stream paper): a pretrained
AudioSet tagger (PaSST there; AST here, pluggable) gives each clip a distribution over its 527 labels, the
softmax of its logits; per clip pair, KL(p_ref || p_gen) = sum_c p_ref[c] log(p_ref[c] / p_gen[c]) with a small
epsilon inside the log, and the reverse direction KL(p_gen || p_ref); each is averaged over clip pairs.
audiocraft's headline "KLD" (its ``kld_pq``) is KL(p_ref || p_gen), reported here as ``kld_ref_gen``.
Long clips are split into the tagger's native window (10 s for PaSST and AST) and the windows' distributions
averaged into one per clip (audiocraft keeps one per window instead, which needs equal-length pairs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scoring.audio import split_windows

AST_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """KL(p || q) over the last axis: ``[..., C]`` distributions -> ``[...]`` nats (audiocraft's epsilon form)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return np.sum(p * (np.log(p + eps) - np.log(q + eps)), axis=-1)


def kld_both(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean KL in both directions over clip pairs; ``generated``/``reference`` ``[B, C]`` label distributions."""
    if generated.shape != reference.shape:
        raise ValueError(f"KLD: distribution shapes differ ({generated.shape} vs {reference.shape})")
    return {"kld_ref_gen": float(kl_divergence(reference, generated).mean()),
            "kld_gen_ref": float(kl_divergence(generated, reference).mean())}


@dataclass
class ASTTagger:
    """Audio Spectrogram Transformer tagger: 16 kHz ``[samples]`` -> label distribution ``[C]`` (softmax)."""

    model: torch.nn.Module  # transformers ASTForAudioClassification
    feature_extractor: object  # transformers ASTFeatureExtractor
    name: str = "ast"

    @property
    def sample_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def window_samples(self) -> int:
        """The tagger's input length: ``max_length`` frames at a 10 ms hop (1024 -> 10.24 s for AST)."""
        return self.feature_extractor.max_length * self.sample_rate // 100

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> np.ndarray:
        windows = split_windows(wav, self.window_samples, min_size=int(0.15 * self.sample_rate))
        inputs = self.feature_extractor(windows, sampling_rate=self.sample_rate, return_tensors="pt")
        logits = self.model(**inputs).logits  # [windows, C]
        return torch.softmax(logits.float(), dim=-1).mean(dim=0).numpy()


def load_ast_tagger(name_or_path: str = AST_MODEL) -> ASTTagger:
    """AST finetuned on AudioSet from a Hub id or local folder (raises ``OSError`` offline without a cache)."""
    from transformers import ASTFeatureExtractor, ASTForAudioClassification

    model = ASTForAudioClassification.from_pretrained(name_or_path).eval()
    return ASTTagger(model, ASTFeatureExtractor.from_pretrained(name_or_path))
