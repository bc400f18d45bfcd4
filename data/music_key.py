"""Key and mode of recorded music, read from its audio: the Krumhansl-Schmuckler estimate.

Why here (layer 3): the real-music set (``data/real_music.py``) needs a window's key and mode for its ground truth
and the picture grade, and ``scoring/music_attributes.py`` (layer 4) reads generated music back with the same
estimate. The clip's mean chromagram (librosa CQT chroma) is correlated with the 24 rotations of the
Krumhansl-Kessler major and minor key profiles; the best correlation names the key. librosa has no key estimator;
this is the textbook one (as in music21 and Essentia's ``Key`` with the Krumhansl profile), a dozen lines, rather
than a new dependency.
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
