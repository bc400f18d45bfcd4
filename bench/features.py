"""Feature extraction against decoding alone (issue §2), on a generated test video of realistic size.

``extract_features`` = probe + one decode that samples CLIP frames (2 fps, 224 px) and small grey flow frames
(10 fps, 128 px wide, downscaled by libswscale while converting) + DIS flow features + the CLIP image tower.
Decoding alone = demuxing and decoding every frame with the same threading, converting none.

Extraction is timed at fp32 and at the CPU's ``--precision auto`` (``common.device.placement_for``: the CLIP tower
in bfloat16, AMX / AVX-512-BF16 on recent CPUs), both with batched frames and decoding overlapped with CLIP
(``model/extract.py``); the cosine of the bf16 embeddings with fp32's says what the speed costs.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from torch import nn

from common.device import move_module, placement_for

from bench.measure import interleaved, median
from media.video import sample_frames
from model.extract import extract_features
from model.motion import motion_features
from model.semantic import SemanticEncoder


def test_video(seconds: float, width: int, height: int, fps: int = 24, folder: str | Path | None = None) -> Path:
    """An H.264 mp4 (libx264 veryfast, CRF 23: ~5.7 Mbit/s at 1280x720, like camera footage) with a textured
    scene that pans and cuts every 3 s, a moving object, and sensor-like grain; made once, then reused."""
    folder = Path(folder or Path(tempfile.gettempdir()) / "v2m-bench")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"test_{seconds:g}s_{width}x{height}_{fps}fps_grain.mp4"
    if path.is_file():
        return path
    partial, rng, scenes = path.with_suffix(".part.mp4"), np.random.default_rng(0), {}
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            t = i / fps
            scene = scenes.setdefault(int(t / 3), _scene(int(t / 3), width, height))
            frame = av.VideoFrame.from_ndarray(_frame(scene, t, width, height, rng), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)
    return path


def _scene(seed: int, width: int, height: int) -> np.ndarray:
    """A textured picture twice the frame width (to pan over): smooth colour blobs plus fine detail."""
    rng = np.random.default_rng(seed)
    blobs = cv2.resize(rng.integers(0, 256, (height // 16 + 1, width // 8 + 1, 3), dtype=np.uint8),
                       (2 * width, height), interpolation=cv2.INTER_CUBIC)
    return blobs // 2 + rng.integers(0, 48, (height, 2 * width, 1), dtype=np.uint8)


def _frame(scene: np.ndarray, t: float, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The scene panned by t, a white box on a Lissajous path, grain of +-10 levels."""
    offset = int(40 * t * (1 + int(t / 3) % 3)) % width
    image = scene[:, offset:offset + width].copy()
    bx, by = int(width * (0.4 + 0.3 * np.sin(2 * t))), int(height * (0.4 + 0.3 * np.cos(3 * t)))
    image[by:by + height // 6, bx:bx + width // 8] = 255
    grain = rng.integers(-10, 11, (height, width, 1), dtype=np.int16)
    return np.clip(image + grain, 0, 255).astype(np.uint8)


def decode_all(path: Path) -> int:
    """Decode every frame (same threading as ``media.video.sample_frames``), converting none; -> frame count."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def auto_encoder(encoder: SemanticEncoder, device: str = "cpu") -> SemanticEncoder:
    """A copy of ``encoder`` placed as ``--precision auto`` places it on ``device`` (bf16 tower on a CPU)."""
    placement = placement_for(device, "auto")
    encoder = copy.deepcopy(encoder)
    move_module(encoder, placement.device, placement.semantic)
    return encoder


def compare_features(model, path: Path, repeats: int) -> dict:
    """Median seconds of decoding alone and of extraction with fp32 CLIP and at the CPU's ``auto`` precision."""
    semantic, motion = model.config.semantic, model.config.motion
    encoder, fast_encoder = model.semantic_encoder, auto_encoder(model.semantic_encoder)
    def sample():
        return sample_frames(path, semantic.clip_fps, encoder.image_size, motion.flow_fps, motion.width)

    frames = sample()
    times, results = interleaved({
        "decode": lambda: decode_all(path),
        "sample_frames": sample,
        "extract": lambda: extract_features(path, encoder, semantic, motion),
        "extract_auto": lambda: extract_features(path, fast_encoder, semantic, motion),
        "clip": lambda: encoder(frames.clip_frames),
        "clip_auto": lambda: fast_encoder(frames.clip_frames),
        "flow": lambda: motion_features(frames.flow_frames, frames.flow_times, motion),
    }, repeats)
    medians = {name: median(values) for name, values in times.items()}
    cosine = nn.functional.cosine_similarity(results["clip"], results["clip_auto"], dim=-1)
    return {"video": str(path), "frames_decoded": results["decode"], "clip_frames": len(frames.clip_frames),
            "flow_frames": len(frames.flow_frames), "times_s": times,
            "median_s": medians, "auto_semantic_dtype": str(fast_encoder.tower_dtype).replace("torch.", ""),
            "features_vs_decode": medians["extract_auto"] / medians["decode"],
            "features_vs_decode_fp32": medians["extract"] / medians["decode"],
            "clip_auto_cosine_min": cosine.min().item(),
            "clip_ms_per_frame": 1000 * medians["clip"] / max(1, len(frames.clip_frames)),
            "clip_auto_ms_per_frame": 1000 * medians["clip_auto"] / max(1, len(frames.clip_frames))}
