"""Where the frozen encoders run (and only here): CLIP and optical flow on each clip's frames, the codec on its
music; results go to the per-clip cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.errors import UserError
from data.features.cache import cache_path, write_cache
from data.features.keys import media_stamp
from media.audio import read_audio


def compute_video_features(model, dataset_dir: Path, row: dict, keys: dict, kinds: set[str]) -> None:
    """Decode the clip once, run both streams, cache the kinds asked for."""
    video = dataset_dir / row["video_path"]
    features = model.extract_features(video, max_seconds=float(row["duration"]))
    stamp = media_stamp(video)
    if "semantic" in kinds:
        write_cache(cache_path(dataset_dir, "semantic", keys["semantic"], row["id"]), stamp,
                    values=features.semantic.numpy().astype(np.float16), times=features.semantic_times.numpy())
    if "motion" in kinds:
        write_cache(cache_path(dataset_dir, "motion", keys["motion"], row["id"]), stamp,
                    values=features.motion.numpy().astype(np.float32), times=features.motion_times.numpy())


def compute_codes(codec, dataset_dir: Path, rows: list[dict], key: str) -> None:
    """Encode the music of ``rows``, batching clips of equal length (no padding changes any clip's codes)."""
    waves = {row["id"]: read_audio(dataset_dir / row["music_path"], codec.sample_rate)[0] for row in rows}
    by_length: dict[int, list[dict]] = {}
    for row in rows:
        by_length.setdefault(len(waves[row["id"]]), []).append(row)
    dtype = np.int16 if codec.codebook_size <= np.iinfo(np.int16).max else np.int32
    for group in by_length.values():
        batch = torch.from_numpy(np.stack([waves[row["id"]] for row in group]))[:, None]  # [B, 1, S]
        codes = codec.encode(batch).cpu().numpy()  # [B, K, T]
        for row, row_codes in zip(group, codes):
            write_cache(cache_path(dataset_dir, "codes", key, row["id"]), media_stamp(dataset_dir / row["music_path"]),
                        values=row_codes.astype(dtype))


def compute_missing(model, dataset_dir: Path, todo: list[tuple[dict, set[str]]], keys: dict, batch_size: int,
                    progress: bool) -> list[str]:
    """Fill the cache for ``todo`` (see ``stale_kinds``), ``batch_size`` clips at a time; returns failure messages.

    A file that cannot be read is a failure of its clip; running out of memory or a device error stops the run
    at once (every later clip would fail the same way)."""
    failures = []
    bar = tqdm(total=len(todo), desc="features", unit="clip", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        for row, kinds in batch:
            if kinds & {"semantic", "motion"}:
                try:
                    compute_video_features(model, dataset_dir, row, keys, kinds)
                except (UserError, FileNotFoundError) as error:  # this clip's file; memory or device: stop
                    failures.append(f"{row['id']}: {str(error).splitlines()[0]}")
        music_rows = [row for row, kinds in batch if "codes" in kinds]
        try:
            compute_codes(model.codec, dataset_dir, music_rows, keys["codes"])
        except (UserError, FileNotFoundError) as error:  # an unreadable file; out of memory or a device error stops
            failures.append(f"music of {[row['id'] for row in music_rows]}: {str(error).splitlines()[0]}")
        bar.update(len(batch))
    bar.close()
    return failures


def encode_music_files(codec, paths: list[Path], progress: bool = True) -> list[torch.Tensor]:
    """Codes int16 [K, T] of whole audio files of any length and format (the codec on its device, results on the
    CPU); for pretraining a decoder on music alone."""
    codes = []
    for path in tqdm(paths, desc="encoding music", unit="file", disable=not progress):
        wav = torch.from_numpy(read_audio(path, codec.sample_rate)[0])[None, None]  # [1, 1, S]
        codes.append(codec.encode(wav)[0].to(torch.int16).cpu())
    return codes
