"""Audio I/O, one of each: read a file as mono, decode a time range of any container's audio track, resample,
measure, write WAV atomically.

- ``read_audio``: an audio file (WAV, FLAC, OGG, MP3 ... through libsndfile; anything else through FFmpeg) ->
  mono float32 [S], optionally resampled. Used by training, scoring and the tools.
- ``decode_audio``: ``[start, start + seconds)`` of a video's (or any file's) first audio track -> float32
  [C, S] at the rate asked for, converted while decoding by libswresample (PyAV's ``AudioResampler``): the audio
  of a video arrives in many codecs, rates and layouts. Curation uses it.
- ``resample``: arrays in memory, with soxr (high quality; the resampler librosa uses by default).
- ``write_wav``: temporary file + rename, so a WAV under its real name is always complete.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from common.errors import UserError
from common.files import temporary_sibling

LAYOUTS = {1: "mono", 2: "stereo"}


class AudioError(UserError):
    """An audio file or track that cannot be used; ``reason`` is a short code (``no_audio``, ``truncated``, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


# ---------------------------------------------------------------------------------------------------- reading


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 ``[samples]`` (channels averaged), resampled to ``sample_rate`` when given.

    Returns ``(wav, rate)``. Raises ``AudioError`` (reason ``missing``, ``empty_file`` or ``unreadable``).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError("missing", f"{path}: no such audio file")
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
        mono = wav.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):  # a format libsndfile does not read: FFmpeg does
        try:
            native = _native_rate(path)  # first, so an unreadable file is one message whether resampled or not
            rate = sample_rate or native
            mono = decode_audio(path, rate, channels=1)[0]
        except AudioError as error:
            raise AudioError("unreadable", f"{path}: not a readable audio file ({error})") from None
    if mono.shape[0] == 0:
        raise AudioError("empty_file", f"{path}: audio file has no samples")
    if sample_rate is not None and sample_rate != rate:
        mono, rate = resample(mono, rate, sample_rate), sample_rate
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def _native_rate(path: Path) -> int:
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError("no_audio", f"{path}: has no audio stream")
            return int(container.streams.audio[0].rate)
    except av.error.FFmpegError as error:
        raise AudioError("unreadable", _short(error)) from None


@dataclass
class DecodedAudio:
    """What ``decode_audio_counted`` returns: the samples, and what was lost on the way."""

    audio: np.ndarray  # float32 [C, S]
    bad_packets: int = 0  # packets the decoder refused; their span is filled with silence
    lost_seconds: float = 0.0  # the duration those packets stood for


def decode_audio(path: str | Path, sample_rate: int, channels: int = 1, start: float = 0.0,
                 seconds: float | None = None) -> np.ndarray:
    """Decode ``[start, start + seconds)`` of the first audio track -> float32 [channels, S] at ``sample_rate``.

    The result is shorter than asked only when the track ends early; callers decide whether that is acceptable.
    Raises ``AudioError`` (reason ``no_audio``, ``unreadable`` or ``truncated``) for a missing or undecodable track,
    or on the first packet the decoder refuses (``decode_audio_counted`` tolerates a few).
    """
    return decode_audio_counted(path, sample_rate, channels, start, seconds).audio


def decode_audio_counted(path: str | Path, sample_rate: int, channels: int = 1, start: float = 0.0,
                         seconds: float | None = None, max_bad_packets: int = 0) -> DecodedAudio:
    """``decode_audio`` that survives up to ``max_bad_packets`` packets the decoder refuses (a damaged frame in an
    otherwise good track, as FFmpeg itself skips): counted, and the gap is filled with silence up to the time of the
    next decoded frame, so later audio keeps its time. One more bad packet, or a container that cannot be read on,
    raises ``AudioError("truncated")``.
    """
    resampler = av.AudioResampler(format="fltp", layout=LAYOUTS[channels], rate=sample_rate)
    chunks, first_time, decoded = [], None, 0
    wanted = math.inf if seconds is None else round(seconds * sample_rate)
    with _open_audio(path) as container:
        stream = container.streams.audio[0]
        origin = container.start_time / av.time_base if container.start_time is not None else 0.0
        if start > 0:  # container-level seek, in AV_TIME_BASE units, on the file's timeline (which starts at origin)
            container.seek(int((start + origin) * av.time_base), backward=True)
        packets = _TolerantPackets(container, stream, max_bad_packets, path)
        try:
            for frame in packets.frames():
                if first_time is None:
                    first_time = frame.time - origin if frame.time is not None else 0.0
                elif packets.bad and frame.time is not None:  # after a refused packet: silence up to this frame
                    gap = round((frame.time - origin - first_time) * sample_rate) - decoded
                    if gap > sample_rate // 200:  # more than 5 ms (the resampler's own delay is far less)
                        chunks.append(np.zeros((channels, gap), np.float32))
                        decoded += gap
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    decoded += chunks[-1].shape[1]
                if decoded >= round((start - first_time) * sample_rate) + wanted:
                    break
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))  # flush the resampler
        except av.error.FFmpegError as error:  # the container itself cannot be read on
            raise AudioError("truncated", f"{path}: audio is corrupt or truncated ({_short(error)})") from None
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    skip = max(0, round((start - (first_time or 0.0)) * sample_rate))  # decoding starts at a packet before `start`
    end = None if seconds is None else skip + wanted
    return DecodedAudio(np.ascontiguousarray(audio[:, skip:end], dtype=np.float32), packets.bad, packets.lost)


