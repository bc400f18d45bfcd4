"""common/files.py: atomic writes leave the old file or the new one, and the new one has the usual permissions."""
from __future__ import annotations

import os
import stat

import pytest

from common.files import UMASK, atomic_write_text, replace_folder


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_give_the_umask_mode_not_mkstemps_owner_only(tmp_path):
    out = tmp_path / "report.json"
    atomic_write_text(out, "{}")
    assert mode(out) == 0o666 & ~UMASK and out.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left behind


def test_a_replaced_folder_is_readable_like_any_new_folder(tmp_path):
    target = tmp_path / "model"
    with replace_folder(target) as new:
        (new / "config.json").write_text("{}")
    assert mode(target) == 0o777 & ~UMASK and (target / "config.json").is_file()


def test_a_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("old")

    with pytest.raises(TypeError):
        atomic_write_text(out, object())  # not text: fails before the rename
    assert out.read_text() == "old" and len(list(tmp_path.iterdir())) == 1
