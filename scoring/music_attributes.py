"""What a piece of music is, read back from its audio: key and mode, tempo, and a timbre summary for an instrument
classifier. Used to measure whether a text prompt moved the music (``tools/prompt_effect.py``, issue 15).

- Key and mode: the Krumhansl-Schmuckler estimate lives in ``data/music_key.py`` (the real-music set uses it too).
- Tempo: librosa's beat tracker (``librosa.beat.beat_track``), the same estimate the sync scores use.
- Timbre: mean and standard deviation of 20 MFCCs and of the spectral contrast bands (librosa), [54] per clip, the
  classic input of a small instrument classifier.
"""
from __future__ import annotations

import numpy as np


def estimate_tempo(wav: np.ndarray, sample_rate: int) -> float:
    """Mono [N] -> tempo in BPM (librosa's beat tracker; 0 when it finds no beat)."""
    import librosa

    tempo = librosa.beat.beat_track(y=np.asarray(wav, np.float32), sr=sample_rate)[0]
    return float(np.atleast_1d(tempo)[0])


def timbre_features(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono [N] -> [54]: mean and std over time of 20 MFCCs and 7 spectral-contrast bands."""
    import librosa

    y = np.asarray(wav, np.float32)
    mfcc = librosa.feature.mfcc(y=y, sr=sample_rate, n_mfcc=20)
    contrast = librosa.feature.spectral_contrast(y=y, sr=sample_rate)
    return np.concatenate([mfcc.mean(1), mfcc.std(1), contrast.mean(1), contrast.std(1)]).astype(np.float32)
