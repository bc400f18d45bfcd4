"""Synthetic inputs with known answers, for tests and smoke runs of the metrics (no downloads).

``flash_video`` shows a random texture that flashes on at each event time and fades out (a sharp optical-flow
peak at the event frame); ``click_track`` puts a short noise burst at given times; ``chord`` is a sustained
chord of sine tones. Clicks on the flashes give AV-Align 1; clicks between them give 0.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def flash_video(path: str | Path, events: list[float], seconds: float = 4.0, fps: int = 25,
                size: tuple[int, int] = (96, 64)) -> Path:
    """Write an H.264 mp4 whose texture flashes on at each time in ``events`` and decays by 0.7 per frame."""
    texture = np.random.default_rng(0).random((size[1], size[0])) * 255
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": "10"}
        for index in range(int(seconds * fps)):
            t = index / fps
            level = min(1.0, sum(0.7 ** ((t - e) * fps) for e in events if 0 <= t - e < 0.3))
            grey = (texture * level).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(grey[:, :, None], 3, axis=2), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def click_track(times: list[float], seconds: float = 4.0, sample_rate: int = 32_000, seed: int = 1) -> np.ndarray:
    """``[seconds * sample_rate]`` float32 silence with a 10 ms decaying noise burst at each time."""
    rng = np.random.default_rng(seed)
    wav = np.zeros(int(seconds * sample_rate), np.float32)
    burst = int(0.01 * sample_rate)
    for t in times:
        start = int(t * sample_rate)
        piece = rng.standard_normal(burst) * 0.5 * np.exp(-np.arange(burst) / (burst / 5))
        wav[start:start + burst] += piece[: len(wav[start:start + burst])].astype(np.float32)
    return wav


def chord(midi_notes: list[int], seconds: float = 2.0, sample_rate: int = 32_000) -> np.ndarray:
    """``[seconds * sample_rate]`` float32 sum of sine tones at the given MIDI pitches."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freqs = 440.0 * 2.0 ** ((np.asarray(midi_notes) - 69) / 12)
    return (0.2 * np.sin(2 * np.pi * freqs[:, None] * t).sum(axis=0)).astype(np.float32)


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int = 32_000) -> Path:
    """Write ``[samples]`` float32 as a WAV file (parent folders created)."""
    from media.audio import write_wav as write

    write(path, wav, sample_rate, subtype="FLOAT")
    return Path(path)
