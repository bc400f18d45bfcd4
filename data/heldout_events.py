"""Held-out event videos: a second, different generator for measuring sync on videos the model has never seen.

NEVER USE THIS SET FOR TRAINING OR MODEL SELECTION (no training, no validation, no early stopping, no choosing
checkpoints, presets or decoding settings on it). It exists so that "does the music follow events in a video it
has never seen" can be answered honestly; once a number measured on it has steered a choice it no longer answers
that. Every row is in the ``test`` split (``train`` and ``validation`` are written empty) and every clip id starts
with ``held`` so a training script can refuse it.

How it differs from ``data/synthetic`` (the training generator):

| | ``data/synthetic`` (training) | this set (held out) |
|---|---|---|
| look | flat two-shade gradients, flat panels, three small shapes, a bouncing ball over a floor line | full-frame fractal textures (clouds, terrain, stone, foliage-like grain) in free palettes, sensor grain |
| motion | shapes drift at the tempo's speed over a still background; the ball bounces | the whole frame moves: camera pans, slow zooms and hand-held shake; nothing encodes the tempo |
| events | on a beat grid: cuts (new layout) and impacts (ball on the floor + flash + ring) | at irregular times (gaps of 1-3.4 s, not on a grid): hard cuts to another picture, sudden reversals of the pan (and zoom), white flashes |
| format | 24 fps, 128 px high, 16:9, CRF 20 | 25 or 30 fps; 224x224, 320x240 or 320x180; CRF 18-32 |

The reference music (``music/<id>.wav``) is rendered by ``data.synthetic.music`` (the same renderer, reused, so
the sound is the training set's): a nominal tempo is drawn, and the beat grid is bent between events (each gap
holds a whole number of beats, local tempo within 25 % of the nominal one) so that every event falls on a beat and
gets the accent of a cut (kick, crash, chord) or of an impact (kick, snare, high note; reversals and flashes).
The row's ``tempo`` is the nominal one, so ``tools/event_hits.py``'s control times (events + half a beat) sit
between beats. Rows follow ``data/schema.py`` with ``event_times``, ``beat_times``, ``tempo``, ``key``, ``mode``,
``program``; the event kinds are in ``tags`` order-free and per event in ``title``.

    python -m data.heldout_events --out /work/data-sync/heldout --n 80 --seed 0 [--seconds 8]

``eval.py generate --dataset OUT --split test`` and ``tools/event_hits.py RUN --dataset OUT`` run on it
unchanged. Clip ``k`` depends only on ``(seed, k)``; an existing ``--out`` with the same settings is resumed.
"""
from __future__ import annotations

import argparse
import colorsys
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import UserError
from data.schema import MUSIC_SAMPLE_RATE, save_clip_rows, write_schema_file
from data.synthetic.build import prepare_out_dir, render_clips
from data.synthetic.music import render_music, resolve_renderer
from data.synthetic.spec import DEFAULT_SOUNDFONT, KEY_NAMES, MOODS, RENDERERS, ClipSpec, Event

GENERATOR_VERSION = 1  # bump when the same (seed, index) would draw a different clip
ID_PREFIX = "held"
SIZES = ((224, 224), (320, 240), (320, 180))  # (width, height): none is the training set's 128-px 16:9
FPS_CHOICES = (25, 30)
CRF_CHOICES = (18, 23, 28, 32)
BPM_RANGE = (80, 130)  # nominal tempo of the reference music
GAP_RANGE = (1.0, 3.4)  # seconds between events (and before the first)
KIND_WEIGHTS = {"cut": 0.4, "reversal": 0.45, "flash": 0.15}
WORLD_SCALE = 2.5  # a picture is this many frames wide and high; the camera looks at part of it
FLASH_DECAY = 0.07  # seconds


class HeldoutError(UserError):
    """A run that cannot go ahead (bad output folder, missing renderer); one line for the user."""


