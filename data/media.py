"""Writing results: music as WAV, and music muxed into the user's video (ffmpeg), each written atomically.

Why ffmpeg for muxing: it copies the original video stream untouched (no quality loss, no re-encode) and falls
back to H.264 only when the source codec cannot go into an mp4. It is always called with an argument list.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf


class MediaError(RuntimeError):
    """Writing the output failed; the message is one line meant for the user."""


def peak_normalise(wav: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale float audio [S] so its peak sits at ``peak_db`` dBFS (silence stays silence); no clipping."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak < 1e-6 or not np.isfinite(peak):
        return np.zeros_like(wav)
    return (wav / peak * 10 ** (peak_db / 20)).astype(np.float32)


def temporary_sibling(path: Path, suffix: str) -> Path:
    """A fresh temporary file name next to ``path`` (same filesystem, so the final rename is atomic)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    return Path(name)


def write_wav(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV via a temporary file and rename."""
    tmp = temporary_sibling(path, ".wav")
    try:
        sf.write(str(tmp), wav, sample_rate, subtype="PCM_16", format="WAV")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg is not installed (run ./setup.sh, or apt-get install ffmpeg)")
    return exe


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                          capture_output=True, text=True)


def mux_music(video: Path, music_wav: Path, out: Path) -> None:
    """Write ``out`` (mp4): ``video``'s first video stream (copied when possible) + ``music_wav`` as AAC audio.

    Any audio the input had is replaced. Written to a temporary file beside ``out`` and renamed, so a failure
    never leaves a half-written output and never touches an existing file.
    """
    tmp = temporary_sibling(out, ".mp4")
    try:
        common = ["-i", str(video), "-i", str(music_wav), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac",
                  "-b:a", "192k", "-movflags", "+faststart", "-f", "mp4"]
        result = _run_ffmpeg([*common, "-c:v", "copy", str(tmp)])
        if result.returncode != 0:  # e.g. a codec mp4 cannot hold: re-encode the picture
            result = _run_ffmpeg([*common, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(tmp)])
        if result.returncode != 0:
            raise MediaError(f"ffmpeg could not write {out}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
