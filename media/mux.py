"""Music muxed into the user's video (ffmpeg), written atomically.

Why ffmpeg for muxing: it copies the original video stream untouched (no quality loss, no re-encode) and falls
back to H.264 only when the source codec cannot go into an mp4. It is always called with an argument list.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from common.errors import UserError
from common.files import temporary_sibling


class MediaError(UserError):
    """Writing the output failed; the message is one line meant for the user."""


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg is not installed (run ./setup.sh, or apt-get install ffmpeg)")
    return exe


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
                          capture_output=True, text=True)


def has_picture_and_sound(path: Path) -> bool:
    """True when ``path`` has a video and an audio stream, each with at least one packet (a damaged source can
    give ffmpeg a video stream it copies nothing of, and an mp4 then holds the music alone)."""
    import av

    try:
        with av.open(str(path)) as container:
            found = set()
            for packet in container.demux():
                if packet.size and packet.stream.type in ("video", "audio"):
                    found.add(packet.stream.type)
                    if len(found) == 2:
                        return True
    except (av.error.FFmpegError, OSError):
        return False
    return False


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
        if result.returncode != 0 or not has_picture_and_sound(tmp):  # a codec mp4 cannot hold, or damaged
            result = _run_ffmpeg([*common, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(tmp)])
        if result.returncode != 0:
            raise MediaError(f"ffmpeg could not write {out}: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        if not has_picture_and_sound(tmp):
            raise MediaError(f"{video}: no video frame of it could be written to {out} (damaged video stream)")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