@dataclass(frozen=True)
class HeldoutSpec:
    """Everything that decides one held-out clip; drawn from ``(seed, index)`` by ``sample_heldout_spec``."""

    id: str
    seconds: float
    fps: int
    width: int
    height: int
    crf: int
    bpm: float  # nominal tempo of the reference music
    beat_times: tuple[float, ...]  # bent so that every event is on a beat
    events: tuple[tuple[float, str], ...]  # (seconds, "cut" | "reversal" | "flash")
    mood: str
    mode: str
    key: int
    program: int
    layout_seed: int

    def event_times(self, kind: str | None = None) -> list[float]:
        return [t for t, k in self.events if kind is None or k == kind]


def clip_id(seed: int, index: int) -> str:
    return f"{ID_PREFIX}{seed}_{index:06d}"


def sample_event_times(rng: np.random.Generator, seconds: float) -> list[float]:
    """Irregular times: gaps uniform in ``GAP_RANGE``, the last at least 0.6 s before the end; at least one."""
    times, t = [], float(rng.uniform(0.8, GAP_RANGE[1]))
    while t <= seconds - 0.6:
        times.append(round(t, 4))
        t += float(rng.uniform(*GAP_RANGE))
    return times or [round(float(rng.uniform(0.8, max(0.9, seconds - 0.6))), 4)]


def bent_beat_grid(events: list[float], bpm: float, seconds: float) -> tuple[float, ...]:
    """Beats from 0 with every event on one: each gap between events holds ``max(2, round(gap / beat))`` equal
    beats (the first gap at least one); after the last event the nominal beat runs on to the end."""
    beat, grid, anchors = 60.0 / bpm, [], [0.0, *events]
    for n, (a, b) in enumerate(zip(anchors[:-1], anchors[1:])):
        count = max(1 if n == 0 else 2, round((b - a) / beat))
        grid += [a + (b - a) * k / count for k in range(count)]
    t = anchors[-1]
    while t < seconds - 1e-9:
        grid.append(t)
        t += beat
    return tuple(round(x, 6) for x in grid)


def sample_heldout_spec(seed: int, index: int, seconds: float = 8.0) -> HeldoutSpec:
    """Draw clip ``index`` of the held-out set made with ``seed``."""
    rng = np.random.default_rng([GENERATOR_VERSION, 7919, seed, index])  # 7919: never the training set's stream
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    fps, crf = int(rng.choice(FPS_CHOICES)), int(rng.choice(CRF_CHOICES))
    bpm = float(rng.integers(BPM_RANGE[0], BPM_RANGE[1] + 1))
    times = sample_event_times(rng, seconds)
    kinds = list(KIND_WEIGHTS)
    weights = np.array(list(KIND_WEIGHTS.values()))
    events = tuple((t, kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]) for t in times)
    mood = MOODS[int(rng.integers(len(MOODS)))]
    return HeldoutSpec(id=clip_id(seed, index), seconds=seconds, fps=fps, width=width, height=height, crf=crf,
                       bpm=bpm, beat_times=bent_beat_grid(times, bpm, seconds), events=events, mood=mood.name,
                       mode=mood.mode, key=int(rng.integers(12)), program=int(rng.choice(mood.programs)),
                       layout_seed=int(rng.integers(2**31)))


def music_spec(spec: HeldoutSpec) -> ClipSpec:
    """The ``data.synthetic`` spec its music renderer reads: cuts sound as cuts, reversals and flashes as impacts."""
    return ClipSpec(id=spec.id, seconds=spec.seconds, fps=spec.fps, height=spec.height, mood=spec.mood, mode=spec.mode,
                    key=spec.key, program=spec.program, hue=0.0, saturation=0.0, value=0.0, bpm=spec.bpm,
                    beat_times=spec.beat_times,
                    events=tuple(Event(t, "cut" if k == "cut" else "impact") for t, k in spec.events),
                    layout_seed=spec.layout_seed)


