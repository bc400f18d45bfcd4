"""Video-music pairs of one split for the retrieval head: cached video features on the head's grid, music frames.

Video features come from the feature cache (``python -m data.features``: the demo model's encoders); music frames
(``model/music_features.py``, librosa) are computed here once per clip and cached beside the other features as
``features/music_frames__<version>/<id>.npz``, stamped with the WAV they came from (a remade clip is recomputed).

    ClipPair: semantic [K, Dc], motion [K, Dm] (grid, 10 Hz), music [4 K', F] (40 Hz), beat seconds, event times
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from data.features import cache_path, cached_columns, cached_stamp, media_stamp, row_features, write_cache
from media.audio import read_audio
from model.config import V2MConfig
from model.music_features import SAMPLE_RATE, music_features
from model.video_music_embedding import video_grid

MUSIC_KIND, MUSIC_KEY = "music_frames", "v1"  # bump the key when music_features changes


@dataclass
class ClipPair:
    id: str
    semantic: torch.Tensor  # [K, Dc]
    motion: torch.Tensor  # [K, Dm]
    music: torch.Tensor  # [T, F] at 40 Hz, T >= 4 K
    beat: float  # seconds per beat (synthetic ground truth; 0.5 when unknown)
    events: np.ndarray  # [E] seconds of cuts and impacts (may be empty)


def load_pairs(dataset_dir: str | Path, split: str, config: V2MConfig) -> list[ClipPair]:
    """Every clip of ``split`` with ``config``'s cached video features (``data.features`` must have run)."""
    from datasets import load_from_disk

    dataset_dir = Path(dataset_dir)
    try:
        rows = load_from_disk(str(dataset_dir))[split]
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise UserError(f"{dataset_dir}: cannot read split {split!r} ({error})") from None
    columns = cached_columns(rows, config)
    if columns is None:
        raise UserError(f"{dataset_dir}: no cached features for these encoders; run python -m data.features first")
    return [_pair(dataset_dir, row, columns) for row in rows]


def _pair(dataset_dir: Path, row: dict, columns: dict) -> ClipPair:
    features, _ = row_features(row, columns)
    semantic, motion = video_grid(features)
    music = torch.from_numpy(cached_music_frames(dataset_dir, row["id"], dataset_dir / row["music_path"]))
    beat = 60.0 / float(row["tempo"]) if row.get("tempo") else 0.5
    return ClipPair(row["id"], semantic, motion, music, beat, np.asarray(row.get("event_times") or [], np.float64))


def cached_music_frames(dataset_dir: Path, clip_id: str, wav_path: Path) -> np.ndarray:
    """[T, F] music frames of one clip, from the cache when it was made from this very file."""
    path = cache_path(dataset_dir, MUSIC_KIND, MUSIC_KEY, clip_id)
    stamp = media_stamp(wav_path)
    if cached_stamp(path) == stamp:
        with np.load(path) as data:
            return data["values"]
    frames = music_features(read_audio(wav_path, SAMPLE_RATE)[0], SAMPLE_RATE)
    write_cache(path, stamp, values=frames)
    return frames
