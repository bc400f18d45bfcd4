"""Fréchet Audio Distance (FAD): distance between Gaussian fits of two sets of audio embeddings.

Definition (Kilgour et al., "Fréchet Audio Distance: A Metric for Evaluating Music Enhancement Algorithms",
2019; the Fréchet distance of Dowson & Landau, 1982, as used by FID): fit N(mu_g, S_g) to the generated set's
embeddings and N(mu_r, S_r) to the reference set's, then

    FAD = |mu_g - mu_r|^2 + trace(S_g + S_r - 2 (S_g S_r)^(1/2))

Each set is every embedding frame of every clip pooled together (VGGish gives one 128-d frame per 0.96 s), as in
the paper. The value depends entirely on the embedder, so reports name it (``fad_vggish``, ``fad_mel`` ...).
"""
from __future__ import annotations

import numpy as np


def gaussian_fit(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` embeddings -> mean ``[D]`` and unbiased covariance ``[D, D]`` (float64)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"FAD needs at least 2 embeddings of shape [N, D]; got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite ``[D, D]`` matrix (tiny negative eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); means ``[D]``, covariances ``[D, D]``.

    trace((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of S1^(1/2) S2 S1^(1/2),
    which is similar to S1 S2 but symmetric: no complex parts and no failure on singular covariances (small
    sets), where ``scipy.linalg.sqrtm(S1 @ S2)`` as in pytorch-fid needs an epsilon retry.
    """
    diff = mu1 - mu2
    root1 = _psd_sqrt(sigma1)
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_covmean = np.sqrt(np.clip(middle, 0.0, None)).sum()
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean
    return float(max(value, 0.0))


def fad_from_embeddings(generated: np.ndarray, reference: np.ndarray) -> float:
    """FAD between two embedding sets ``[N_g, D]`` and ``[N_r, D]`` (lower is better; 0 for identical sets)."""
    if generated.shape[-1] != reference.shape[-1]:
        raise ValueError(f"FAD: embedding sizes differ ({generated.shape[-1]} vs {reference.shape[-1]})")
    return frechet_distance(*gaussian_fit(generated), *gaussian_fit(reference))


def fad_from_clips(generated: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """FAD between per-clip embedding lists (each ``[T_i, D]``), pooling every frame of every clip."""
    return fad_from_embeddings(np.concatenate(generated), np.concatenate(reference))
