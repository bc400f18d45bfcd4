"""What a piece of music is, read back from its audio: key and mode, tempo, and a timbre summary for an instrument
classifier. Used to measure whether a text prompt moved the music (``tools/prompt_effect.py``, issue 15).

- Key and mode: the Krumhansl-Schmuckler estimate, as in music21 and Essentia's ``Key`` with the Krumhansl profile:
  the clip's mean chromagram (librosa CQT chroma) is correlated with the 24 rotations of the Krumhansl-Kessler
  major and minor key profiles; the best correlation names the key. librosa has no key estimator; this is the
  textbook one, a dozen lines, rather than a new dependency.
- Tempo: librosa's beat tracker (``librosa.beat.beat_track``), the same estimate the sync scores use.
- Timbre: mean and standard deviation of 20 MFCCs and of the spectral contrast bands (librosa), [54] per clip, the
  classic input of a small instrument classifier.
"""
from __future__ import annotations

import numpy as np

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def mean_chroma(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono [N] -> the mean CQT chroma [12] (C first)."""
    import librosa

    # tuning=0: A440, as the renders and the codec keep it (estimating it warns on near-silent clips)
    return librosa.feature.chroma_cqt(y=np.asarray(wav, np.float32), sr=sample_rate, tuning=0.0).mean(axis=1)


def key_from_chroma(chroma: np.ndarray) -> tuple[str, str, float]:
    """[12] -> (key name as librosa spells it, "C#" not "Db"; "major"/"minor"; correlation of the winning profile)."""
    import librosa

    names = [librosa.midi_to_note(pitch, octave=False, unicode=False) for pitch in range(12)]  # chroma bin order
    best = (-2.0, "C", "major")
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            if np.isfinite(r) and r > best[0]:
                best = (r, names[tonic], mode)
    return best[1], best[2], best[0]


def estimate_key(wav: np.ndarray, sample_rate: int) -> tuple[str, str, float]:
    """Mono [N] -> (key, mode, correlation); a silent clip has flat chroma and gets correlation -2."""
    return key_from_chroma(mean_chroma(wav, sample_rate))


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
