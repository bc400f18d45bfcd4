"""Writing files so that a kill at any moment leaves either the old file or the new one, never half of either.

- ``atomic_write_text`` / ``atomic_write_json``: a temporary sibling, then ``os.replace`` (atomic on POSIX);
- ``temporary_sibling``: a fresh temporary name beside a target (same filesystem, so the rename is atomic);
- ``replace_folder``: build a whole folder beside its target and swap it in (``save_pretrained``);
- ``OwnedFolder``: an output folder a tool may resume or overwrite, deleting only what it wrote itself.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from common.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (os.umask has no read-only form, and setting it while other threads create files would race).
UMASK = _current_umask()


def temporary_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh temporary file name next to ``path`` (created empty, so two writers never share it)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(handle)
    # mkstemp makes it owner-only (0600); once renamed into place it is the user's output, with the usual mode
    os.chmod(name, 0o666 & ~UMASK)
    return Path(name)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary sibling and a rename."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


@contextlib.contextmanager
def replace_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; when the block ends normally it becomes ``target``.

    The old ``target`` (if any) stays whole until the new one is complete: it is renamed aside, the new folder
    renamed in, then the old one deleted. A kill between the two renames leaves the old folder under
    ``.<name>.old``, which the next call restores before starting. On an exception the new folder is deleted.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    if old.is_dir() and not target.exists():
        os.replace(old, target)  # an earlier swap was cut between its renames
    shutil.rmtree(old, ignore_errors=True)
    new = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    os.chmod(new, 0o777 & ~UMASK)  # mkdtemp's 0700 would make a saved model unreadable to anyone else
    try:
        yield new
        _readable_as_umask_allows(new)
        if target.exists():
            os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(new, ignore_errors=True)


def _readable_as_umask_allows(folder: Path) -> None:
    """Give everything under ``folder`` the read (and, for folders, search) bits the umask allows: libraries that
    write through mkstemp (transformers' ``save_pretrained`` writes ``model.safetensors`` 0600) would otherwise make
    a saved model's weights unreadable to the group that shares it."""
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        wanted = (0o555 if path.is_dir() else 0o444) & ~UMASK
        mode = path.stat().st_mode & 0o7777
        if mode & wanted != wanted:
            os.chmod(path, mode | wanted)


class OwnedFolder:
    """An output folder that one tool writes, resumes and may overwrite, with a marker naming what it wrote.

    The marker (``.<tool>.json`` inside the folder, or the name given) holds the tool's settings and the top-level entries the tool
    created. ``prepare`` refuses a non-empty folder without the marker (someone else's files), refuses to resume
    with other settings, and with ``overwrite`` deletes only the entries the marker lists, never anything else.
    """

    def __init__(self, path: str | Path, tool: str, error: type[UserError] = UserError, marker: str | None = None):
        self.path = Path(path)
        self.tool = tool
        self.error = error  # the tool's own UserError subclass
        self.marker = self.path / (marker or f".{tool.replace(' ', '_')}.json")

    def read_marker(self) -> dict | None:
        try:
            return json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return None

    def prepare(self, params: dict, overwrite: bool = False, changed_ok: bool = False) -> bool:
        """Make the folder ready; returns True when an earlier run of the same settings is being resumed.

        ``changed_ok``: settings may differ from the earlier run's (nothing was made yet that depends on them).
        """
        if self.path.exists() and not self.path.is_dir():
            raise self.error(f"{self.path} is a file, not a folder")
        marker = self.read_marker() if self.path.is_dir() else None
        if self.path.is_dir() and any(self.path.iterdir()) and marker is None:
            raise self.error(f"{self.path} is not empty and was not made by {self.tool}; choose another folder "
                             "(nothing in it was changed)")
        if marker is not None and overwrite:
            self.remove_written(marker)
            marker = None
        elif marker is not None and marker.get("params") != params and not changed_ok:
            changed = sorted(k for k in params.keys() | marker.get("params", {}).keys()
                             if marker.get("params", {}).get(k) != params.get(k))
            raise self.error(f"{self.path} was made by {self.tool} with other settings ({', '.join(changed)}); "
                             "pass --overwrite or choose another folder")
        self.path.mkdir(parents=True, exist_ok=True)
        written = sorted(set(marker.get("written", [])) if marker else set())
        atomic_write_json(self.marker, {"tool": self.tool, "params": params, "written": written})
        return marker is not None

    def claim(self, *names: str) -> None:
        """Record top-level entries as this tool's (before creating them, so a kill never orphans one)."""
        marker = self.read_marker() or {"tool": self.tool, "params": {}, "written": []}
        written = sorted(set(marker.get("written", [])) | set(names))
        if written != marker.get("written"):
            atomic_write_json(self.marker, {**marker, "written": written})

    def remove_written(self, marker: dict) -> None:
        for name in marker.get("written", []):
            entry = self.path / name
            if Path(name).name != name or name in ("", ".", ".."):
                continue  # a marker edited by hand must not point outside the folder
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
        self.marker.unlink(missing_ok=True)
