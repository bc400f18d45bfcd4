"""Curating one source video: probe it, cut its clip(s), filter them, write the media, commit a record.

Runs in worker processes (``data.curate.run`` maps ``curate_video`` over the inputs), so everything here is a
module-level function of picklable arguments, and each worker loads its models once (``init_worker``).

Per video::

    probe (exists, not empty, not cut off, has video + audio, long enough)
      for each window [start, start + clip_seconds):
        decode the audio mix (a few bad packets tolerated) -> near-silent? -> visual change (CLIP frame
        similarity, or frame differences when the image tower is untrained) -> static? -> Demucs -> near-silent?
        -> music/<id>.wav (32 kHz mono PCM16) and clips/<id>.mp4 (re-encoded cut, music as its audio track)
    record -> records/<video_id>.json
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.cli import is_resource_error
from common.device import move_module, placement_for
from data.curate.clip_media import write_clip_media
from data.curate.options import AUDIO_TOLERANCE, LENGTH_TOLERANCE, ClipOptions, Rejection
from data.curate.probe import clip_windows, file_fingerprint, probe_source, video_reason
from data.curate.records import commit_record, make_record, rejected_entry
from data.captions import caption_from_metadata
from data.schema import MUSIC_SAMPLE_RATE
from data.sources import SourceVideo
from media.audio import AudioError, audio_track_seconds, decode_audio_counted, fit_length, resample, rms_dbfs
from media.video import VideoError, sample_frames
from model.config import SemanticConfig

_WORKER: dict = {}


def init_worker(options: ClipOptions) -> None:
    """Load the models one worker needs (the preset's CLIP image tower; Demucs unless vocals are kept)."""
    import torch

    from data.vocals import VocalRemover

    torch.set_num_threads(options.threads)
    _WORKER["vocals"] = None if options.keep_vocals else VocalRemover.load(options.demucs_model)
    _WORKER["encoder"] = build_similarity_encoder(options.semantic, options.device, options.precision)


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


def build_similarity_encoder(semantic: SemanticConfig, device: str = "cpu", precision: str = "fp32"):
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
            encoder = build_semantic_encoder(semantic)
    finally:
        logging.disable(logging.NOTSET)
    placement = placement_for(device, precision)
    move_module(encoder, placement.device, placement.semantic)
    return encoder


def curate_video(task: tuple[SourceVideo, str, ClipOptions]) -> dict:
    """Curate one source video and commit its record; never raises for a bad file (the record says why), only
    for out-of-memory and device errors, which end the run."""
    source, out_dir, options = task
    try:
        record = _curate(source, Path(out_dir), options)
    except Rejection as rejection:
        record = make_record(source, None, [], [rejected_entry(source, source.id, rejection)])
    except Exception as error:  # one bad file must not stop a run of thousands
        if is_resource_error(error):
            raise  # out of memory or a broken device fails every later file too: stop now, record nothing
        text = str(error).splitlines()[0][:300] if str(error) else ""
        record = make_record(source, None, [], [rejected_entry(source, source.id, Rejection(
            "failed", f"{type(error).__name__}: {text}"))])
    commit_record(Path(out_dir), record)
    return record


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


def _curate_window(source: SourceVideo, clip_id: str, start: float, options: ClipOptions, out_dir: Path) -> dict:
    seconds, remover = options.clip_seconds, _WORKER.get("vocals")
    # Stereo, averaged to mono later: libswresample's own downmix adds 3 dB to correlated channels, which clips.
    rate, channels = (remover.sample_rate, remover.channels) if remover else (MUSIC_SAMPLE_RATE, 2)
    mix, damage = load_window_audio(Path(source.path), start, seconds, rate, channels, options.max_bad_packets)
    if rms_dbfs(mix) < options.min_rms_db:
        raise Rejection("silent_music", f"audio is {rms_dbfs(mix):.1f} dBFS RMS, below --min-rms-db {options.min_rms_db:g}")
    change = visual_change(Path(source.path), start, seconds, options)
    music = to_music(mix, rate, remover)
    level = rms_dbfs(music)
    if level < options.min_rms_db:
        raise Rejection("silent_music", f"music without vocals is {level:.1f} dBFS RMS, below --min-rms-db {options.min_rms_db:g}")
    write_clip_media(Path(source.path), out_dir, clip_id, start, seconds, music, options)
    return {"id": clip_id, "video_id": source.id, "video_path": f"clips/{clip_id}.mp4",
            "music_path": f"music/{clip_id}.wav", "start": float(start), "duration": float(seconds),
            "title": source.title, "tags": list(source.tags),
            "caption": caption_from_metadata(source.caption, source.title, source.tags),
            "stats": {**change, "music_rms_db": round(level, 2), **damage}}


def load_window_audio(path: Path, start: float, seconds: float, rate: int, channels: int,
                      max_bad_packets: int = 0) -> tuple[np.ndarray, dict]:
    """The window's audio, float32 [C, round(seconds * rate)], and what was lost: ``{"bad_audio_packets": n,
    "lost_audio_seconds": s}`` (empty when nothing was). Up to ``max_bad_packets`` packets the decoder refuses
    are skipped (filled with silence, as FFmpeg skips them); more, or a short track, is ``truncated`` /
    ``too_short``."""
    try:
        decoded = decode_audio_counted(path, rate, channels, start, seconds, max_bad_packets)
    except AudioError as error:
        reason = f" (more than --max-bad-packets {max_bad_packets})" if error.reason == "truncated" else ""
        raise Rejection(error.reason, str(error) + reason) from None
    audio = decoded.audio
    damage = ({"bad_audio_packets": decoded.bad_packets, "lost_audio_seconds": round(decoded.lost_seconds, 3)}
              if decoded.bad_packets else {})
    missing = seconds - audio.shape[1] / rate
    if missing > AUDIO_TOLERANCE:
        reached = start + audio.shape[1] / rate
        declared = audio_track_seconds(path)
        if declared is not None and declared + AUDIO_TOLERANCE < start + seconds:
            raise Rejection("too_short", f"{path}: the audio track is only {declared:.2f} s long (needs {start + seconds:g} s)")
        raise Rejection("truncated", f"{path}: audio stops at {reached:.2f} s, before the window's end at {start + seconds:g} s")
    return fit_length(audio, round(seconds * rate)), damage


def visual_change(path: Path, start: float, seconds: float, options: ClipOptions) -> dict:
    """How much the picture changes across the window; raises ``Rejection("static_video")`` when too little.

    With a trained image tower: the mean pairwise cosine similarity of CLIP embeddings of frames sampled across
    the window (VMAs' filter; a truly static window scores 1.0). An untrained (random) tower maps every picture to
    nearly the same point (similarity about 0.996 for an animated short), so then the measure needs no weights:
    the mean absolute difference of consecutive sampled frames, in grey levels / 255. At least 4 frames are
    compared however short the window. Returns the stats for the clip's record.
    """
    encoder = _WORKER["encoder"]
    fps = max(options.similarity_fps, 4.0 / seconds)
    try:
        frames = sample_frames(path, fps, encoder.image_size, fps, 64, start=start, max_seconds=seconds)
    except VideoError as error:
        raise Rejection(video_reason(error), str(error)) from None
    last = float(frames.clip_times[-1])
    if last < seconds - 1.5 / fps - LENGTH_TOLERANCE:
        raise Rejection("truncated", f"{path}: video frames stop at {start + last:.2f} s, before the window's end at {start + seconds:g} s")
    if options.semantic.pretrained is None:
        change = mean_frame_difference(frames.flow_frames)
        if change < options.min_frame_change:
            raise Rejection("static_video", f"mean difference of consecutive sampled frames is {change:.4f} "
                                            f"(< --min-frame-change {options.min_frame_change:g}; the image tower is "
                                            "untrained, so frames are compared pixel by pixel)")
        return {"frame_change": round(change, 5)}
    similarity = mean_pairwise_similarity(encoder(frames.clip_frames).cpu().numpy())
    if similarity > options.max_frame_similarity:
        raise Rejection("static_video", f"mean CLIP similarity of sampled frames is {similarity:.3f} "
                                        f"(> --max-frame-similarity {options.max_frame_similarity:g})")
    return {"frame_similarity": round(similarity, 4)}


def mean_frame_difference(frames: np.ndarray) -> float:
    """grey uint8 [N, h, w] -> mean absolute difference of consecutive frames / 255 (0.0 for fewer than two)."""
    if len(frames) < 2:
        return 0.0
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() / 255.0)


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
