"""Audio for curation: decode a time range of a file's audio track, resample with a library, measure, write.

Why PyAV's ``AudioResampler`` (libswresample) at decode time: the audio of a video arrives in many codecs, rates
and layouts; converting while decoding gives float32 at the rate and channel count we ask for in one step.
Arrays already in memory (Demucs output) are resampled with soxr, the resampler librosa uses.
"""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import soundfile as sf

LAYOUTS = {1: "mono", 2: "stereo"}


class AudioError(ValueError):
    """An audio track that cannot be used; ``reason`` is a short code (``no_audio``, ``truncated``, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _stream_seconds(stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def load_audio(path: str | Path, sample_rate: int, channels: int = 1, start: float = 0.0,
               seconds: float | None = None) -> np.ndarray:
    """Decode ``[start, start + seconds)`` of the first audio track -> float32 [channels, S] at ``sample_rate``.

    The result is shorter than asked only when the track ends early; callers decide whether that is acceptable.
    Raises ``AudioError`` (reason ``no_audio`` or ``truncated``) for a missing or undecodable track.
    """
    resampler = av.AudioResampler(format="fltp", layout=LAYOUTS[channels], rate=sample_rate)
    chunks, first_time, decoded = [], None, 0
    wanted = math.inf if seconds is None else round(seconds * sample_rate)
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise AudioError("no_audio", f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        if start > 0:
            container.seek(int(start * av.time_base), backward=True)  # container-level seek, in AV_TIME_BASE units
        try:
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = frame.time if frame.time is not None else 0.0
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    decoded += chunks[-1].shape[1]
                if decoded >= round((start - first_time) * sample_rate) + wanted:
                    break
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))  # flush the resampler
        except av.error.FFmpegError as error:
            raise AudioError("truncated", f"{path}: audio is corrupt or truncated ({_short(error)})") from None
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    skip = max(0, round((start - (first_time or 0.0)) * sample_rate))  # decoding starts at a packet before `start`
    end = None if seconds is None else skip + wanted
    return np.ascontiguousarray(audio[:, skip:end], dtype=np.float32)


def audio_track_seconds(path: str | Path) -> float | None:
    """Declared length of the first audio track (None when the container does not say)."""
    with av.open(str(path)) as container:
        return _stream_seconds(container.streams.audio[0]) if container.streams.audio else None


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 [C, S_in] -> [C, S_out] with soxr (high quality)."""
    import soxr

    if rate_in == rate_out:
        return audio
    return np.ascontiguousarray(soxr.resample(audio.T, rate_in, rate_out, quality="HQ").T, dtype=np.float32)


def fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad [C, S] to exactly ``samples`` along time."""
    if audio.shape[1] >= samples:
        return audio[:, :samples]
    return np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (a full-scale sine is about -3 dBFS)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20.0 * math.log10(max(rms, 1e-10))


def write_wav(path: str | Path, mono: np.ndarray, sample_rate: int) -> None:
    """Write float [S] as 16-bit PCM, scaled down only if it would clip."""
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak > 1.0:
        mono = mono / peak * 0.99
    sf.write(str(path), mono, sample_rate, subtype="PCM_16", format="WAV")


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
