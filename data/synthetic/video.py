"""The picture of a clip: drifting shapes over a palette background, a bouncing ball whose impacts and the cuts
between scenes land on the event beats; frames as RGB uint8 [H, W, 3].
"""
from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from data.synthetic.spec import SHAPE_SPEED, ClipSpec


@dataclass(frozen=True)
class Shape:
    """A drifting shape; it wraps around the frame edges, so its speed never changes inside a scene."""

    kind: str  # "circle", "square" or "triangle"
    color: tuple[int, int, int]
    radius: float
    x: float
    y: float
    vx: float  # pixels per second
    vy: float


@dataclass(frozen=True)
class Scene:
    """What a cut changes: background shades and layout, shapes, the ball's column."""

    start: float
    background: np.ndarray  # uint8 [H, W, 3] RGB
    shapes: tuple[Shape, ...]
    ball_x: float
    ball_color: tuple[int, int, int]


def hsv_color(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0.0), 1.0), min(max(value, 0.0), 1.0))
    return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


def _background(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """A two-shade gradient in the clip's hue at a random angle, with a few flat panels: the scene's look."""
    h, w = spec.height, spec.width
    light = hsv_color(spec.hue, spec.saturation, spec.value)
    dark = hsv_color(spec.hue, spec.saturation * rng.uniform(0.7, 1.0), spec.value * rng.uniform(0.55, 0.8))
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = x * np.cos(angle) / w + y * np.sin(angle) / h
    ramp = ((ramp - ramp.min()) / max(np.ptp(ramp), 1e-6))[..., None]
    image = (np.array(light) * (1 - ramp) + np.array(dark) * ramp).astype(np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        shade = hsv_color(spec.hue, spec.saturation * rng.uniform(0.5, 1.0), spec.value * rng.uniform(0.6, 1.1))
        x1, y1 = x0 + int(rng.integers(w // 8, w // 3)), y0 + int(rng.integers(h // 8, h // 3))
        cv2.rectangle(image, (x0, y0), (x1, y1), shade, -1)
    return image


def _shapes(spec: ClipSpec, rng: np.random.Generator) -> tuple[Shape, ...]:
    """Three contrasting shapes, all at the tempo's speed (``SHAPE_SPEED`` frame heights per beat)."""
    speed = SHAPE_SPEED * spec.height / spec.beat_length
    contrast = 0.95 if spec.mode == "minor" else 0.35
    shapes = []
    for _ in range(3):
        angle = rng.uniform(0, 2 * np.pi)
        shapes.append(Shape(
            kind=str(rng.choice(["circle", "square", "triangle"])),
            color=hsv_color(spec.hue + 0.5 + rng.uniform(-0.12, 0.12), 0.8, contrast),
            radius=spec.height * rng.uniform(0.06, 0.11), x=rng.uniform(0, spec.width), y=rng.uniform(0, spec.height),
            vx=speed * np.cos(angle), vy=speed * np.sin(angle),
        ))
    return tuple(shapes)


def build_scenes(spec: ClipSpec) -> list[Scene]:
    """One scene from the start and one from each cut; drawn from the clip's layout seed."""
    rng = np.random.default_rng(spec.layout_seed)
    scenes = []
    for start in [0.0, *spec.event_times("cut")]:
        ball_color = hsv_color(spec.hue + 0.5, 0.25, 1.0 if spec.mode == "minor" else 0.2)
        scenes.append(Scene(start, _background(spec, rng), _shapes(spec, rng),
                            ball_x=rng.uniform(0.2, 0.8) * spec.width, ball_color=ball_color))
    return scenes


def _draw_shape(image: np.ndarray, shape: Shape, elapsed: float) -> None:
    """Draw at a sub-pixel position (cv2 shift of 4 bits) so slow motion stays smooth for optical flow."""
    h, w = image.shape[:2]
    r = shape.radius
    x = (shape.x + shape.vx * elapsed) % (w + 2 * r) - r
    y = (shape.y + shape.vy * elapsed) % (h + 2 * r) - r
    if shape.kind == "circle":
        cv2.circle(image, (int(x * 16), int(y * 16)), int(r * 16), shape.color, -1, cv2.LINE_AA, 4)
        return
    corners, turn = (4, np.pi / 4) if shape.kind == "square" else (3, -np.pi / 2)  # square flat, triangle point up
    angles = turn + 2 * np.pi * np.arange(corners) / corners
    points = np.stack([x + r * np.cos(angles), y + r * np.sin(angles)], axis=1)
    cv2.fillPoly(image, [np.round(points * 16).astype(np.int32)], shape.color, cv2.LINE_AA, 4)


def ball_height(t: float, impacts: list[float], beat: float, seconds: float) -> float:
    """Height above the floor, 0-1: arcs of |sin| between impacts, so the ball touches the floor exactly then."""
    first, last = (impacts[0], impacts[-1]) if impacts else (0.0, 0.0)
    touches = [first - 2 * beat, *impacts, max(last + 2 * beat, seconds + beat)]
    k = int(np.searchsorted(touches, t, side="right")) - 1
    k = min(max(k, 0), len(touches) - 2)
    u = (t - touches[k]) / (touches[k + 1] - touches[k])
    return abs(math.sin(math.pi * u))


def _draw_ball(image: np.ndarray, spec: ClipSpec, scene: Scene, t: float) -> None:
    """The bouncing ball over a floor line; an expanding ring for 0.25 s after each impact."""
    h, w = image.shape[:2]
    radius, floor = 0.07 * h, 0.92 * h
    cv2.line(image, (0, int(floor)), (w, int(floor)), scene.ball_color, max(1, h // 64))
    y = floor - radius - 0.55 * h * ball_height(t, spec.event_times("impact"), spec.beat_length, spec.seconds)
    cv2.circle(image, (int(scene.ball_x * 16), int(y * 16)), int(radius * 16), scene.ball_color, -1, cv2.LINE_AA, 4)
    since = _since_last(spec.event_times("impact"), t, 0.5 / spec.fps)
    if since < 0.25:
        ring = radius + since * 1.5 * h
        cv2.circle(image, (int(scene.ball_x * 16), int(floor * 16)), int(ring * 16), (255, 255, 255), 2, cv2.LINE_AA, 4)


def _since_last(times: list[float], t: float, half_frame: float) -> float:
    """Seconds since the latest event shown at frame time ``t`` (an event shows on its nearest frame); inf if none."""
    shown = [e for e in times if e <= t + half_frame]
    return max(t - shown[-1], 0.0) if shown else math.inf


def draw_frame(spec: ClipSpec, scenes: list[Scene], t: float) -> np.ndarray:
    """The RGB frame [H, W, 3] at time ``t``: the scene in force, its shapes, the ball, and the impact flash."""
    half_frame = 0.5 / spec.fps
    scene = [s for s in scenes if s.start <= t + half_frame][-1]
    image = scene.background.copy()
    for shape in scene.shapes:
        _draw_shape(image, shape, t - scene.start)
    _draw_ball(image, spec, scene, t)
    flash = 0.5 * math.exp(-_since_last(spec.event_times("impact"), t, half_frame) / 0.08)
    if flash > 0.02:
        image = (image + (255 - image.astype(np.float32)) * flash).astype(np.uint8)
    return image


def render_frames(spec: ClipSpec) -> Iterator[np.ndarray]:
    """All frames of the clip, frame ``k`` showing time ``k / fps``."""
    scenes = build_scenes(spec)
    for k in range(int(round(spec.seconds * spec.fps))):
        yield draw_frame(spec, scenes, k / spec.fps)
