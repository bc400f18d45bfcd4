"""Writing a curated clip's media: ``music/<id>.wav`` and the re-encoded cut ``clips/<id>.mp4`` with the music as
its audio track, each under a ``*.partial.*`` name first and renamed into place.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from data.curate.options import FFMPEG_TIMEOUT, ClipOptions
from data.schema import MUSIC_SAMPLE_RATE
from media.audio import write_wav


def write_clip_media(source: Path, out_dir: Path, clip_id: str, start: float, seconds: float, music: np.ndarray,
                     options: ClipOptions) -> None:
    """``music/<id>.wav`` and ``clips/<id>.mp4`` (the cut, with the music as its audio), each renamed into place."""
    music_path, video_path = out_dir / "music" / f"{clip_id}.wav", out_dir / "clips" / f"{clip_id}.mp4"
    music_tmp, video_tmp = partial_path(music_path), partial_path(video_path)
    write_wav(music_tmp, music, MUSIC_SAMPLE_RATE)
    cut_video(source, video_tmp, start, seconds, music_tmp, options.max_height, options.threads)
    music_tmp.replace(music_path)
    video_tmp.replace(video_path)


def partial_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def cut_video(source: Path, out: Path, start: float, seconds: float, music: Path, max_height: int, threads: int) -> None:
    """Re-encode ``[start, start + seconds)`` of ``source`` (H.264, frame-accurate) with ``music`` as the audio.

    Input seeking with re-encoding starts exactly at ``start`` (a stream copy could only start at a keyframe).
    """
    height = f"min(ih\\,{max_height})" if max_height else "ih"
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-ss", f"{start:.6f}", "-i", str(source), "-i", str(music), "-t", f"{seconds:.6f}",
        "-map", "0:v:0", "-map", "1:a:0", "-vf", f"scale=-2:trunc({height}/2)*2",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", str(threads),
        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4", str(out),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    except subprocess.TimeoutExpired:
        out.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg took longer than {FFMPEG_TIMEOUT} s to cut the clip") from None
    if result.returncode != 0:
        out.unlink(missing_ok=True)
        last = (result.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise RuntimeError(f"ffmpeg could not cut the clip: {last}")
