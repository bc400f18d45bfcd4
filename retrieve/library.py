"""The user's music library: which files are tracks, and their embeddings, cached and refreshed when files change.

    CACHE/index.json               {"head": <fingerprint>, "tracks": {<path in the library>: {"size", "mtime_ns",
                                    "file", "seconds"}}}
    CACHE/<sha1 of the path>.safetensors   {"embedding": float16 [S, d]}: the music tower's steps (10 per second)

An entry is reused only when the head is the same (its fingerprint) and the file's size and modification time are
unchanged; otherwise the track is read and embedded again. Every file is written to a temporary sibling and renamed
(a kill leaves the old file or the new one), the index last, so the cache never names an embedding that is not
whole. Entries of files that left the library are dropped with their embeddings. No pickle: JSON and safetensors.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.cli import is_resource_error
from common.files import atomic_write_json, temporary_sibling
from media.audio import AudioError, read_audio

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".aif", ".aiff", ".wma")
CACHE_NAME = ".v2m-retrieve"  # default cache folder inside the library (hidden: never scanned as a track)
INDEX_NAME = "index.json"


@dataclass
class Track:
    path: Path
    name: str  # path inside the library, as shown
    seconds: float
    embedding: torch.Tensor  # [S, d] float32


@dataclass
class Library:
    tracks: list[Track]
    skipped: list[tuple[str, str]]  # (name, one-line reason)
    computed: int
    reused: int


def scan(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively, hidden folders and files left out), sorted by path."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES]
    return sorted(found)


class LibraryCache:
    """Embeddings of one library by one head (``fingerprint``), kept in ``folder``."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        index = self._read_index()
        self.entries: dict[str, dict] = index.get("tracks", {}) if index.get("head") == fingerprint else {}

    def _read_index(self) -> dict:
        try:
            index = json.loads((self.folder / INDEX_NAME).read_text())
            return index if isinstance(index, dict) else {}
        except (OSError, ValueError):
            return {}

    def lookup(self, name: str, path: Path) -> tuple[torch.Tensor, float] | None:
        """The cached embedding [S, d] and length of ``path`` if it is unchanged since it was cached."""
        entry, stat = self.entries.get(name), path.stat()
        if not entry or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            return None
        try:
            return load_file(str(self.folder / entry["file"]))["embedding"].float(), float(entry["seconds"])
        except Exception:  # noqa: BLE001 - a torn or foreign file: embed the track again
            return None

    def store(self, name: str, path: Path, embedding: torch.Tensor, seconds: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        file = hashlib.sha1(name.encode()).hexdigest()[:20] + ".safetensors"
        tmp = temporary_sibling(self.folder / file)
        try:
            save_file({"embedding": embedding.detach().to(torch.float16).cpu().contiguous()}, str(tmp))
            os.replace(tmp, self.folder / file)
        finally:
            tmp.unlink(missing_ok=True)
        stat = path.stat()
        self.entries[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "file": file, "seconds": seconds}

    def save(self, keep: set[str]) -> None:
        """Write the index (only ``keep``'s entries) and delete embeddings no entry names."""
        self.entries = {name: entry for name, entry in self.entries.items() if name in keep}
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / INDEX_NAME, {"head": self.fingerprint, "tracks": self.entries})
        named = {entry["file"] for entry in self.entries.values()}
        for file in self.folder.glob("*.safetensors"):
            if file.name not in named:
                file.unlink(missing_ok=True)


def embed_library(folder: Path, head, cache: LibraryCache, progress=None) -> Library:
    """Every track of ``folder`` embedded (from ``cache`` when unchanged); unreadable files are skipped with a
    reason. ``progress``: a callable told each track's name before it is read, or None."""
    from model.music_features import SAMPLE_RATE

    tracks, skipped, computed, reused = [], [], 0, 0
    for path in scan(folder):
        name = path.relative_to(folder).as_posix()
        cached = cache.lookup(name, path)
        if cached is not None:
            tracks.append(Track(path, name, cached[1], cached[0]))
            reused += 1
            continue
        if progress:
            progress(name)
        try:
            wav, rate = read_audio(path, SAMPLE_RATE)
        except AudioError as error:  # the name is shown beside the reason: say the path once
            skipped.append((name, " ".join(str(error).replace(f"{path}: ", "").replace(f": '{path}'", "").split())))
            continue
        except Exception as error:  # noqa: BLE001 - a decoder's own error on a damaged file: skip it, say why
            if is_resource_error(error):
                raise
            skipped.append((name, f"not a readable audio file ({type(error).__name__}: {str(error)[:120]})"))
            continue
        embedding = head.embed_wav(wav, rate)
        if embedding.shape[0] == 0:
            skipped.append((name, f"too short ({len(wav) / rate:.2f} s; at least 0.1 s is needed)"))
            continue
        cache.store(name, path, embedding, len(wav) / rate)
        stored = embedding.detach().cpu().to(torch.float16).float()  # as a later run reads it from the cache
        tracks.append(Track(path, name, len(wav) / rate, stored))
        computed += 1
    cache.save({track.name for track in tracks})
    return Library(tracks, skipped, computed, reused)
