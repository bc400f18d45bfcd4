"""Which files to curate: a folder searched recursively, or a manifest (CSV or JSONL) of local paths with metadata.

A manifest has a ``path`` column and optional ``id``, ``title``, ``tags`` (a list in JSONL; ``;``-separated in
CSV) and ``caption`` (a description of the music: the clip's text prompt for training; without it, title and
tags). Its paths are relative to the manifest's folder and must stay inside it unless ``allow_outside`` is given: a
manifest from someone else must not make curation read (and then publish) files from elsewhere on the machine.

Video ids are stable: given in the manifest, or made from the path relative to the folder or manifest (a readable
slug plus a short hash of that path), so the split of a video does not change when other files come and go.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SourceError(UserError):
    """An input folder or manifest that cannot be used; the message is one line meant for the user."""


@dataclass
class SourceVideo:
    path: str  # absolute path
    id: str
    title: str = ""
    tags: list[str] = field(default_factory=list)
    caption: str = ""


def path_id(relative: str) -> str:
    """A stable id from a path relative to the input: ``trailers/Big Day.mp4`` -> ``Big-Day-1f3a9c02``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(relative).stem).strip("-._")[:48] or "video"
    return f"{stem}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}"


def find_sources(input_path: str | Path, allow_outside: bool = False, exclude: Path | None = None) -> list[SourceVideo]:
    """The videos named by a folder or a manifest, sorted by id; ids are checked to be valid and unique."""
    input_path = Path(input_path)
    if input_path.is_dir():
        sources = _scan_folder(input_path, exclude)
    elif input_path.is_file() and input_path.suffix.lower() in MANIFEST_SUFFIXES:
        sources = _read_manifest(input_path, allow_outside)
    elif input_path.exists():
        raise SourceError(f"--input {input_path} must be a folder or a .csv / .jsonl manifest")
    else:
        raise SourceError(f"--input {input_path} does not exist")
    _check_unique(sources)
    return sorted(sources, key=lambda s: s.id)


def _scan_folder(folder: Path, exclude: Path | None) -> list[SourceVideo]:
    """Video files under ``folder`` (symlinked folders are not followed; ``exclude``, e.g. the output, is skipped)."""
    root, sources = folder.resolve(), []
    skip = exclude.resolve() if exclude is not None else None
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and Path(directory, d) != skip)
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES and ".partial." not in name:
                relative = Path(directory, name).relative_to(root).as_posix()
                sources.append(SourceVideo(str(Path(directory, name)), path_id(relative)))
    return sources


def _read_manifest(manifest: Path, allow_outside: bool) -> list[SourceVideo]:
    entries = _manifest_rows(manifest)
    base, sources = manifest.resolve().parent, []
    for line, entry in entries:
        where = f"{manifest}:{line}"
        raw = str(entry.get("path") or "").strip()
        if not raw:
            raise SourceError(f"{where}: no path")
        resolved = (base / raw).resolve()
        if not allow_outside and not resolved.is_relative_to(base):
            raise SourceError(f"{where}: path {raw!r} is outside the manifest's folder {base} "
                             f"(pass --allow-outside to allow it)")
        video_id = str(entry.get("id") or "").strip() or path_id(_relative_name(resolved, base))
        if not ID_PATTERN.match(video_id):
            raise SourceError(f"{where}: id {video_id!r} must be 1-128 letters, digits, '.', '_' or '-' "
                             f"(starting with a letter or digit)")
        sources.append(SourceVideo(str(resolved), video_id, str(entry.get("title") or ""),
                                   _tags(entry.get("tags"), where), str(entry.get("caption") or "")))
    return sources


def _relative_name(resolved: Path, base: Path) -> str:
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else resolved.as_posix()


def _manifest_rows(manifest: Path) -> list[tuple[int, dict]]:
    """(line number, entry) pairs; blank lines are skipped."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"{manifest}: cannot read the manifest ({error})") from None
    if manifest.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if "path" not in (reader.fieldnames or []):
            raise SourceError(f"{manifest}: a CSV manifest needs a 'path' column (has {reader.fieldnames})")
        return [(reader.line_num, row) for row in reader]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{manifest}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(entry, dict):
                raise SourceError(f"{manifest}:{number}: each line must be a JSON object with a 'path'")
            rows.append((number, entry))
    return rows


def _tags(value, where: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(";") if tag.strip()]
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return value
    raise SourceError(f"{where}: tags must be a list of strings or a ';'-separated string, got {value!r}")


def _check_unique(sources: list[SourceVideo]) -> None:
    seen: dict[str, str] = {}
    for source in sources:
        if source.id in seen:
            raise SourceError(f"video id {source.id!r} is used twice ({seen[source.id]} and {source.path})")
        seen[source.id] = source.path


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> (2, 8): this machine curates shard 2 of 8 (0-based)."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"--shard must look like i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def in_shard(video_id: str, shard: tuple[int, int]) -> bool:
    """Shards by a hash of the id, so each machine's part does not move when the input list changes."""
    index, count = shard
    return int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "big") % count == index
