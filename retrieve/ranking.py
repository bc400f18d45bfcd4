"""Score every track against the video at every offset and rank the tracks by their best window.

A track's score is the best of ``offset_scores`` (model/video_music_embedding.py): the video's step embeddings
[K, d] slid along the track's [S, d], one offset per 0.1 s step. The best offset says where in the track the video
should start, so the track's beats fall on the video's cuts. A track shorter than the video has one window: its
whole length against the video's first seconds (and the match says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model.video_music_embedding import STEP_RATE, offset_scores


@dataclass
class Match:
    name: str
    path: Path
    score: float  # mean step cosine of the best window, in [-1, 1]
    offset: float  # seconds into the track where the video starts
    seconds: float  # the track's length
    note: str = ""


def best_offset(video: torch.Tensor, music: torch.Tensor) -> tuple[float, float]:
    """(score, offset in seconds) of the best window of ``music`` [S, d] for ``video`` [K, d]."""
    scores = offset_scores(video, music)
    best = int(scores.argmax())
    return float(scores[best]), best / STEP_RATE


def rank(video: torch.Tensor, tracks, top: int | None = None) -> list[Match]:
    """``tracks`` (``retrieve.library.Track``) sorted by best-window score, highest first (ties by name)."""
    matches = []
    for track in tracks:
        score, offset = best_offset(video, track.embedding)
        note = ""
        if track.embedding.shape[0] < video.shape[0]:
            note = f"shorter than the video: scored against its first {track.embedding.shape[0] / STEP_RATE:.1f} s"
        matches.append(Match(track.name, track.path, score, offset, track.seconds, note))
    matches.sort(key=lambda m: (-m.score, m.name))
    return matches[:top] if top else matches


def format_table(matches: list[Match]) -> str:
    """One line per match: rank, score, offset (where to start the track), length, name and any note."""
    lines = [f"{'rank':>4}  {'score':>6}  {'start at':>9}  {'length':>8}  track"]
    for i, match in enumerate(matches, 1):
        note = f"  ({match.note})" if match.note else ""
        lines.append(f"{i:>4}  {match.score:6.3f}  {match.offset:7.1f} s  {match.seconds:6.1f} s  {match.name}{note}")
    return "\n".join(lines)
