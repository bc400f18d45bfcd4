"""Videos a new user has and our fixtures did not: extreme shapes, one frame, timelines that start late.

Native code (OpenCV's DIS flow) kills the whole process on some inputs instead of raising, so those paths run
in a subprocess here: a crash is then a failed assertion on its exit status, not a dead test session.
"""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def write_clip(path: Path, width: int, height: int, frames: int, fps: int = 25, codec: str = "libx264",
               container_format: str | None = None) -> Path:
    """A moving bar on grey, ``frames`` frames of ``width`` x ``height`` (even sizes for yuv420p codecs)."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(frames):
            image = np.full((height, width, 3), 90, np.uint8)
            image[:, (7 * k) % width:(7 * k) % width + max(2, width // 10)] = 230
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("height, width", [(6, 128), (8, 128), (31, 128), (128, 6), (1, 1), (2, 640)])
def test_dis_flow_takes_frames_of_any_size(height, width):
    """8..31 px high at 128 wide crashed OpenCV 5.0's DIS with SIGSEGV (the 1920x96 video of the issue)."""
    done = _python(f"""
import numpy as np
from model.config import MotionConfig
from model.motion import motion_features
rng = np.random.default_rng(0)
frames = rng.integers(0, 255, (3, {height}, {width}), dtype=np.uint8)
frames[1:] = np.roll(frames[0], 1, axis=1)
features, times = motion_features(frames, np.array([0.0, 0.1, 0.2]), MotionConfig(algorithm="dis"))
assert features.shape[0] == 2 and np.isfinite(features).all(), features
print("ok")
""")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-1500:]


def test_padded_flow_keeps_the_frame_size_and_its_motion():
    from model.motion import DIS_MIN_SIDE, create_flow

    rng = np.random.default_rng(1)
    prev = rng.integers(0, 255, (12, 96), dtype=np.uint8)
    prev = np.repeat(np.repeat(prev[:, ::4], 4, axis=1), 1, axis=0)  # blocky texture DIS can follow
    nxt = np.roll(prev, 2, axis=1)
    flow = create_flow("dis")(prev, nxt)
    assert prev.shape[0] < DIS_MIN_SIDE and flow.shape == (12, 96, 2)
    assert np.median(flow[:, 8:-8, 0]) > 1.0  # rightward motion is seen in the frame's own pixels


def test_a_very_wide_short_video_gets_music(tmp_path):
    video = write_clip(tmp_path / "wide.mp4", 1920, 96, 50)
    out = tmp_path / "out.mp4"
    done = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--video", str(video), "--out", str(out),
                           "--config", "tiny"], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    with av.open(str(out)) as container:
        assert container.streams.audio and container.streams.video


def test_times_count_from_the_files_own_start(tmp_path):
    """MPEG-PS files start their timeline at 0.5 s: a one-frame clip there was 'no video frame could be decoded'."""
    from media.audio import decode_audio
    from media.video import probe_video, sample_frames

    video = write_clip(tmp_path / "one.mpg", 320, 240, 1, codec="mpeg1video", container_format="mpeg")
    with av.open(str(video)) as container:
        assert container.start_time > 0  # the case under test
    info = probe_video(video)
    frames = sample_frames(video, 2.0, 64, 10.0, 64, max_seconds=info.duration)
    assert len(frames.clip_frames) == 1 and frames.clip_times[0] == pytest.approx(0.0, abs=1e-6)
    late = write_clip(tmp_path / "late.mpg", 64, 64, 50, codec="mpeg1video", container_format="mpeg")
    first = sample_frames(late, 2.0, 64, 10.0, 64, max_seconds=0.5)  # the first half second, not 0.5 s..1 s
    assert len(first.flow_times) == 5 and first.flow_times[0] == pytest.approx(0.0, abs=0.05)
    later = sample_frames(late, 2.0, 64, 10.0, 64, start=1.0, max_seconds=0.5)
    assert len(later.flow_times) == 5 and later.flow_times[0] == pytest.approx(0.0, abs=0.05)
    assert decode_audio(ROOT / "examples" / "example.mp4", 16000, start=1.0, seconds=0.5).shape == (1, 8000)


def test_a_one_frame_video_gets_music_of_its_length(tmp_path):
    """With the default model: its spectral codec's inverse STFT needed more samples than one code frame gives."""
    video = write_clip(tmp_path / "one.mpg", 320, 240, 1, codec="mpeg1video", container_format="mpeg")
    out, wav = tmp_path / "out.mp4", tmp_path / "music.wav"
    done = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--video", str(video), "--out", str(out),
                           "--wav-out", str(wav)], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1500:]
    import soundfile as sf

    assert 0.0 < sf.info(str(wav)).duration <= 0.05


def test_the_spectral_codec_decodes_a_single_frame():
    from model.spectral_codec import SpectralCodec

    codec = SpectralCodec(torch.rand(2, 4, 1025))
    for frames in (0, 1, 2, 5):
        wav = codec.decode(torch.zeros(1, 2, frames, dtype=torch.long))
        assert wav.shape == (1, 1, frames * codec.hop) and torch.isfinite(wav).all()
