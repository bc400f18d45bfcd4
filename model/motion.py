"""Motion stream: dense optical flow (OpenCV) between consecutive small greyscale frames -> one feature per pair.

Per pair of frames (the later frame's timestamp), a fixed-size vector of ``MotionConfig.feature_dim`` values:

- 4 magnitude statistics: mean, std, 90th percentile, max            (how much moves)
- with ``speed_stats``: share of moving pixels, median and 90th percentile of their magnitude (how *fast* what moves
  moves: the whole-frame statistics mix speed with how much of the frame moves, so a small fast object and a large
  slow one look alike)
- ``direction_bins`` magnitude-weighted direction histogram, sums to 1 (which way it moves: pans, falls)
- ``grid`` x ``grid`` mean magnitudes over a coarse spatial grid       (where it moves)
- mean absolute frame difference and a cut score                     (cuts, flashes, impacts flow cannot see)

Magnitudes are in frame widths per nominal flow interval (1 / ``flow_fps``): divided by the width, so features do
not depend on the resolution flow runs at, and rescaled by each pair's true time gap, so the uneven gaps of a
24 or 25 fps video sampled on a 10 fps grid (2 and 3 frames apart in turn) do not look like a pulse of motion.
The cut score is the histogram distance between the two frames (OpenCV's Bhattacharyya comparison): near 1 at a
hard cut, near 0 within a shot.
"""
from __future__ import annotations

import cv2
import numpy as np

from model.config import DIS_PRESETS, MotionConfig

MOVING = 0.002  # frame widths per nominal interval (0.26 px at 128 px wide): below it a pixel counts as still
DIS_PRESET_IDS = {name: getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{name.upper()}") for name in DIS_PRESETS}


# DIS kills the process (SIGSEGV) or raises on frames with a side under 32 px: measured with OpenCV 5.0 on every
# preset, e.g. 8..31 x 128 crashes while every size from 32 x 32 to 32 x 2000 (either way round) works.
DIS_MIN_SIDE = 32


def create_flow(algorithm: str, dis_preset: str = "ultrafast"):
    """A callable (prev, next) grey uint8 [h, w] -> flow float32 [h, w, 2] in pixels, for frames of any size."""
    if algorithm == "dis":
        dis = cv2.DISOpticalFlow_create(DIS_PRESET_IDS[dis_preset])
        return lambda prev, nxt: _padded(dis.calc, prev, nxt, DIS_MIN_SIDE)
    if algorithm == "farneback":
        return lambda prev, nxt: cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown optical flow algorithm {algorithm!r} (use 'dis' or 'farneback')")


def _padded(calc, prev: np.ndarray, nxt: np.ndarray, min_side: int) -> np.ndarray:
    """``calc(prev, nxt, None)`` on frames grown to ``min_side`` by repeating their edge pixels; the flow of the
    added pixels is cut off again, so a frame too small for the native code keeps its own size and content."""
    if prev.shape != nxt.shape:
        raise ValueError(f"flow frames differ in size: {prev.shape} and {nxt.shape}")
    h, w = prev.shape
    if h >= min_side and w >= min_side:
        return calc(prev, nxt, None)
    pad = ((0, max(0, min_side - h)), (0, max(0, min_side - w)))
    flow = calc(np.ascontiguousarray(np.pad(prev, pad, mode="edge")),
                np.ascontiguousarray(np.pad(nxt, pad, mode="edge")), None)
    return np.ascontiguousarray(flow[:h, :w])


def _grid_means(magnitude: np.ndarray, grid: int) -> np.ndarray:
    """[h, w] -> [grid * grid] mean magnitude per cell (INTER_AREA resize averages each cell)."""
    return cv2.resize(magnitude, (grid, grid), interpolation=cv2.INTER_AREA).reshape(-1)


def _cut_score(prev: np.ndarray, nxt: np.ndarray) -> float:
    hists = [cv2.calcHist([f], [0], None, [32], [0, 256]) for f in (prev, nxt)]
    for h in hists:
        cv2.normalize(h, h, 1.0, 0.0, cv2.NORM_L1)
    return float(cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA))


def pair_features(prev: np.ndarray, nxt: np.ndarray, flow: np.ndarray, cfg: MotionConfig,
                  gap_ratio: float = 1.0) -> np.ndarray:
    """Features of one frame pair: grey uint8 [h, w] x2 and flow [h, w, 2] -> float32 [cfg.feature_dim].

    ``gap_ratio``: the pair's time gap over the nominal 1 / flow_fps; flow magnitudes are divided by it."""
    width = prev.shape[1]
    magnitude, angle = cv2.cartToPolar(flow[..., 0], flow[..., 1])  # [h, w] each; angle in radians
    magnitude = magnitude / (width * gap_ratio)
    stats = [magnitude.mean(), magnitude.std(), np.percentile(magnitude, 90), magnitude.max()]
    bins = (angle / (2 * np.pi) * cfg.direction_bins).astype(np.int64) % cfg.direction_bins
    directions = np.bincount(bins.ravel(), weights=magnitude.ravel(), minlength=cfg.direction_bins)
    directions = directions / max(directions.sum(), 1e-8)
    difference = np.abs(nxt.astype(np.float32) - prev.astype(np.float32)).mean() / 255.0
    speed = _moving_speed(magnitude) if cfg.speed_stats else []  # before the rest: the cut score stays last
    return np.concatenate([stats, speed, directions, _grid_means(magnitude, cfg.grid),
                           [difference, _cut_score(prev, nxt)]]).astype(np.float32)


def _moving_speed(magnitude: np.ndarray) -> list[float]:
    """[h, w] magnitudes -> [share of moving pixels, median and 90th percentile of their magnitude] (0 if none)."""
    moving = magnitude[magnitude > MOVING]
    if moving.size == 0:
        return [0.0, 0.0, 0.0]
    return [moving.size / magnitude.size, float(np.median(moving)), float(np.percentile(moving, 90))]


def motion_features(frames: np.ndarray, times: np.ndarray, cfg: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """grey uint8 [N, h, w] at ``times`` [N] -> (features float32 [N-1, feature_dim], times float32 [N-1]).

    A single frame gives no pair: the result is then empty ([0, feature_dim]), which fusion handles.
    """
    flow = create_flow(cfg.algorithm, cfg.dis_preset)
    gaps = np.clip(np.diff(np.asarray(times, np.float64)) * cfg.flow_fps, 0.25, 4.0)  # [N-1], 1 on an even grid
    features = [pair_features(frames[i - 1], frames[i], flow(frames[i - 1], frames[i]), cfg, float(gaps[i - 1]))
                for i in range(1, len(frames))]
    out = np.stack(features) if features else np.zeros((0, cfg.feature_dim), np.float32)
    return out, np.asarray(times[1:], np.float32)
