"""Music muxed into the user's video (ffmpeg), written atomically.

Why ffmpeg for muxing: it copies the original video stream untouched (no quality loss, no re-encode) and falls
back to H.264 only when the source codec cannot go into an mp4. It is always called with an argument list.
Where the ffmpeg command is not installed (a bare GPU server, a pip-only setup), PyAV's bundled FFmpeg libraries
do the same job in-process: the video packets copied, the music encoded as AAC.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from common.errors import UserError
from common.files import temporary_sibling
from media.audio import read_audio


class MediaError(UserError):
    """Writing the output failed; the message is one line meant for the user."""


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg is not installed (run ./setup.sh, or apt-get install ffmpeg)")
    return exe


def _mux_with_pyav(video: Path, music_wav: Path, out: Path) -> None:
    """The ffmpeg command's job through PyAV: ``video``'s first video stream copied packet by packet (no
    re-encode) and ``music_wav`` encoded as AAC, into the mp4 ``out``. Raises MediaError on any FFmpeg error."""
    import av

    music, rate = read_audio(music_wav)  # mono float32 [samples]: what the generator writes
    try:
        with av.open(str(video)) as source, av.open(str(out), "w", format="mp4") as target:
            picture_in = source.streams.video[0]
            picture_out = target.add_stream_from_template(picture_in)
            sound = target.add_stream("aac", rate=rate, layout="mono")
            sound.bit_rate = 192_000
            for packet in source.demux(picture_in):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = picture_out
                target.mux(packet)
            frame = av.AudioFrame.from_ndarray(music[None, :], format="fltp", layout="mono")  # [1, samples]
            frame.sample_rate = rate
            for chunk in (*sound.encode(frame), *sound.encode(None)):
                target.mux(chunk)
    except (av.error.FFmpegError, IndexError, ValueError) as error:
        raise MediaError(f"could not write {out} with PyAV (ffmpeg is not installed): {error}") from None


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
        if shutil.which("ffmpeg") is None:
            _mux_with_pyav(video, music_wav, tmp)
            if not has_picture_and_sound(tmp):
                raise MediaError(f"{video}: no video frame of it could be written to {out} (damaged video stream)")
            tmp.replace(out)
            return
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
