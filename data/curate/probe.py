"""Checks on a source file before any decoding: present, not empty, not cut off, video and audio streams, long
enough; and which windows of it become clips.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from data.curate.options import LENGTH_TOLERANCE, ClipOptions, Rejection
from media.video import VideoError, probe_video


def probe_source(path: Path) -> float:
    """Check a source file before any decoding; return the video's length in seconds or raise ``Rejection``."""
    if not path.is_file():
        raise Rejection("missing", f"{path}: no such file")
    if path.stat().st_size == 0:
        raise Rejection("empty_file", f"{path}: empty file (0 bytes)")
    problem = iso_structure_problem(path)
    if problem:
        raise Rejection("truncated", f"{path}: {problem}")
    try:
        info = probe_video(path)
    except VideoError as error:
        raise Rejection(video_reason(error), str(error)) from None
    if not info.has_audio:
        raise Rejection("no_audio", f"{path}: has no audio stream (no music to learn from)")
    return info.duration


def video_reason(error: VideoError) -> str:
    """Map ``media.video``'s one-line messages to reason codes."""
    text = str(error)
    if "no video stream" in text:
        return "no_video"
    if "empty file" in text:
        return "empty_file"
    if "corrupt or truncated" in text or "no video frame could be decoded" in text:
        return "truncated"
    return "unreadable"


def iso_structure_problem(path: Path) -> str | None:
    """For MP4/MOV files: say so when the top-level boxes run past the end of the file or ``moov`` is missing.

    A download or copy cut off part way leaves exactly this; catching it here gives the right reason instead of
    a decoder error (and a file whose index survived but whose data did not is caught before decoding).
    """
    size, offset, boxes = path.stat().st_size, 0, set()
    with open(path, "rb") as f:
        if f.read(8)[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return None  # not an ISO media file: the decoder judges it
        while offset + 8 <= size:  # fewer than 8 trailing bytes cannot hold a box: players ignore them
            f.seek(offset)
            header = f.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1:
                box_size = int.from_bytes(header[8:16], "big") if len(header) == 16 else size + 1  # 64-bit size
            elif box_size == 0:
                box_size = size - offset  # "extends to the end of the file"
            if box_size < 8:
                return None  # not a box structure we understand: the decoder judges the file
            boxes.add(kind)
            offset += box_size
    if offset > size:
        return f"cut off: the file ends {offset - size} bytes before its last '{kind.decode(errors='replace')}' box does"
    if b"moov" not in boxes:
        return "cut off: no 'moov' index box (the end of the file is missing)"
    return None


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """A cheap content fingerprint (size + first and last MiB) to find the same file under two names."""
    digest, size = hashlib.sha256(str(path.stat().st_size).encode()), path.stat().st_size
    with open(path, "rb") as f:
        digest.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            digest.update(f.read(chunk))
    return digest.hexdigest()[:20]


def clip_windows(video_id: str, duration: float, options: ClipOptions) -> list[tuple[str, float]]:
    """(clip id, start) of each clip: the first ``clip_seconds``, or consecutive windows with ``options.windows``."""
    seconds = options.clip_seconds
    if duration + LENGTH_TOLERANCE < seconds:
        length = f"{duration:.2f} s long" if duration > 0 else "of unknown length"
        raise Rejection("too_short", f"video is {length}; clips need {seconds:g} s")
    if not options.windows:
        return [(video_id, 0.0)]
    count = int((duration + LENGTH_TOLERANCE) // seconds)
    count = min(count, options.max_windows) if options.max_windows else count
    return [(f"{video_id}_w{k}", k * seconds) for k in range(count)]
