"""The photo world: a synthetic set re-skinned with real pictures (issue 19: a wider visual world for training).

For every row of a set made by ``python -m data.synthetic`` it renders a new video from real pictures (Debian's
wallpapers by default) whose events fall exactly at the row's ``event_times`` and whose camera pans at the row's
tempo, colour-graded toward the row's palette (so hue and brightness still tell key and mode), and pairs it with
the SAME music file (hard-linked). No music is rendered: each clip costs only drawing and encoding its frames.

| | ``data/synthetic`` (source) | the photo world |
|---|---|---|
| look | flat gradients, panels, three shapes, a bouncing ball | photos under a moving camera, graded toward the source's palette; 0-2 textured sprites |
| motion | shapes drift at the tempo's speed | the camera pans (``PAN_PER_BEAT`` picture widths per beat), zooms slowly, shakes lightly |
| events | the source's, on its beat grid: cuts and impacts | the same times: cut -> cut to another picture; impact -> pan reversal, flash, zoom punch or shake burst |
| format | 24 fps, 128 px high, 16:9, CRF 20 | 24/25/30 fps; 256x144, 240x240, 320x180 or 288x216; CRF 18-32 |

    python -m data.photo_world --source SRC --out OUT [--pictures DIR ...] [--seed 0] [--n N] [--keep-source]
                               [--workers 1] [--overwrite]

Rows keep the source row's columns, ground truth and split (so no music is in two splits); ids are ``pho`` + the
source id; the per-event kinds are in ``title``, their set in ``tags``. ``--keep-source`` adds the source rows
unchanged, their media and cached features hard-linked (same bytes, so ``data.features`` reuses them). Clip ``k``
depends only on ``(seed, k)``; an existing ``--out`` made with the same settings is resumed.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import UserError
from data.join import link_set_files, read_set
from data.schema import MUSIC_SAMPLE_RATE, SPLITS, clip_features, save_clip_rows, write_schema_file
from data.synthetic.build import prepare_out_dir, render_clips
from data.synthetic.spec import MOODS, SATURATION_RANGE, sample_clip_spec
from data.synthetic.video import hsv_color

GENERATOR_VERSION = 1  # bump when the same (seed, source row) would draw a different clip
ID_PREFIX = "pho"
DEFAULT_PICTURES = ("/usr/share/wallpapers", "/usr/share/backgrounds")
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PICTURE_SIDE = 640  # pictures are loaded with this longest side
MIN_PICTURES = 4
SIZES = ((256, 144), (240, 240), (320, 180), (288, 216))  # (width, height), all even
FPS_CHOICES = (24, 25, 30)
CRF_CHOICES = (18, 23, 28, 32)
IMPACT_KINDS = {"reversal": 0.35, "flash": 0.2, "punch": 0.25, "shake": 0.2}  # what a source impact becomes
EVENT_KINDS = ("cut", *IMPACT_KINDS)
PAN_PER_BEAT = 0.045  # picture widths per beat: a faster tempo pans faster
ZOOM_RANGE = (0.5, 0.75)  # crop size / the largest crop of the frame's shape that fits in the picture
FLASH_DECAY = 0.07  # seconds
FLASH_PEAK = 0.8
PUNCH_DEPTH = 0.25  # the crop shrinks by this fraction over PUNCH_FRAMES frames, then eases back
PUNCH_STEPS = (0.6, 0.9, 1.0)  # share of the punch reached on the event frame and the next two
PUNCH_FRAMES = len(PUNCH_STEPS)
PUNCH_RELEASE = 0.6  # seconds (time constant of the ease back)
SHAKE_BURST = 0.15  # seconds
SHAKE_AMPLITUDE = 0.06  # frame heights, at the burst's first frame
GRADE_STRENGTH = (0.55, 0.75)


class PhotoWorldError(UserError):
    """A run that cannot go ahead (bad source, too few pictures, bad output folder); one line for the user."""


# --- pictures ----------------------------------------------------------------------------------------------------

def _named_size(path: Path) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)x(\d+)", path.stem)
    return (int(match[1]), int(match[2])) if match else None


def _variant_rank(path: Path) -> tuple:
    """Prefer the light variant (``images/``), landscape, about 1920 wide; sizes come from names like 2560x1600."""
    size = _named_size(path)
    width, height = size or (1920, 1080)
    return (path.parent.name != "images", height > width, abs(width - 1920), -width, str(path))


def find_pictures(folders: list[str | Path]) -> list[Path]:
    """Picture files under ``folders`` (recursive, sorted), one per wallpaper package folder: a plasma-style
    ``NAME/contents/images*/WxH.jpg`` set of sizes of one picture counts once (its screenshot is skipped)."""
    groups: dict[str, list[Path]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in PICTURE_SUFFIXES or not path.is_file():
                continue
            parts = path.parts
            if "contents" in parts[:-1]:
                if path.stem.lower().startswith("screenshot"):
                    continue
                key = str(Path(*parts[:parts.index("contents")]))
            else:
                key = str(path)
            groups.setdefault(key, []).append(path)
    return [min(paths, key=_variant_rank) for _, paths in sorted(groups.items())]


def read_picture(path: str | Path, side: int = PICTURE_SIDE) -> np.ndarray | None:
    """RGB uint8 with the longest side ``side`` (never enlarged), or None if cv2 cannot decode it."""
    size, flag = _named_size(Path(path)), cv2.IMREAD_COLOR
    if size:  # decode big JPEGs at a reduced scale: much faster, same result after resizing
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if max(size) / factor >= side:
                flag = reduced
                break
    try:
        image = cv2.imread(str(path), flag)
    except cv2.error:
        image = None
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 16:
        return None
    scale = side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


@functools.lru_cache(maxsize=256)
def load_picture(path: str) -> np.ndarray:
    """A picture of the pool (decoded once per process)."""
    image = read_picture(path)
    if image is None:
        raise PhotoWorldError(f"{path}: cv2 can no longer decode this picture")
    image.setflags(write=False)
    return image


def picture_pool(folders: list[str | Path]) -> list[str]:
    """The usable pictures (decodable by cv2) under ``folders``; refuses fewer than ``MIN_PICTURES``."""
    pool = []
    for path in find_pictures(folders):
        if read_picture(path) is not None:
            pool.append(str(path))
    if len(pool) < MIN_PICTURES:
        raise PhotoWorldError(f"found {len(pool)} decodable picture(s) (.jpg/.jpeg/.png/.webp) under "
                              f"{', '.join(map(str, folders))}; need at least {MIN_PICTURES} (pass --pictures DIR)")
    return pool


# --- what one clip shows -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grade:
    """The source clip's palette: hue, saturation and value as ``data.synthetic.video`` draws them."""

    hue: float
    saturation: float
    value: float