def _open_audio(path: str | Path) -> av.container.InputContainer:
    """The file opened for its first audio track (``AudioError`` when it is not readable or has none)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise AudioError("unreadable", f"{path}: not a readable media file ({_short(error)})") from None
    if not container.streams.audio:
        container.close()
        raise AudioError("no_audio", f"{path}: has no audio stream")
    return container


class _TolerantPackets:
    """The decoded frames of one stream, packet by packet, skipping up to ``limit`` packets the decoder refuses
    (``bad`` counts them, ``lost`` adds up the seconds they stood for)."""

    def __init__(self, container, stream, limit: int, path: str | Path):
        self.container, self.stream, self.limit, self.path = container, stream, limit, path
        self.bad, self.lost = 0, 0.0

    def frames(self):
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                if packet.pts is None or self.bad >= self.limit:
                    skipped = f"; {self.bad} bad packets skipped before" if self.bad else ""
                    raise AudioError("truncated", f"{self.path}: audio is corrupt or truncated "
                                                  f"({_short(error)}{skipped})") from None
                self.bad, self.lost = self.bad + 1, self.lost + float((packet.duration or 0) * packet.time_base)
                continue
            yield from frames


def audio_track_seconds(path: str | Path) -> float | None:
    """Declared length of the first audio track (None when the container does not say)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if stream.duration is None or stream.time_base is None:
            return None
        return float(stream.duration * stream.time_base)


# ---------------------------------------------------------------------------------------------------- arrays


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 [S_in] or [C, S_in] -> [S_out] or [C, S_out] with soxr (high quality)."""
    import soxr

    audio = np.asarray(audio, dtype=np.float32)
    if rate_in == rate_out:
        return np.ascontiguousarray(audio)
    if audio.ndim == 1:
        return np.ascontiguousarray(soxr.resample(audio, rate_in, rate_out, quality="HQ"), dtype=np.float32)
    return np.ascontiguousarray(soxr.resample(audio.T, rate_in, rate_out, quality="HQ").T, dtype=np.float32)


def fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad [C, S] (or [S]) to exactly ``samples`` along time."""
    if audio.shape[-1] >= samples:
        return audio[..., :samples]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, samples - audio.shape[-1])]
    return np.pad(audio, pad)


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (a full-scale sine is about -3 dBFS)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20.0 * math.log10(max(rms, 1e-10))


def peak_normalise(wav: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale float audio [S] so its peak sits at ``peak_db`` dBFS (silence stays silence); no clipping."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak < 1e-6 or not np.isfinite(peak):
        return np.zeros_like(wav, dtype=np.float32)
    return (wav / peak * 10 ** (peak_db / 20)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- writing


def lossless_subtype(path: str | Path, sample_rate: int) -> str:
    """The WAV subtype that stores what ``read_audio(path, sample_rate)`` returned, bit for bit, when it can.

    A mono file at ``sample_rate`` in 16- or 24-bit PCM or 32-bit float reads as float32 values that write back to
    the same file values in that subtype; anything else (other rates, channels, codecs) was converted on reading,
    so it is stored as float, which keeps every bit of the conversion.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return "FLOAT"
    if info.channels == 1 and info.samplerate == sample_rate and info.subtype in ("PCM_16", "PCM_24", "FLOAT"):
        return info.subtype
    return "FLOAT"



def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write float mono [S] as a WAV (16-bit PCM, or ``subtype="FLOAT"`` to keep every bit) via temp + rename.

    PCM output is scaled down only if it would clip; FLOAT output is written as it is.
    """
    path = Path(path)
    wav = np.asarray(wav, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if subtype.startswith("PCM") and peak > 1.0:
        wav = wav / peak * 0.99
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, ".wav")
    try:
        sf.write(str(tmp), wav, sample_rate, subtype=subtype, format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
