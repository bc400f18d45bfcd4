"""The per-clip cache: one small ``.npz`` per clip and kind, written atomically and stamped with the media it came
from, so a killed run resumes and a remade clip is never served stale features.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.features.keys import CACHE_DIR, KINDS, media_stamp


def cache_path(dataset_dir: Path, kind: str, key: str, clip_id: str) -> Path:
    return dataset_dir / CACHE_DIR / f"{kind}__{key}" / f"{clip_id}.npz"


def cached_stamp(path: Path) -> str | None:
    """The media stamp a cache file was made from (None if missing or torn); reads nothing else."""
    try:
        with np.load(path) as data:
            return str(data["stamp"])
    except (OSError, KeyError, ValueError, EOFError):
        return None


def write_cache(path: Path, stamp: str, **arrays: np.ndarray) -> None:
    """Write under a temporary name, then rename: a file named ``*.npz`` is always complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
        np.savez(f, stamp=np.asarray(stamp), **arrays)
    tmp.replace(path)


def remove_partial_files(dataset_dir: Path) -> None:
    """Temporary files of a run that was killed while writing them."""
    for path in (dataset_dir / CACHE_DIR).glob("*/.*.partial"):
        path.unlink(missing_ok=True)


def stale_kinds(dataset_dir: Path, rows: list[dict], keys: dict) -> list[tuple[dict, set[str]]]:
    """(row, kinds to compute) for every row lacking a cache entry made from its current media."""
    todo = []
    for row in rows:
        stamps = {"video": media_stamp(dataset_dir / row["video_path"]), "music": media_stamp(dataset_dir / row["music_path"])}
        kinds = {kind for kind in KINDS if cached_stamp(cache_path(dataset_dir, kind, keys[kind], row["id"]))
                 != stamps["music" if kind == "codes" else "video"]}
        if kinds:
            todo.append((row, kinds))
    return todo