@dataclass(frozen=True)
class Sprite:
    picture: str
    shape: str  # "disc" or "rect"
    radius: float  # frame heights
    x: float  # frame fractions at t = 0
    y: float
    vx: float  # frame heights per second
    vy: float


@dataclass(frozen=True)
class PhotoSpec:
    """Everything that decides one photo-world clip; drawn by ``plan_clip``."""

    id: str
    source_id: str
    seconds: float
    fps: int
    width: int
    height: int
    crf: int
    bpm: float
    events: tuple[tuple[float, str], ...]  # (seconds, kind in EVENT_KINDS)
    grade: Grade
    grade_strength: float
    pictures: tuple[str, ...]  # one per shot (the start and each cut)
    sprites: tuple[Sprite, ...]
    music_source: str  # absolute path of the source's music file
    layout_seed: int

    def event_times(self, kind: str | None = None) -> list[float]:
        return [t for t, k in self.events if kind is None or k == kind]


def source_index(source_id: str) -> int | None:
    match = re.fullmatch(r"syn\d+_(\d+)", source_id)
    return int(match[1]) if match else None


def source_clip_spec(row: dict, source_info: dict):
    """The source's ``ClipSpec`` re-derived from its schema seed, or None when it does not reproduce the row."""
    index = source_index(row["id"])
    if index is None or source_info.get("seed") is None or source_info.get("seconds") is None:
        return None
    spec = sample_clip_spec(int(source_info["seed"]), index, float(source_info["seconds"]),
                            int(source_info.get("fps") or 24), int(source_info.get("height") or 128))
    same = (spec.id == row["id"] and len(spec.beat_times) == len(row["beat_times"] or [])
            and len(spec.events) == len(row["event_times"] or [])
            and np.allclose(spec.beat_times, row["beat_times"] or [], atol=1e-6)
            and np.allclose(spec.event_times(), row["event_times"] or [], atol=1e-6)
            and spec.mode == row["mode"] and int(spec.program) == int(row["program"]))
    return spec if same else None