# --- the picture -------------------------------------------------------------------------------------------------

def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 6,
                  roughness: float = 0.55) -> np.ndarray:
    """Value noise summed over octaves (cubic upsampling of random grids), scaled to 0-1: float32 [H, W]."""
    out = np.zeros((height, width), np.float32)
    amplitude, cells = 1.0, int(rng.integers(2, 5))
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amplitude, cells = amplitude * roughness, cells * 2
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _palette(rng: np.random.Generator) -> np.ndarray:
    """4 colours in free hues (often earthy or muted, sometimes vivid), sorted dark to light: float32 [4, 3] 0-255."""
    base = rng.random()
    colours = []
    for k in range(4):
        hue = (base + rng.normal(0, 0.12)) % 1.0
        saturation = float(np.clip(rng.beta(1.5, 2.5), 0, 1))
        value = float(np.clip(0.12 + 0.85 * (k + rng.random()) / 4, 0, 1))
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.array(colours, np.float32) * 255


def make_picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like textured picture (RGB uint8 [H, W, 3]): fractal noise through a palette, a 'ridged' or
    'terraced' variant at random, fine detail on top and sometimes a horizon between two textures."""
    noise = fractal_noise(rng, height, width, roughness=float(rng.uniform(0.45, 0.7)))
    style = int(rng.integers(3))
    if style == 1:  # ridges: rock, veins
        noise = 1.0 - np.abs(2 * noise - 1)
    elif style == 2:  # terraces: layered ground
        noise = np.floor(noise * 7) / 7 + 0.3 * fractal_noise(rng, height, width, octaves=4)
        noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    palette = _palette(rng)
    position = noise * (len(palette) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(palette) - 2)
    frac = (position - low)[..., None]
    image = palette[low] * (1 - frac) + palette[low + 1] * frac
    if rng.random() < 0.5:  # a horizon: sky-like smooth texture above, the ground below
        sky = fractal_noise(rng, height, width, octaves=3)[..., None]
        top, bottom = _palette(rng)[[1, 3]]
        horizon = height * rng.uniform(0.3, 0.6) + 0.05 * height * np.sin(
            np.arange(width) / width * 2 * np.pi * rng.uniform(1, 4) + rng.uniform(0, 6))
        above = (np.arange(height)[:, None] < horizon[None, :])[..., None]
        image = np.where(above, top * (1 - sky) + bottom * sky, image)
    detail = cv2.resize(rng.random((height // 2, width // 2)).astype(np.float32), (width, height)) - 0.5
    image = image * (1 + 0.25 * detail[..., None])
    return np.clip(image, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Shot:
    """A stretch between events: the picture, and the camera (centre, zoom) at ``start`` with its velocity."""

    start: float
    picture: int
    x: float
    y: float
    zoom: float  # crop size / frame size
    vx: float  # world pixels per second
    vy: float
    vzoom: float  # per second


def _new_camera(rng: np.random.Generator, spec: HeldoutSpec, start: float, picture: int) -> Shot:
    """A fresh shot: somewhere inside the picture, panning at 0.2-0.6 frame heights per second in any direction."""
    world_w, world_h = WORLD_SCALE * spec.width, WORLD_SCALE * spec.height
    speed, angle = rng.uniform(0.2, 0.6) * spec.height, rng.uniform(0, 2 * np.pi)
    return Shot(start, picture, x=rng.uniform(0.35, 0.65) * world_w, y=rng.uniform(0.35, 0.65) * world_h,
                zoom=rng.uniform(0.7, 1.1), vx=speed * math.cos(angle), vy=speed * math.sin(angle),
                vzoom=rng.uniform(-0.06, 0.06))


def build_shots(spec: HeldoutSpec, rng: np.random.Generator) -> tuple[list[Shot], int]:
    """Shots from the start and from each cut or reversal; returns them and the number of pictures used."""
    shots, pictures = [_new_camera(rng, spec, 0.0, 0)], 1
    for t, kind in spec.events:
        last = shots[-1]
        if kind == "cut":
            shots.append(_new_camera(rng, spec, t, pictures))
            pictures += 1
        elif kind == "reversal":  # the pan turns back (within 35 degrees of straight back), the zoom too
            dt, turn, gain = t - last.start, rng.uniform(-0.6, 0.6), rng.uniform(0.8, 1.3)
            c, s = math.cos(math.pi + turn), math.sin(math.pi + turn)
            shots.append(Shot(t, last.picture, x=last.x + last.vx * dt, y=last.y + last.vy * dt,
                              zoom=_zoom_at(last, t), vx=gain * (c * last.vx - s * last.vy),
                              vy=gain * (s * last.vx + c * last.vy), vzoom=-last.vzoom))
    return shots, pictures


def _zoom_at(shot: Shot, t: float) -> float:
    return float(np.clip(shot.zoom + shot.vzoom * (t - shot.start), 0.5, 1.3))


def _shake(spec: HeldoutSpec, phases: np.ndarray, t: float) -> tuple[float, float]:
    """Hand-held shake: incommensurate sines with amplitude falling as 1/frequency (up to ~1 % of the frame
    height; its speed stays well under the slowest pan, so a reversal is still a reversal)."""
    amp = 0.004 * spec.height
    dx = amp * sum(math.sin(2 * math.pi * f * t + p) / f for f, p in zip((0.7, 1.9, 4.3), phases[:3]))
    dy = amp * sum(math.sin(2 * math.pi * f * t + p) / f for f, p in zip((0.9, 2.3, 5.1), phases[3:6]))
    return dx, dy


def render_frames(spec: HeldoutSpec) -> Iterator[np.ndarray]:
    """All frames (RGB uint8 [H, W, 3]); frame ``k`` shows time ``k / fps``, an event shows on its nearest frame."""
    rng = np.random.default_rng(spec.layout_seed)
    shots, count = build_shots(spec, rng)
    world_h, world_w = int(WORLD_SCALE * spec.height), int(WORLD_SCALE * spec.width)
    pictures = [make_picture(rng, world_h, world_w) for _ in range(count)]
    phases, grain_seed = rng.uniform(0, 2 * np.pi, 6), int(rng.integers(2**31))
    flashes, half_frame = spec.event_times("flash"), 0.5 / spec.fps
    for k in range(int(round(spec.seconds * spec.fps))):
        t = k / spec.fps
        shot = [s for s in shots if s.start <= t + half_frame][-1]
        dt = t - shot.start
        dx, dy = _shake(spec, phases, t)
        zoom = _zoom_at(shot, t)
        # frame pixel (u, v) looks at world (x + (u - w/2) * zoom, y + (v - h/2) * zoom)
        matrix = np.array([[zoom, 0, shot.x + shot.vx * dt + dx - zoom * spec.width / 2],
                           [0, zoom, shot.y + shot.vy * dt + dy - zoom * spec.height / 2]], np.float32)
        frame = cv2.warpAffine(pictures[shot.picture], matrix, (spec.width, spec.height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
        frame = frame.astype(np.float32)
        shown = [e for e in flashes if e <= t + half_frame]
        if shown:
            flash = 0.8 * math.exp(-max(t - shown[-1], 0.0) / FLASH_DECAY)
            frame += (255 - frame) * flash
        frame += np.random.default_rng([grain_seed, k]).normal(0, 2.5, frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


# --- the dataset -------------------------------------------------------------------------------------------------

def media_paths(out_dir: Path, spec_id: str) -> tuple[Path, Path]:
    return out_dir / "clips" / f"{spec_id}.mp4", out_dir / "music" / f"{spec_id}.wav"


def make_clip(spec: HeldoutSpec, out_dir: str | Path, renderer: str = "auto",
              soundfont: str | Path = DEFAULT_SOUNDFONT) -> None:
    """Write ``music/<id>.wav`` then ``clips/<id>.mp4`` (music muxed in), each under its real name only when whole."""
    from media.audio import write_wav
    from media.video_writer import write_mp4

    video_path, music_path = media_paths(Path(out_dir), spec.id)
    audio = render_music(music_spec(spec), renderer, soundfont)
    write_wav(music_path, audio, MUSIC_SAMPLE_RATE)
    partial = video_path.with_name(f"{video_path.stem}.partial.mp4")
    write_mp4(partial, render_frames(spec), spec.width, spec.height, spec.fps, audio, MUSIC_SAMPLE_RATE, crf=spec.crf)
    partial.replace(video_path)


def clip_row(spec: HeldoutSpec) -> dict:
    """The ``data/schema.py`` row, ground truth included."""
    kinds = sorted({k for _, k in spec.events})
    return {
        "id": spec.id, "video_id": spec.id, "video_path": f"clips/{spec.id}.mp4", "music_path": f"music/{spec.id}.wav",
        "start": 0.0, "duration": float(spec.seconds),
        "title": (f"held-out event video {spec.width}x{spec.height} {spec.fps} fps crf {spec.crf}; events "
                  + ", ".join(f"{k}@{t:.3f}" for t, k in spec.events)),
        "tags": ["heldout", "do-not-train", *kinds],
        "event_times": [float(t) for t in spec.event_times()], "beat_times": [float(t) for t in spec.beat_times],
        "tempo": float(spec.bpm), "key": KEY_NAMES[spec.key], "mode": spec.mode, "program": int(spec.program),
        "caption": None,  # never trained on; prompts for its clips are built when measuring
    }


def generate(out_dir: str | Path, n: int, seed: int, seconds: float = 8.0, renderer: str = "auto",
             soundfont: str | Path = DEFAULT_SOUNDFONT, overwrite: bool = False, workers: int = 1,
             progress: bool = True):
    """Make (or resume) the held-out set of ``n`` clips in ``out_dir``; returns the ``DatasetDict`` (all ``test``)."""

    out_dir, renderer = Path(out_dir), resolve_renderer(renderer, soundfont)
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "seconds": seconds, "renderer": renderer,
              "soundfont": str(soundfont) if renderer == "fluidsynth" else None}
    prepare_out_dir(out_dir, params, overwrite, "data.heldout_events", HeldoutError)
    specs = [sample_heldout_spec(seed, index, seconds) for index in range(n)]
    todo = [s for s in specs if not all(p.is_file() for p in media_paths(out_dir, s.id))]
    render_clips(make_clip, todo, n, out_dir, renderer, soundfont, workers, "held-out clips", progress)
    dataset = save_clip_rows(out_dir, {"test": [clip_row(s) for s in specs]})
    write_schema_file(out_dir, "heldout_events", n=n, splits={"train": 0.0, "test": 1.0, "validation": 0.0},
                      sample_rate=MUSIC_SAMPLE_RATE, do_not_train=True, **params)
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.heldout_events",
                                     description="Held-out event videos (never for training or model selection).")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--n", required=True, type=int, help="number of clips")
    parser.add_argument("--seed", required=True, type=int, help="set seed (>= 0); clip k depends only on (seed, k)")
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length (default 8)")
    parser.add_argument("--renderer", default="auto", choices=RENDERERS, help="music renderer (as data.synthetic)")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    args = parser.parse_args(argv)
    if args.n <= 0 or args.seed < 0 or not (2.0 <= args.seconds <= 600) or args.workers < 1:
        parser.error("need --n > 0, --seed >= 0, 2 <= --seconds <= 600, --workers >= 1")
    try:
        dataset = generate(args.out, args.n, args.seed, args.seconds, args.renderer, args.soundfont, args.overwrite,
                           args.workers)
    except UserError as error:
        print(f"python -m data.heldout_events: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: test {len(dataset['test'])} held-out clips (never train or select on them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
