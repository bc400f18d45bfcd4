"""Muxing music into the user's video: with the ffmpeg command, and through PyAV where ffmpeg is not installed
(a bare GPU server or a pip-only setup). Both keep the picture untouched and give the music its full length."""
from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from media import mux
from media.audio import write_wav

SAMPLE_RATE = 32000


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """{stream type: (codec name, seconds)} of ``path``."""
    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base)) for s in container.streams}


@pytest.mark.parametrize("ffmpeg_installed", [True, False])
def test_the_music_goes_in_and_the_picture_is_copied(tmp_path, video_path, monkeypatch, ffmpeg_installed):
    if not ffmpeg_installed:
        real_which = shutil.which
        monkeypatch.setattr(mux.shutil, "which", lambda name, *a, **k: None if name == "ffmpeg" else real_which(name))
        monkeypatch.setattr(mux, "_run_ffmpeg", lambda args: pytest.fail("the ffmpeg command was called"))
    music = 0.3 * np.sin(np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE * 2 * np.pi * 440).astype(np.float32)
    write_wav(tmp_path / "music.wav", music, SAMPLE_RATE)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the user's old file")
    mux.mux_music(video_path, tmp_path / "music.wav", out)
    found, source = streams(out), streams(video_path)
    assert found["video"][0] == source["video"][0]  # copied, not re-encoded
    assert found["video"][1] == pytest.approx(source["video"][1], abs=0.05)
    assert found["audio"][0] == "aac" and found["audio"][1] == pytest.approx(2.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_without_ffmpeg_a_file_with_no_picture_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mux.shutil, "which", lambda name, *a, **k: None)
    write_wav(tmp_path / "music.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (tmp_path / "not_a_video.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(mux.MediaError, match="PyAV") as error:
        mux.mux_music(tmp_path / "not_a_video.mp4", tmp_path / "music.wav", tmp_path / "out.mp4")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["music.wav", "not_a_video.mp4"]
