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


def test_a_saved_model_folder_has_no_owner_only_file(tmp_path):
    """transformers' save_pretrained writes model.safetensors 0600; a saved model must be readable as the umask says."""
    from model.config import load_config
    from model.v2m import VideoToMusic

    tiny_t5 = "{vocab_size: 384, d_model: 16, d_kv: 8, d_ff: 32, num_layers: 1, num_heads: 2}"
    config = load_config("tiny", ["text.enabled=true", f"text.random_init={tiny_t5}"])
    VideoToMusic.from_config(config).save_pretrained(tmp_path / "m")
    weights = sorted((tmp_path / "m").rglob("*.safetensors"))
    assert {p.parent.name for p in weights} >= {"m", "text_encoder"}
    for path in (tmp_path / "m").rglob("*"):
        wanted = (0o555 if path.is_dir() else 0o444) & ~UMASK
        assert mode(path) & wanted == wanted, (path, oct(mode(path)))


def test_a_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("old")

    with pytest.raises(TypeError):
        atomic_write_text(out, object())  # not text: fails before the rename
    assert out.read_text() == "old" and len(list(tmp_path.iterdir())) == 1