def grade_from_row(row: dict) -> Grade:
    """Rebuild the palette from key, mode and program (mid-bucket, as ``data.synthetic.spec`` lays them out)."""
    mood = next((m for m in MOODS if m.mode == row["mode"]), MOODS[0])
    key = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B").index(row["key"]) if row["key"] else 0
    slot = mood.programs.index(row["program"]) if row["program"] in mood.programs else len(mood.programs) // 2
    low, high = mood.hues
    hue = (low + (high - low) * (key + 0.5) / 12) % 1.0
    s_low, s_high = SATURATION_RANGE
    saturation = s_low + (s_high - s_low) * (slot + 0.5) / len(mood.programs)
    return Grade(hue, saturation, sum(mood.values) / 2)


def photo_id(source_id: str) -> str:
    return f"{ID_PREFIX}{source_id}"


def plan_clip(row: dict, index: int, seed: int, source_info: dict, pool: list[str], music_source: str) -> PhotoSpec:
    """Draw the clip that re-skins source ``row`` (its ``index`` in the source): depends only on (seed, index),
    the row and the picture pool."""
    rng = np.random.default_rng([GENERATOR_VERSION, 6151, seed, index])
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    fps, crf = int(rng.choice(FPS_CHOICES)), int(rng.choice(CRF_CHOICES))
    spec = source_clip_spec(row, source_info)
    if spec is not None:
        grade, source_kinds = Grade(spec.hue, spec.saturation, spec.value), [e.kind for e in spec.events]
    else:  # not reproducible: palette from key/mode/program, a third of the events as cuts
        grade = grade_from_row(row)
        source_kinds = ["cut" if rng.random() < 0.3 else "impact" for _ in row["event_times"] or []]
    names, weights = list(IMPACT_KINDS), np.array(list(IMPACT_KINDS.values()))
    events = []
    for t, kind in zip(row["event_times"] or [], source_kinds):
        if kind != "cut":
            kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        events.append((float(t), kind))
    shots = 1 + sum(kind == "cut" for _, kind in events)
    order = rng.permutation(len(pool))
    pictures = tuple(pool[int(order[k % len(order)])] for k in range(shots))  # no picture twice in a row
    sprites = []
    for _ in range(int(rng.choice(3, p=[0.4, 0.35, 0.25]))):
        # frame heights per second: 0.1-0.25 frame heights per beat, so sprites move with the tempo too
        speed, angle = rng.uniform(0.1, 0.25) * float(row["tempo"] or 100.0) / 60.0, rng.uniform(0, 2 * np.pi)
        sprites.append(Sprite(picture=pool[int(rng.integers(len(pool)))], shape=str(rng.choice(["disc", "rect"])),
                              radius=float(rng.uniform(0.08, 0.14)), x=float(rng.random()), y=float(rng.random()),
                              vx=float(speed * math.cos(angle)), vy=float(speed * math.sin(angle))))
    return PhotoSpec(id=photo_id(row["id"]), source_id=row["id"], seconds=float(row["duration"]), fps=fps, width=width,
                     height=height, crf=crf, bpm=float(row["tempo"] or 100.0), events=tuple(events), grade=grade,
                     grade_strength=float(rng.uniform(*GRADE_STRENGTH)), pictures=pictures, sprites=tuple(sprites),
                     music_source=music_source, layout_seed=int(rng.integers(2**31)))


# --- drawing -----------------------------------------------------------------------------------------------------

