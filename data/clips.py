"""Curating one source video: probe it, cut its clip(s), filter them, write the media, commit a record.

Runs in worker processes (``data.curate`` maps ``curate_video`` over the inputs), so everything here is a
module-level function of picklable arguments, and each worker loads its models once (``init_worker``).

Per video::

    probe (exists, not empty, not cut off, has video + audio, long enough)
      for each window [start, start + clip_seconds):
        decode the audio mix -> near-silent? -> CLIP frame similarity -> static? -> Demucs -> near-silent?
        -> music/<id>.wav (32 kHz mono PCM16) and clips/<id>.mp4 (re-encoded cut, music as its audio track)
    record -> records/<video_id>.json

Crash safety: media are written under ``*.partial.*`` names and renamed into place; the record is written last
(temp file + rename), so a video with a record is complete, and a video without one is simply done again (its
files are overwritten under the same names, so nothing is duplicated).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data.audio import AudioError, audio_track_seconds, fit_length, load_audio, resample, rms_dbfs, write_wav
from data.schema import MUSIC_SAMPLE_RATE
from data.sources import SourceVideo
from data.video import VideoError, probe_video, sample_frames
from model.config import SemanticConfig

RECORDS_DIR = "records"
LENGTH_TOLERANCE = 0.1  # seconds a source may fall short of a window and still count (frame rounding)
AUDIO_TOLERANCE = 0.25  # seconds of missing audio at a window's end that are padded with silence (codec priming)
FFMPEG_TIMEOUT = 900  # seconds for one cut

REASONS = {
    "missing": "file not found",
    "empty_file": "zero-byte file",
    "unreadable": "not a readable video",
    "truncated": "file or stream cut off before its stated end",
    "no_video": "no video stream",
    "no_audio": "no audio stream",
    "too_short": "shorter than one clip",
    "static_video": "too little visual change (mean CLIP frame similarity above the limit)",
    "silent_music": "music below the RMS level limit",
    "duplicate": "same file content as another input video",
    "failed": "unexpected error (retried on the next run)",
}


class Rejection(Exception):
    """Why a file or clip is left out: ``reason`` is a code from ``REASONS``, the message is for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class ClipOptions:
    """Everything that changes what a curated clip is; stored beside the dataset and checked on resume."""

    semantic: SemanticConfig
    clip_seconds: float = 30.0
    windows: bool = False
    max_windows: int = 0  # 0: as many as fit
    max_frame_similarity: float = 0.7
    similarity_fps: float = 1.0
    keep_vocals: bool = False
    demucs_model: str = "htdemucs"
    min_rms_db: float = -45.0
    max_height: int = 360  # 0 keeps the source size
    threads: int = field(default=1, compare=False)

    def params(self) -> dict:
        params = asdict(self)
        params.pop("threads")
        return params


# ---------------------------------------------------------------------------------------------------- workers

_WORKER: dict = {}


def init_worker(options: ClipOptions) -> None:
    """Load the models one worker needs (the preset's CLIP image tower; Demucs unless vocals are kept)."""
    import torch

    from data.vocals import VocalRemover

    torch.set_num_threads(options.threads)
    _WORKER["vocals"] = None if options.keep_vocals else VocalRemover.load(options.demucs_model)
    _WORKER["encoder"] = build_similarity_encoder(options.semantic)


def init_pool_worker(options: ClipOptions) -> None:
    """``init_worker`` for a pool process, which first asks Linux to kill it when its parent dies.

    Without this, a run killed with SIGKILL leaves its workers finishing their videos, racing the re-run that
    resumes it (and writing records for files the re-run is already redoing).
    """
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a killed run's workers may finish their current video
    if os.getppid() == 1:
        os._exit(0)  # the parent is already gone
    init_worker(options)


def unload_models() -> None:
    _WORKER.clear()


def build_similarity_encoder(semantic: SemanticConfig):
    """The preset's semantic encoder; seeded, so a random-init (test) encoder judges every run the same way.

    open_clip's log lines are muted here: a failure reaches the user as one error line from ``data.curate``.
    """
    import logging

    import torch

    from model.semantic import build_semantic_encoder

    logging.disable(logging.CRITICAL)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build_semantic_encoder(semantic)
    finally:
        logging.disable(logging.NOTSET)


def curate_video(task: tuple[SourceVideo, str, ClipOptions]) -> dict:
    """Curate one source video and commit its record; never raises for a bad file (the record says why)."""
    source, out_dir, options = task
    try:
        record = _curate(source, Path(out_dir), options)
    except Rejection as rejection:
        record = make_record(source, None, [], [rejected_entry(source, source.id, rejection)])
    except Exception as error:  # one bad file must not stop a run of thousands
        text = str(error).splitlines()[0][:300] if str(error) else ""
        record = make_record(source, None, [], [rejected_entry(source, source.id, Rejection(
            "failed", f"{type(error).__name__}: {text}"))])
    commit_record(Path(out_dir), record)
    return record


# ---------------------------------------------------------------------------------------------------- records


def make_record(source: SourceVideo, fingerprint: str | None, clips: list[dict], rejected: list[dict]) -> dict:
    return {"video_id": source.id, "path": source.path, "fingerprint": fingerprint, "clips": clips, "rejected": rejected}


def rejected_entry(source: SourceVideo, clip_id: str, rejection: Rejection) -> dict:
    return {"path": source.path, "id": clip_id, "reason": rejection.reason, "message": rejection.message}


