"""infer.py end to end on generated videos, and every kind of bad input a user can give it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ROOT, write_video


def _infer(*args: str, model: tuple[str, ...] = ("--config", "tiny")) -> subprocess.CompletedProcess:
    """infer.py with the tiny untrained preset (fast) unless ``model`` says otherwise."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *args, *model], capture_output=True, text=True,
                          env=env, timeout=600)


def _streams(path: Path) -> dict[str, float]:
    with av.open(str(path)) as container:
        return {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration is not None}


def test_video_with_audio_gets_new_music_of_its_length(tmp_path):
    video = write_video(tmp_path / "in.mp4", seconds=2.5, audio=True)
    result = _infer("--video", str(video), "--out", str(tmp_path / "out.mp4"), "--wav-out", str(tmp_path / "m.wav"),
                    "--seed", "3")
    assert result.returncode == 0, result.stderr
    streams = _streams(tmp_path / "out.mp4")
    assert set(streams) == {"video", "audio"}
    assert streams["video"] == pytest.approx(2.5, abs=0.05) and streams["audio"] == pytest.approx(2.5, abs=0.1)
    import soundfile as sf

    music, rate = sf.read(tmp_path / "m.wav")
    assert rate == 32000 and len(music) == 2.5 * 32000 and abs(music).max() > 0.5  # peak-normalised
    assert "UNTRAINED" in result.stderr  # an untrained model says it makes noise
    with av.open(str(tmp_path / "out.mp4")) as out, av.open(str(video)) as source:
        assert out.streams.video[0].codec_context.name == source.streams.video[0].codec_context.name  # copied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "m.wav", "out.mp4"]  # no temp files left


def test_default_model_runs_and_says_what_it_is(tmp_path):
    from model.v2m import default_model_is_trained

    video = write_video(tmp_path / "in.mp4", seconds=1.0, size=(64, 48))
    result = _infer("--video", str(video), "--out", str(tmp_path / "out.mp4"), model=())
    assert result.returncode == 0, result.stderr
    assert ("toy demo model" if default_model_is_trained() else "UNTRAINED") in result.stderr
    assert set(_streams(tmp_path / "out.mp4")) == {"video", "audio"}


def test_long_video_is_capped_and_says_so(tmp_path):
    video = write_video(tmp_path / "long.mp4", seconds=4.0, fps=8, size=(32, 32))
    result = _infer("--video", str(video), "--out", str(tmp_path / "o.mp4"), "--max-seconds", "1.5")
    assert result.returncode == 0, result.stderr
    assert "music covers the first 1.5 s" in result.stderr
    assert _streams(tmp_path / "o.mp4")["audio"] == pytest.approx(1.5, abs=0.1)



def test_a_three_minute_video_gets_music_all_the_way_through(tmp_path, capsys):
    import infer

    video = write_video(tmp_path / "long.mp4", seconds=180.0, fps=5, size=(32, 32), cut_every=20.0)
    infer.main(["--video", str(video), "--out", str(tmp_path / "o.mp4"), "--wav-out", str(tmp_path / "m.wav"),
                "--config", "tiny", "--guidance-scale", "1"])  # in-process: one interpreter start fewer
    assert "windows: 100%" in capsys.readouterr().err  # a progress bar per window
    streams = _streams(tmp_path / "o.mp4")
    assert streams["video"] == pytest.approx(180.0, abs=0.3) and streams["audio"] == pytest.approx(180.0, abs=0.2)
    import soundfile as sf

    music, rate = sf.read(tmp_path / "m.wav")
    assert len(music) == 180 * rate and all(abs(music[i * rate * 30:(i + 1) * rate * 30]).max() > 0.05
                                             for i in range(6))  # no silent stretch


@pytest.mark.parametrize("seconds, audio", [(0.3, False), (2.0, False), (0.3, True)])
def test_very_short_videos_and_videos_without_audio_get_music(tmp_path, seconds, audio):
    video = write_video(tmp_path / "in.mp4", seconds=seconds, fps=10, size=(64, 48), audio=audio)
    result = _infer("--video", str(video), "--out", str(tmp_path / "o.mp4"), "--wav-out", str(tmp_path / "m.wav"))
    assert result.returncode == 0, result.stderr
    streams = _streams(tmp_path / "o.mp4")
    assert set(streams) == {"video", "audio"} and streams["audio"] == pytest.approx(seconds, abs=0.1)
    import soundfile as sf

    music, rate = sf.read(tmp_path / "m.wav")
    assert len(music) == round(seconds * rate) and abs(music).max() > 0.5


def _audio_only(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=32000)
    for i in range(30):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 32000, i * 1024
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def _truncated(path: Path, tmp_path: Path) -> Path:
    data = write_video(tmp_path / "whole.mp4", seconds=2.0).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p, t: p, "no such file"),
    (lambda p, t: (p.mkdir(), p)[1], "is a directory"),
    (lambda p, t: (p.write_text("just text, not a video\n" * 20), p)[1], "not a readable video"),
    (lambda p, t: (p.write_bytes(b""), p)[1], "empty file"),
    (lambda p, t: _truncated(p, t), "not a readable video|corrupt or truncated"),
    (lambda p, t: _audio_only(p), "has no video stream"),
])
def test_bad_inputs_fail_cleanly(tmp_path, make, message):
    video = make(tmp_path / "input.mp4", tmp_path)
    out = tmp_path / "out.mp4"
    result = _infer("--video", str(video), "--out", str(out))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and __import__("re").search(message, lines[0]), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_refuses_to_overwrite_the_input_and_keeps_existing_outputs(tmp_path):
    video = write_video(tmp_path / "in.mp4", seconds=1.0)
    before = video.read_bytes()
    result = _infer("--video", str(video), "--out", str(video))
    assert result.returncode == 2 and "is the input video" in result.stderr and video.read_bytes() == before
    result = _infer("--video", str(video), "--out", str(tmp_path / "x.mp4"), "--wav-out", str(tmp_path / "x.mp4"))
    assert result.returncode == 2 and "are the same file" in result.stderr and not (tmp_path / "x.mp4").exists()
    (tmp_path / "keep.mp4").write_bytes(b"precious")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    result = _infer("--video", str(bad), "--out", str(tmp_path / "keep.mp4"))
    assert result.returncode == 2 and (tmp_path / "keep.mp4").read_bytes() == b"precious"


@pytest.mark.parametrize("args, message", [(["--guidance-scale", "0.5"], "--guidance-scale"),
                                           (["--max-seconds", "0"], "--max-seconds"),
                                           (["--window-seconds", "31"], "--window-seconds"),
                                           (["--overlap-seconds", "30"], "--overlap-seconds"),
                                           (["--overlap-seconds", "-1"], "--overlap-seconds"),
                                           (["--model", "/no/such/model"], "not a model folder")])
def test_bad_options(tmp_path, args, message):
    video = write_video(tmp_path / "in.mp4", seconds=1.0)
    result = _infer("--video", str(video), "--out", str(tmp_path / "o.mp4"), *args,
                    model=() if "--model" in args else ("--config", "tiny"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