def grade_picture(picture: np.ndarray, grade: Grade, strength: float) -> np.ndarray:
    """Tint toward the palette: luminance mapped onto a dark-to-light ramp of the clip's hue, mixed with the
    photo, and the brightness pulled toward the palette's value (dark-cool clips stay dark)."""
    image = picture.astype(np.float32) / 255
    luma = image @ np.array([0.299, 0.587, 0.114], np.float32)
    dark = np.array(hsv_color(grade.hue, grade.saturation, grade.value * 0.25), np.float32) / 255
    light = np.array(hsv_color(grade.hue, grade.saturation * 0.6, min(1.0, grade.value * 1.15)), np.float32) / 255
    tinted = dark + (light - dark) * luma[..., None]
    out = image * (1 - strength) + tinted * strength
    mean = float(out.mean())
    out *= np.clip((0.25 + 0.6 * grade.value) / max(mean, 1e-3), 0.6, 1.6)  # mean level follows the value
    return np.clip(out * 255, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Shot:
    """A stretch of camera motion (from the start, a cut or a reversal), in picture pixels."""

    start: float
    picture: int  # index into the clip's graded pictures
    x: float
    y: float
    zoom: float  # the crop's scale, picture pixels per frame pixel
    vx: float
    vy: float
    vzoom: float  # relative change of the zoom per second


def _largest_scale(picture: np.ndarray, width: int, height: int) -> float:
    """Picture pixels per frame pixel of the largest crop of the frame's shape that fits in the picture."""
    return min(picture.shape[1] / width, picture.shape[0] / height)


def _new_camera(rng: np.random.Generator, spec: PhotoSpec, picture: np.ndarray, index: int, start: float) -> Shot:
    """A fresh shot: a crop of 50-75 % of the picture, panning mostly sideways at the tempo's speed, placed so that
    the pan through the rest of the clip stays inside the picture as far as it can."""
    zoom = _largest_scale(picture, spec.width, spec.height) * rng.uniform(*ZOOM_RANGE)
    speed = PAN_PER_BEAT * picture.shape[1] * spec.bpm / 60.0 * rng.uniform(0.85, 1.15)
    angle = rng.uniform(-0.45, 0.45) + (math.pi if rng.random() < 0.5 else 0.0)
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    half_w, half_h = zoom * spec.width / 2, zoom * spec.height / 2
    travel_x, travel_y = vx * (spec.seconds - start), vy * (spec.seconds - start)

    def place(travel: float, half: float, size: int) -> float:
        low, high = half, size - half  # where the centre may be
        centre = (low + high) / 2 - travel / 2  # the pan's midpoint at the picture's centre
        return float(np.clip(centre + rng.uniform(-0.1, 0.1) * size, low, high))

    return Shot(start, index, x=place(travel_x, half_w, picture.shape[1]), y=place(travel_y, half_h, picture.shape[0]),
                zoom=zoom, vx=vx, vy=vy, vzoom=float(rng.uniform(-0.04, 0.04)))


def _frame_of(t: float, fps: int) -> int:
    return int(round(t * fps))


def build_shots(spec: PhotoSpec, pictures: list[np.ndarray], rng: np.random.Generator) -> list[Shot]:
    """Shots from the start, each cut (a new picture) and each reversal. A reversal turns the pan one frame before
    its event frame, so the event frame is the first to show the new direction."""
    shots = [_new_camera(rng, spec, pictures[0], 0, 0.0)]
    cut = 0
    for t, kind in spec.events:
        k = _frame_of(t, spec.fps)
        if kind == "cut":
            cut += 1
            shots.append(_new_camera(rng, spec, pictures[cut], cut, k / spec.fps))
        elif kind == "reversal":
            last, turn_at = shots[-1], (k - 1) / spec.fps
            dt, turn, gain = turn_at - last.start, rng.uniform(-0.4, 0.4), rng.uniform(0.85, 1.2)
            c, s = math.cos(math.pi + turn), math.sin(math.pi + turn)
            shots.append(Shot(turn_at, last.picture, x=last.x + last.vx * dt, y=last.y + last.vy * dt,
                              zoom=last.zoom * math.exp(last.vzoom * dt), vx=gain * (c * last.vx - s * last.vy),
                              vy=gain * (s * last.vx + c * last.vy), vzoom=-last.vzoom))
    return shots


def _hand_shake(phases: np.ndarray, t: float, height: int) -> tuple[float, float]:
    """Light hand-held shake in frame pixels (well under the slowest pan's speed)."""
    amp = 0.004 * height
    dx = amp * sum(math.sin(2 * math.pi * f * t + p) / f for f, p in zip((0.7, 1.9, 4.3), phases[:3]))
    dy = amp * sum(math.sin(2 * math.pi * f * t + p) / f for f, p in zip((0.9, 2.3, 5.1), phases[3:6]))
    return dx, dy


def _sprite_patch(sprite: Sprite, spec: PhotoSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 patch, alpha float32 [h, w, 1]): a disc or rounded-off rectangle cut out of another picture."""
    size = max(4, int(round(2 * sprite.radius * spec.height)))
    source = grade_picture(load_picture(sprite.picture), spec.grade, spec.grade_strength * 0.5)
    h, w = source.shape[:2]
    crop = min(h, w) // 2
    y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    patch = cv2.resize(source[y0:y0 + crop, x0:x0 + crop], (size, size), interpolation=cv2.INTER_AREA)
    mask = np.zeros((size, size), np.float32)
    if sprite.shape == "disc":
        cv2.circle(mask, (size * 8, size * 8), size * 8 - 8, 1.0, -1, cv2.LINE_AA, 4)
    else:
        cv2.rectangle(mask, (0, size // 5), (size - 1, size - 1 - size // 5), 1.0, -1)
    return patch, mask[..., None]


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend ``patch`` with its top-left at (x, y), clipped to the frame (float32 frame, in place)."""
    h, w = frame.shape[:2]
    ph, pw = patch.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, w), min(y + ph, h)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - a) + patch[y0 - y:y1 - y, x0 - x:x1 - x] * a