def commit_record(out_dir: Path, record: dict) -> None:
    """Write ``records/<video_id>.json`` atomically (temp file + rename): present means finished."""
    path = out_dir / RECORDS_DIR / f"{record['video_id']}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def record_is_final(record: dict) -> bool:
    """Records of unexpected failures are redone by the next run; every other outcome is final."""
    return not any(entry["reason"] == "failed" for entry in record["rejected"])


# ---------------------------------------------------------------------------------------------------- one video


def _curate(source: SourceVideo, out_dir: Path, options: ClipOptions) -> dict:
    path = Path(source.path)
    duration = probe_source(path)
    fingerprint = file_fingerprint(path)
    clips, rejected = [], []
    for clip_id, start in clip_windows(source.id, duration, options):
        try:
            clips.append(_curate_window(source, clip_id, start, options, out_dir))
        except Rejection as rejection:
            rejected.append(rejected_entry(source, clip_id, rejection))
            if rejection.reason == "truncated":
                break  # later windows lie beyond where the data ends
    return make_record(source, fingerprint, clips, rejected)


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
    """Map ``data.video``'s one-line messages to reason codes."""
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


# ---------------------------------------------------------------------------------------------------- one window


def _curate_window(source: SourceVideo, clip_id: str, start: float, options: ClipOptions, out_dir: Path) -> dict:
    seconds, remover = options.clip_seconds, _WORKER.get("vocals")
    # Stereo, averaged to mono later: libswresample's own downmix adds 3 dB to correlated channels, which clips.
    rate, channels = (remover.sample_rate, remover.channels) if remover else (MUSIC_SAMPLE_RATE, 2)
    mix = load_window_audio(Path(source.path), start, seconds, rate, channels)
    if rms_dbfs(mix) < options.min_rms_db:
        raise Rejection("silent_music", f"audio is {rms_dbfs(mix):.1f} dBFS RMS, below --min-rms-db {options.min_rms_db:g}")
    similarity = frame_similarity(Path(source.path), start, seconds, options)
    if similarity > options.max_frame_similarity:
        raise Rejection("static_video", f"mean CLIP similarity of sampled frames is {similarity:.3f} "
                                        f"(> --max-frame-similarity {options.max_frame_similarity:g})")
    music = to_music(mix, rate, remover)
    level = rms_dbfs(music)
    if level < options.min_rms_db:
        raise Rejection("silent_music", f"music without vocals is {level:.1f} dBFS RMS, below --min-rms-db {options.min_rms_db:g}")
    write_clip_media(Path(source.path), out_dir, clip_id, start, seconds, music, options)
    return {"id": clip_id, "video_id": source.id, "video_path": f"clips/{clip_id}.mp4",
            "music_path": f"music/{clip_id}.wav", "start": float(start), "duration": float(seconds),
            "title": source.title, "tags": list(source.tags),
            "stats": {"frame_similarity": round(similarity, 4), "music_rms_db": round(level, 2)}}


def load_window_audio(path: Path, start: float, seconds: float, rate: int, channels: int) -> np.ndarray:
    """The window's audio, float32 [C, round(seconds * rate)]; a short track is ``too_short`` or ``truncated``."""
    try:
        audio = load_audio(path, rate, channels, start, seconds)
    except AudioError as error:
        raise Rejection(error.reason, str(error)) from None
    missing = seconds - audio.shape[1] / rate
    if missing > AUDIO_TOLERANCE:
        reached = start + audio.shape[1] / rate
        declared = audio_track_seconds(path)
        if declared is not None and declared + AUDIO_TOLERANCE < start + seconds:
            raise Rejection("too_short", f"{path}: the audio track is only {declared:.2f} s long (needs {start + seconds:g} s)")
        raise Rejection("truncated", f"{path}: audio stops at {reached:.2f} s, before the window's end at {start + seconds:g} s")
    return fit_length(audio, round(seconds * rate))


def frame_similarity(path: Path, start: float, seconds: float, options: ClipOptions) -> float:
    """Mean pairwise cosine similarity of CLIP embeddings of frames sampled across the window (VMAs' filter).

    A truly static window scores 1.0; at least 4 frames are compared however short the window.
    """
    encoder = _WORKER["encoder"]
    fps = max(options.similarity_fps, 4.0 / seconds)
    try:
        frames = sample_frames(path, fps, encoder.image_size, fps, 16, start=start, max_seconds=seconds)
    except VideoError as error:
        raise Rejection(video_reason(error), str(error)) from None
    last = float(frames.clip_times[-1])
    if last < seconds - 1.5 / fps - LENGTH_TOLERANCE:
        raise Rejection("truncated", f"{path}: video frames stop at {start + last:.2f} s, before the window's end at {start + seconds:g} s")
    return mean_pairwise_similarity(encoder(frames.clip_frames).numpy())


def mean_pairwise_similarity(embeddings: np.ndarray) -> float:
    """L2-normalised [N, D] -> mean cosine similarity over pairs i != j (1.0 for fewer than two frames)."""
    n = len(embeddings)
    if n < 2:
        return 1.0
    similarity = embeddings @ embeddings.T  # [N, N]
    return float((similarity.sum() - np.trace(similarity)) / (n * (n - 1)))


def to_music(mix: np.ndarray, rate: int, remover) -> np.ndarray:
    """[C, S] at ``rate`` -> vocals removed (if a remover is given), channels averaged, 32 kHz float32 [S']."""
    audio = remover.accompaniment(mix) if remover is not None else mix
    mono = audio.mean(axis=0, keepdims=True)
    samples = round(mix.shape[1] / rate * MUSIC_SAMPLE_RATE)
    return fit_length(resample(mono, rate, MUSIC_SAMPLE_RATE), samples)[0]


# ---------------------------------------------------------------------------------------------------- media


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
