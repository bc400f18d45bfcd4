"""Shared fixtures: everything is generated here, tiny, offline (HF_HUB_OFFLINE=1), and built once per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def decaying_hits(times: list[float], seconds: float, sample_rate: int, noise: float = 0.003) -> np.ndarray:
    """Float32 [seconds * sample_rate]: a faint noise floor with a short decaying tone burst at each of ``times``."""
    wav = noise * np.random.default_rng(0).standard_normal(int(seconds * sample_rate)).astype(np.float32)
    burst = np.exp(-np.arange(2000) / 250.0) * np.sin(np.arange(2000) * 0.25)
    for t in times:
        start = int(t * sample_rate)
        wav[start:start + 2000] += burst[: len(wav[start:start + 2000])]
    return wav


def write_video(path: Path, seconds: float = 3.0, fps: int = 24, size: tuple[int, int] = (96, 64),
                cut_every: float = 1.0, audio: bool = False, codec: str = "libx264") -> Path:
    """A small mp4: a bar moving right and a background that jumps in brightness every ``cut_every`` s."""
    width, height = size
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    audio_stream = container.add_stream("aac", rate=32000) if audio else None
    for i in range(round(seconds * fps)):
        t = i / fps
        image = np.full((height, width, 3), 40 + 70 * (int(t / cut_every) % 3), np.uint8)
        x = int(t * 30) % max(1, width - 8)
        image[height // 3: height // 3 + 10, x: x + 8] = 255
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if audio_stream is not None:
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 32000)) / 32000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
        frame.sample_rate = 32000
        for packet in audio_stream.encode(frame):
            container.mux(packet)
        for packet in audio_stream.encode():
            container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="session")
def video_path(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture(scope="session")
def tiny_model():
    from model.v2m import VideoToMusic

    return VideoToMusic.from_config("tiny").eval()


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    """6 synthetic clips of 3 s (4 train / 1 test / 1 validation), additive renderer for speed."""
    from data import synthetic

    out = tmp_path_factory.mktemp("synthetic") / "set"
    synthetic.generate(out, n=6, seed=6, fractions=(0.6, 0.2, 0.2), seconds=3.0, height=48, fps=12,
                       renderer="additive", progress=False)
    return out
