"""Where a piece of music becomes frames for the retrieval head: log-mel, chroma and an onset-strength envelope.

The music tower of ``model/video_music_embedding.py`` reads these frames. Log-mel carries timbre (which instrument),
chroma carries pitch class (key and mode, which the synthetic set ties to the palette), and the onset envelope
carries *when* notes start, so beats and accents can be matched to the motion stream's cuts and impacts.

    wav float32 [S] at any rate --(16 kHz, hop 400)--> frames float32 [T, MUSIC_FEATURE_DIM] at 40 Hz

Frame t is centred at ``t / 40`` seconds (librosa's centred frames; the last, partial one is dropped), so frame
counts are ``floor(seconds * 40)`` and four frames make one 0.1 s step of the head's grid.
"""
from __future__ import annotations

import numpy as np

from media.audio import resample

SAMPLE_RATE = 16_000
HOP = 400  # 25 ms
FRAME_RATE = SAMPLE_RATE // HOP  # 40 frames per second
N_FFT = 1024
N_MELS = 64
N_CHROMA = 12
MUSIC_FEATURE_DIM = N_MELS + N_CHROMA + 1


def music_features(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono ``wav`` [S] at ``sample_rate`` -> float32 [T, MUSIC_FEATURE_DIM], T = floor(seconds * FRAME_RATE).

    Columns: log-mel (dB / 80, about [-1, 0]), chroma (max-normalised per frame, [0, 1]), onset strength
    (divided by 4, roughly [0, 2]); fixed scales, not per-track ones, so a quiet track stays quiet.
    """
    import librosa

    wav = np.asarray(wav, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        wav = resample(wav, sample_rate, SAMPLE_RATE)
    frames = len(wav) // HOP
    if frames == 0:
        return np.zeros((0, MUSIC_FEATURE_DIM), np.float32)
    power = np.abs(librosa.stft(wav, n_fft=N_FFT, hop_length=HOP)) ** 2  # [F, frames + 1]
    mel = librosa.feature.melspectrogram(S=power, sr=SAMPLE_RATE, n_mels=N_MELS)
    log_mel = librosa.power_to_db(mel, ref=1.0, top_db=None).clip(-80.0, 0.0) / 80.0
    chroma = librosa.feature.chroma_stft(S=power, sr=SAMPLE_RATE, n_chroma=N_CHROMA)
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel, ref=1.0), sr=SAMPLE_RATE)[None] / 4.0
    stacked = np.concatenate([log_mel, chroma, onset], axis=0)[:, :frames]  # [D, T]
    return np.ascontiguousarray(stacked.T, dtype=np.float32)