def render_frames(spec: PhotoSpec) -> Iterator[np.ndarray]:
    """All frames (RGB uint8 [H, W, 3]); frame ``k`` shows time ``k / fps`` and an event shows on frame
    ``round(t * fps)``: the new shot (cut), the new direction (reversal), the flash's peak, the punch's first step
    or the shake's biggest jolt."""
    rng = np.random.default_rng(spec.layout_seed)
    pictures = [grade_picture(load_picture(p), spec.grade, spec.grade_strength) for p in spec.pictures]
    shots = build_shots(spec, pictures, rng)
    phases = rng.uniform(0, 2 * np.pi, 6)
    sprites = [(s, *_sprite_patch(s, spec, rng)) for s in spec.sprites]
    frame_events = [(_frame_of(t, spec.fps), kind) for t, kind in spec.events]
    jolts = rng.normal(0, 1, (len(spec.events), max(2, round(SHAKE_BURST * spec.fps) + 1), 2))
    count = int(round(spec.seconds * spec.fps))
    for k in range(count):
        t = k / spec.fps
        shot = [s for s in shots if s.start <= t + 1e-9][-1]
        dt = t - shot.start
        zoom = shot.zoom * math.exp(shot.vzoom * dt)
        dx, dy = _hand_shake(phases, t, spec.height)
        flash = 0.0
        for n, (frame_k, kind) in enumerate(frame_events):
            since = k - frame_k
            if since < 0:
                continue
            if kind == "punch":
                depth = PUNCH_DEPTH * PUNCH_STEPS[min(since, PUNCH_FRAMES - 1)]
                if since >= PUNCH_FRAMES:
                    depth *= math.exp(-(since - PUNCH_FRAMES + 1) / spec.fps / PUNCH_RELEASE)
                zoom *= 1 - depth
            elif kind == "shake" and since < jolts.shape[1] - 1:
                amp = SHAKE_AMPLITUDE * spec.height * (1 - since / (jolts.shape[1] - 1))
                jx, jy = jolts[n, since]
                norm = max(math.hypot(jx, jy), 0.5)
                dx, dy = dx + amp * jx / norm, dy + amp * jy / norm
            elif kind == "flash":
                flash = max(flash, FLASH_PEAK * math.exp(-since / spec.fps / FLASH_DECAY))
        # frame pixel (u, v) looks at picture (x + (u - w/2) * zoom, y + (v - h/2) * zoom)
        cx, cy = shot.x + shot.vx * dt + dx * zoom, shot.y + shot.vy * dt + dy * zoom
        matrix = np.array([[zoom, 0, cx - zoom * spec.width / 2], [0, zoom, cy - zoom * spec.height / 2]], np.float32)
        frame = cv2.warpAffine(pictures[shot.picture], matrix, (spec.width, spec.height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
        if sprites or flash > 0.01:
            image = frame.astype(np.float32)
            for sprite, patch, alpha in sprites:
                span_x, span_y = spec.width + patch.shape[1], spec.height + patch.shape[0]
                x = (sprite.x * spec.width + sprite.vx * spec.height * t) % span_x - patch.shape[1]
                y = (sprite.y * spec.height + sprite.vy * spec.height * t) % span_y - patch.shape[0]
                _paste(image, patch, alpha, int(round(x)), int(round(y)))
            if flash > 0.01:
                image += (255 - image) * flash
            frame = np.clip(image, 0, 255).astype(np.uint8)
        yield frame


# --- the dataset -------------------------------------------------------------------------------------------------

def media_paths(out_dir: Path, clip_id: str) -> tuple[Path, Path]:
    return out_dir / "clips" / f"{clip_id}.mp4", out_dir / "music" / f"{clip_id}.wav"


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` (a copy across filesystems), atomically; an existing target is kept."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copy2(source, temporary)
    temporary.replace(target)


def make_clip(spec: PhotoSpec, out_dir: str | Path, renderer: str = "", soundfont: str | Path = "") -> None:
    """Link the source's music as ``music/<id>.wav``, then write ``clips/<id>.mp4`` (that music muxed in) under its
    real name only when whole. ``renderer``/``soundfont``: unused (``render_clips``' signature)."""
    from media.audio import read_audio
    from media.video_writer import write_mp4

    video_path, music_path = media_paths(Path(out_dir), spec.id)
    link_or_copy(Path(spec.music_source), music_path)
    audio, _ = read_audio(music_path, MUSIC_SAMPLE_RATE)
    partial = video_path.with_name(f"{video_path.stem}.partial.mp4")
    write_mp4(partial, render_frames(spec), spec.width, spec.height, spec.fps, audio, MUSIC_SAMPLE_RATE, crf=spec.crf)
    partial.replace(video_path)


def clip_row(spec: PhotoSpec, source_row: dict) -> dict:
    """The source row's schema columns and ground truth, with this clip's id, media, title and tags."""
    kinds = sorted({kind for _, kind in spec.events})
    row = {column: source_row[column] for column in clip_features()}
    row.update({
        "id": spec.id, "video_id": spec.id, "video_path": f"clips/{spec.id}.mp4", "music_path": f"music/{spec.id}.wav",
        "title": (f"photo world {spec.width}x{spec.height} {spec.fps} fps crf {spec.crf}, re-skin of "
                  f"{spec.source_id}; events " + ", ".join(f"{kind}@{t:.3f}" for t, kind in spec.events)),
        "tags": ["photo_world", *(source_row.get("mode") and [source_row["mode"]] or []), *kinds],
    })
    return row


def read_source(source: Path) -> tuple[dict, list[tuple[str, dict]]]:
    """(schema info, [(split, row with only the schema's columns)]) of a ``data.synthetic`` set, in id order."""
    info, rows = read_set(source, PhotoWorldError)
    if info.get("source") != "synthetic":
        raise PhotoWorldError(f"{source} was made by {info.get('source')!r}, not data.synthetic; the photo world "
                              "re-skins synthetic sets only")
    rows.sort(key=lambda item: (source_index(item[1]["id"]) if source_index(item[1]["id"]) is not None else 1 << 62,
                                item[1]["id"]))
    return info, rows


def debian_packages(paths: list[str]) -> dict[str, str]:
    """Debian package of each path (``dpkg -S``), where dpkg knows it."""
    if not paths or shutil.which("dpkg") is None:
        return {}
    found = {}
    try:
        result = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    for line in result.stdout.splitlines():
        package, _, path = line.partition(": ")
        if path in paths:
            found[path] = package.split(",")[0].strip()
    return found


def write_pictures_file(out_dir: Path, specs: list[PhotoSpec], pool: list[str]) -> None:
    from common.files import atomic_write_text

    uses: dict[str, int] = {}
    for spec in specs:
        for picture in (*spec.pictures, *(s.picture for s in spec.sprites)):
            uses[picture] = uses.get(picture, 0) + 1
    used = [p for p in pool if p in uses]
    packages = debian_packages(used)
    lines = ["# Pictures used by this photo-world set", "",
             f"{len(used)} of the {len(pool)} pictures found. Each is used as found (downscaled, colour-graded, "
             "cropped); the licences of Debian packages are in `/usr/share/doc/<package>/copyright`.", "",
             "| picture | package (or folder) | clips using it |", "|---|---|---|"]
    for path in used:
        lines.append(f"| `{path}` | {packages.get(path) or Path(path).parent} | {uses[path]} |")
    names = sorted({packages[p] for p in used if p in packages})
    if names:
        lines += ["", "Licences: " + ", ".join(f"`/usr/share/doc/{name}/copyright`" for name in names) + "."]
    atomic_write_text(out_dir / "PICTURES.md", "\n".join(lines) + "\n")


def generate(source: str | Path, out_dir: str | Path, pictures: list[str | Path] = DEFAULT_PICTURES, seed: int = 0,
             n: int | None = None, keep_source: bool = False, workers: int = 1, overwrite: bool = False,
             progress: bool = True):
    """Re-skin the first ``n`` rows (all by default) of the synthetic set ``source`` into ``out_dir``; returns the
    ``DatasetDict``."""
    source, out_dir = Path(source).resolve(), Path(out_dir)
    if not source.is_dir():
        raise PhotoWorldError(f"{source}: no such dataset folder")
    if out_dir.resolve() == source:
        raise PhotoWorldError("--out must not be the --source folder")
    info, rows = read_source(source)
    if n is not None:
        rows = rows[:n]
    if not rows:
        raise PhotoWorldError(f"{source} has no clips")
    folders = [str(Path(p)) for p in pictures]
    pool = picture_pool(folders)
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "source_dir": str(source), "keep_source": keep_source,
              "pictures": folders, "n_pictures": len(pool)}
    prepare_out_dir(out_dir, params, overwrite, "data.photo_world", PhotoWorldError)
    from common.files import OwnedFolder

    OwnedFolder(out_dir, "data.photo_world", PhotoWorldError).claim("features", "PICTURES.md")
    specs = [plan_clip(row, source_index(row["id"]) if source_index(row["id"]) is not None else k, seed, info, pool,
                       str(source / row["music_path"])) for k, (_, row) in enumerate(rows)]
    if keep_source:
        link_set_files(source, out_dir, [row for _, row in rows], PhotoWorldError)
    todo = [s for s in specs if not all(p.is_file() for p in media_paths(out_dir, s.id))]
    render_clips(make_clip, todo, len(specs), out_dir, "", "", workers, "photo-world clips", progress)
    by_split: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for (split, row), spec in zip(rows, specs):
        if keep_source:
            by_split[split].append(row)
        by_split[split].append(clip_row(spec, row))
    dataset = save_clip_rows(out_dir, by_split)
    write_pictures_file(out_dir, specs, pool)
    write_schema_file(out_dir, "photo_world", n=len(specs), n_rows=sum(len(v) for v in by_split.values()),
                      splits=info.get("splits"), sample_rate=MUSIC_SAMPLE_RATE, source_seed=info.get("seed"),
                      source_generator_version=info.get("generator_version"), **params)
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.photo_world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="a dataset made by python -m data.synthetic")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--pictures", nargs="+", default=list(DEFAULT_PICTURES),
                        help="folders searched recursively for .jpg/.jpeg/.png/.webp (default: Debian's wallpapers)")
    parser.add_argument("--seed", type=int, default=0, help="set seed (>= 0); clip k depends only on (seed, k)")
    parser.add_argument("--n", type=int, default=None, help="re-skin only the first N source rows (default all)")
    parser.add_argument("--keep-source", action="store_true",
                        help="also include the source rows unchanged (media and cached features hard-linked)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    args = parser.parse_args(argv)
    if args.seed < 0 or args.workers < 1 or (args.n is not None and args.n <= 0):
        parser.error("need --seed >= 0, --workers >= 1 and --n > 0")
    try:
        dataset = generate(args.source, args.out, args.pictures, args.seed, args.n, args.keep_source, args.workers,
                           args.overwrite)
    except UserError as error:
        print(f"python -m data.photo_world: error: {error}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {len(dataset[name])}" for name in SPLITS)
    print(f"wrote {args.out}: {sizes} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
