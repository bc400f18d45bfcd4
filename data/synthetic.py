"""Synthetic video-music clips whose music fits the video by construction (DESIGN.md section 6).

Why: with known beats, keys and event times, synchronisation and mood can be measured exactly, and tests and CPU
experiments need no downloads. Every clip is decided by ``(seed, index)`` alone, so any clip can be rebuilt, a set
can grow without changing its first clips, and clips can be made in any order or process.

How the video decides the music:

| video                                                         | music                                     |
|---------------------------------------------------------------|-------------------------------------------|
| warm (red-yellow) and bright / cool (cyan-violet) and dark    | major / minor mode                        |
| base hue: its step (of 12) inside the mood's hue range        | key, C first                              |
| saturation: its step (of 5) inside 0.35-0.85                  | General MIDI program from the mood's list |
| speed of the drifting shapes (0.25 frame heights per beat)    | tempo, 70-150 BPM                         |
| cut (new layout and shades) at an event beat                  | kick + crash + loud chord                 |
| impact (ball hits the floor, flash, ring) at an event beat    | kick + snare + loud melody note           |

Events are a random subset of beats (at least two beats apart), so only the video tells where they are; between
them a quiet bed (a chord per bar, a quarter-note arpeggio, soft hi-hats) keeps it music rather than clicks.

    python -m data.synthetic --out data/synth --n 200 --seconds 30 --seed 0

writes the clip dataset of ``data/schema.py`` (``clips/``, ``music/``, splits, ``schema.json``). An existing
``--out`` made with the same settings is resumed (finished clips are kept); ``--overwrite`` starts again.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np
import pretty_midi
import soundfile as sf
from tqdm import tqdm

from data.schema import MUSIC_SAMPLE_RATE, SPLITS, clip_features, write_schema_file
from data.splits import DEFAULT_FRACTIONS, assign_splits, parse_fractions

if TYPE_CHECKING:  # imported lazily below: datasets is slow to import and the command line should fail fast
    from datasets import DatasetDict

GENERATOR_VERSION = 1  # bump when the same (seed, index) would draw a different clip
PARAMS_FILE = ".synthetic_params.json"  # settings of a run in progress, checked on resume
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
RENDERERS = ("auto", "fluidsynth", "additive")
KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = {"major": (0, 4, 5, 3), "minor": (0, 5, 2, 6)}  # I-V-vi-IV and i-VI-III-VII, one chord per bar
BEATS_PER_BAR = 4
BPM_RANGE = (70, 150)
SATURATION_RANGE = (0.35, 0.85)
SHAPE_SPEED = 0.25  # frame heights per beat: faster shapes, faster music
EVENT_PROBABILITY = 0.35  # chance that a free beat carries an event
CUT_PROBABILITY = 0.3  # chance that an event is a cut rather than an impact
PEAK = 0.9  # peak level of the rendered music


@dataclass(frozen=True)
class Mood:
    """A palette family and what it sounds like: keys laid along ``hues``, programs along saturation."""

    name: str
    mode: str
    hues: tuple[float, float]  # hue range (0-1, may start below 0 to wrap through red)
    values: tuple[float, float]  # HSV value (brightness) range
    programs: tuple[int, ...]  # General MIDI programs, 0-based


MOODS = (
    # piano, electric piano, vibraphone, nylon guitar, harp
    Mood("bright-warm", "major", hues=(-0.08, 0.16), values=(0.78, 0.95), programs=(0, 4, 11, 24, 46)),
    # strings, pizzicato, cello, warm pad, church organ
    Mood("dark-cool", "minor", hues=(0.47, 0.75), values=(0.22, 0.42), programs=(48, 45, 42, 89, 19)),
)


@dataclass(frozen=True)
class Event:
    time: float  # seconds, always a beat time
    kind: str  # "cut" or "impact"


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides one clip; drawn from ``(seed, index)`` by ``sample_clip_spec``."""

    id: str
    seconds: float
    fps: int
    height: int
    mood: str
    mode: str
    key: int  # pitch class, 0 = C
    program: int
    hue: float
    saturation: float
    value: float
    bpm: float
    beat_times: tuple[float, ...]
    events: tuple[Event, ...]
    layout_seed: int

    @property
    def width(self) -> int:
        """16:9 frames, rounded to an even width as H.264 with yuv420p requires."""
        return 2 * round(self.height * 16 / 9 / 2)

    @property
    def beat_length(self) -> float:
        return 60.0 / self.bpm

    def event_times(self, kind: str | None = None) -> list[float]:
        return [e.time for e in self.events if kind is None or e.kind == kind]


class SyntheticError(ValueError):
    """A run that cannot go ahead (bad output folder, missing renderer); the message is one line for the user."""


# ---------------------------------------------------------------------------------------------------- clip specs


def clip_id(seed: int, index: int) -> str:
    """Ids carry the seed so sets made with different seeds can be merged without collisions."""
    return f"syn{seed}_{index:06d}"


def beat_grid(bpm: float, seconds: float) -> tuple[float, ...]:
    """Beat times from 0 up to (not including) the clip end."""
    count = math.ceil(seconds * bpm / 60.0 - 1e-9)
    return tuple(round(k * 60.0 / bpm, 9) for k in range(count))


def sample_events(rng: np.random.Generator, beats: tuple[float, ...], seconds: float) -> tuple[Event, ...]:
    """An irregular subset of beats (not the first, two beats apart, clear of the end); at least one if possible."""
    candidates = [k for k, t in enumerate(beats) if k >= 1 and t <= seconds - 0.3]
    chosen, k = [], 1
    while candidates and k <= candidates[-1]:
        if rng.random() < EVENT_PROBABILITY:
            chosen.append(k)
            k += 2
        else:
            k += 1
    if not chosen and candidates:
        chosen = [int(rng.choice(candidates))]
    return tuple(Event(beats[k], "cut" if rng.random() < CUT_PROBABILITY else "impact") for k in chosen)


def _in_bucket(low: float, high: float, count: int, index: int, rng: np.random.Generator) -> float:
    """A value inside bucket ``index`` of ``count`` equal buckets of [low, high], kept off the bucket edges."""
    width = (high - low) / count
    return low + width * (index + rng.uniform(0.2, 0.8))


def sample_clip_spec(seed: int, index: int, seconds: float, fps: int = 24, height: int = 128) -> ClipSpec:
    """Draw clip ``index`` of the set made with ``seed``: mood, key, program, tempo, events and layout seed."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed, index])
    mood = MOODS[int(rng.integers(len(MOODS)))]
    key, slot = int(rng.integers(12)), int(rng.integers(len(mood.programs)))
    hue = _in_bucket(*mood.hues, 12, key, rng) % 1.0
    saturation = _in_bucket(*SATURATION_RANGE, len(mood.programs), slot, rng)
    value = float(rng.uniform(*mood.values))
    bpm = float(rng.integers(BPM_RANGE[0], BPM_RANGE[1] + 1))
    beats = beat_grid(bpm, seconds)
    events = sample_events(rng, beats, seconds)
    return ClipSpec(
        id=clip_id(seed, index), seconds=seconds, fps=fps, height=height, mood=mood.name, mode=mood.mode,
        key=key, program=mood.programs[slot], hue=hue, saturation=saturation, value=value, bpm=bpm,
        beat_times=beats, events=events, layout_seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------------------------------- music


def chord_pitches(key: int, mode: str, degree: int, octave: int = 4) -> list[int]:
    """MIDI pitches of the triad on scale ``degree`` (0-based) of ``key``, root in ``octave`` (C4 = 60)."""
    scale, root = SCALES[mode], 12 * (octave + 1) + key
    return [root + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]


def chord_at_beat(spec: ClipSpec, beat_index: int) -> list[int]:
    progression = PROGRESSIONS[spec.mode]
    return chord_pitches(spec.key, spec.mode, progression[(beat_index // BEATS_PER_BAR) % len(progression)])


def _note(instrument: pretty_midi.Instrument, pitch: int, velocity: int, start: float, length: float,
          end: float) -> None:
    """Add a note, cut at the clip end so renderers agree on what sounds."""
    instrument.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=min(start + length, end)))


def _add_bed(bed: pretty_midi.Instrument, drums: pretty_midi.Instrument, spec: ClipSpec) -> None:
    """The quiet harmonic bed on every beat: a chord per bar, a quarter-note arpeggio, soft closed hi-hats."""
    beat = spec.beat_length
    for k, t in enumerate(spec.beat_times):
        chord = chord_at_beat(spec, k)
        if k % BEATS_PER_BAR == 0:
            for pitch in chord:
                _note(bed, pitch, 44, t, BEATS_PER_BAR * beat, spec.seconds)
        _note(bed, chord[k % 3] + 12, 36, t, 0.9 * beat, spec.seconds)
        _note(drums, 42, 30, t, 0.1, spec.seconds)


def _add_events(accents: pretty_midi.Instrument, drums: pretty_midi.Instrument, spec: ClipSpec) -> None:
    """Loud hits exactly on the event times: cuts get kick + crash + chord, impacts kick + snare + a high note."""
    beat = spec.beat_length
    for n, event in enumerate(spec.events):
        chord, t = chord_at_beat(spec, round(event.time / beat)), event.time
        _note(drums, 36, 124, t, 0.2, spec.seconds)
        _note(accents, chord[0] - 12, 104, t, 2 * beat, spec.seconds)
        if event.kind == "cut":
            _note(drums, 49, 118, t, 1.0, spec.seconds)
            for pitch in chord:
                _note(accents, pitch, 112, t, 2 * beat, spec.seconds)
        else:
            _note(drums, 38, 108, t, 0.2, spec.seconds)
            _note(accents, chord[n % 3] + 12, 112, t, beat, spec.seconds)


def build_midi(spec: ClipSpec) -> pretty_midi.PrettyMIDI:
    """The clip's score. Bed and accents use separate channels so same-pitch notes never cut each other off."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=spec.bpm, resolution=960)
    bed = pretty_midi.Instrument(program=spec.program, name="bed")
    accents = pretty_midi.Instrument(program=spec.program, name="accents")
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    _add_bed(bed, drums, spec)
    _add_events(accents, drums, spec)
    midi.instruments += [bed, accents, drums]
    return midi


def render_fluidsynth(midi: pretty_midi.PrettyMIDI, soundfont: str | Path, sr: int = MUSIC_SAMPLE_RATE) -> np.ndarray:
    """Render with the FluidSynth CLI (argument list, no shell) and mix down to mono float32."""
    with tempfile.TemporaryDirectory(prefix="synthetic_") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.write(str(mid))
        command = ["fluidsynth", "-ni", "-g", "0.8", "-F", str(wav), "-r", str(sr), str(soundfont), str(mid)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not wav.is_file():
            reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"fluidsynth failed (exit {result.returncode}): {reason}")
        audio, file_sr = sf.read(str(wav), dtype="float32", always_2d=True)
    if file_sr != sr:
        raise RuntimeError(f"fluidsynth wrote {file_sr} Hz, expected {sr} Hz")
    return audio.mean(axis=1)


SUSTAINED_PROGRAMS = frozenset({19, 42, 48, 89})  # organ, cello, strings, pad: slow attack, no decay


def _tone(pitch: int, velocity: int, length: float, program: int, sr: int) -> np.ndarray:
    """One additive-synth note: four harmonics, a plucked or a sustained envelope, a short release."""
    t = np.arange(int((length + 0.08) * sr)) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / 2 ** (k - 1) for k in range(1, 5) if k * f0 < sr / 2)
    if program in SUSTAINED_PROGRAMS:
        envelope = np.minimum(t / 0.03, 1.0) * 0.8
    else:
        envelope = np.minimum(t / 0.004, 1.0) * np.exp(-t / 0.6)
    envelope *= np.clip((length + 0.08 - t) / 0.08, 0.0, 1.0)  # release after the note ends
    return (0.25 * (velocity / 127) ** 2 * envelope * wave).astype(np.float32)


def _drum(pitch: int, velocity: int, sr: int) -> np.ndarray:
    """One additive-synth drum hit: kick (36), snare (38), closed hat (42), crash (49); noise seeded by pitch."""
    decay = {36: 0.12, 38: 0.06, 42: 0.02, 49: 0.4}.get(pitch, 0.05)
    t = np.arange(int(8 * decay * sr)) / sr  # long enough to fade out (e^-8): a cut-off tail is a false onset
    noise = np.random.default_rng(pitch).uniform(-1, 1, len(t))
    if pitch == 36:
        wave = np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-t / 0.03)) / sr)
    elif pitch == 38:
        wave = 0.6 * noise + 0.4 * np.sin(2 * np.pi * 190 * t)
    else:
        wave = 0.5 * np.diff(noise, prepend=0.0)  # high-passed noise for cymbals
    return ((velocity / 127) ** 2 * np.exp(-t / decay) * wave).astype(np.float32)


def render_additive(midi: pretty_midi.PrettyMIDI, seconds: float, sr: int = MUSIC_SAMPLE_RATE) -> np.ndarray:
    """The fallback renderer (no FluidSynth or SoundFont): every note synthesised in numpy and summed."""
    out = np.zeros(int(round(seconds * sr)) + sr, np.float32)
    for instrument in midi.instruments:
        for note in instrument.notes:
            start = int(round(note.start * sr))
            if start >= len(out):
                continue
            if instrument.is_drum:
                wave = _drum(note.pitch, note.velocity, sr)
            else:
                wave = _tone(note.pitch, note.velocity, note.end - note.start, instrument.program, sr)
            wave = wave[: len(out) - start]
            out[start : start + len(wave)] += wave
    return out


def finish_audio(audio: np.ndarray, seconds: float, sr: int = MUSIC_SAMPLE_RATE) -> np.ndarray:
    """Trim or pad to exactly ``seconds``, fade the last 10 ms (no click at the cut), peak-normalise to ``PEAK``."""
    n = int(round(seconds * sr))
    out = np.zeros(n, np.float32)
    out[: min(n, len(audio))] = audio[:n]
    fade = min(n, int(0.01 * sr))
    out[n - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(out))) if n else 0.0
    return out * (PEAK / peak) if peak > 0 else out


def resolve_renderer(requested: str, soundfont: str | Path = DEFAULT_SOUNDFONT) -> str:
    """``auto`` picks FluidSynth when the CLI and the SoundFont are there, else the additive synth."""
    if requested not in RENDERERS:
        raise SyntheticError(f"renderer must be one of {', '.join(RENDERERS)}, got {requested!r}")
    available = shutil.which("fluidsynth") is not None and Path(soundfont).is_file()
    if requested == "auto":
        return "fluidsynth" if available else "additive"
    if requested == "fluidsynth" and not available:
        raise SyntheticError(f"renderer fluidsynth needs the fluidsynth CLI and the SoundFont {soundfont} "
                             "(apt-get install fluidsynth fluid-soundfont-gm), or use --renderer additive")
    return requested


def render_music(spec: ClipSpec, renderer: str = "auto", soundfont: str | Path = DEFAULT_SOUNDFONT,
                 sr: int = MUSIC_SAMPLE_RATE) -> np.ndarray:
    """The clip's music: float32 mono [seconds * sr], peak ``PEAK``."""
    midi, renderer = build_midi(spec), resolve_renderer(renderer, soundfont)
    if renderer == "fluidsynth":
        return finish_audio(render_fluidsynth(midi, soundfont, sr), spec.seconds, sr)
    return finish_audio(render_additive(midi, spec.seconds, sr), spec.seconds, sr)


# ---------------------------------------------------------------------------------------------------- video


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


def _send(container: av.container.OutputContainer, stream: av.stream.Stream, frame: av.frame.Frame | None) -> None:
    for packet in stream.encode(frame):
        container.mux(packet)


def _send_audio(container: av.container.OutputContainer, stream: av.stream.Stream, audio: np.ndarray, sent: int,
                until: int, sr: int) -> int:
    """Encode audio samples [sent, until) in AAC-sized frames (a shorter last one only at the end)."""
    size = 1024
    while sent < until and (until - sent >= size or until == len(audio)):
        chunk = audio[sent : min(sent + size, until)]
        samples = np.ascontiguousarray(chunk[None, :], np.float32)  # [channels=1, samples], planar float
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, sent, Fraction(1, sr)
        _send(container, stream, frame)
        sent += len(chunk)
    return sent


def _yuv420p_frame(image: np.ndarray) -> av.VideoFrame:
    """Convert RGB [H, W, 3] to yuv420p (BT.601, limited range, as swscale does) with OpenCV.

    Why here rather than letting PyAV convert inside ``encode``: it is about 10x faster than a new swscale
    context per frame, which was a third of the encoding time of a clip.
    """
    planes = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)  # [H * 3 / 2, W]: Y, then U and V at quarter size
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def write_mp4(path: str | Path, frames: Iterator[np.ndarray], width: int, height: int, fps: int,
              audio: np.ndarray, sr: int = MUSIC_SAMPLE_RATE, crf: int = 20) -> None:
    """H.264 (yuv420p) video with the music as an AAC track, interleaved as it goes so players stream it.

    Reproducible bytes: one encoder thread, and x264's macroblock tree off (with it on, this libx264 gave
    run-to-run different bytes for the same frames; off costs some compression at the same CRF).
    ``frames`` are RGB uint8 [height, width, 3]; ``audio`` float32 mono [samples] at ``sr``.
    """
    with av.open(str(path), "w", format="mp4") as container:
        options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        video = container.add_stream("libx264", rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=sr, layout="mono")
        sound.bit_rate, sent = 64_000, 0
        for k, image in enumerate(frames):
            frame = _yuv420p_frame(image)
            frame.pts, frame.time_base = k, Fraction(1, fps)
            _send(container, video, frame)
            sent = _send_audio(container, sound, audio, sent, min(len(audio), (k + 1) * sr // fps), sr)
        _send_audio(container, sound, audio, sent, len(audio), sr)
        _send(container, video, None)
        _send(container, sound, None)


# ---------------------------------------------------------------------------------------------------- dataset


def _partial(path: Path) -> Path:
    """Where a file is written before being renamed into place, so a file under its real name is complete."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def media_paths(out_dir: Path, spec_id: str) -> tuple[Path, Path]:
    return out_dir / "clips" / f"{spec_id}.mp4", out_dir / "music" / f"{spec_id}.wav"


def make_clip(spec: ClipSpec, out_dir: str | Path, renderer: str = "auto",
              soundfont: str | Path = DEFAULT_SOUNDFONT) -> None:
    """Write ``music/<id>.wav`` then ``clips/<id>.mp4`` (with the music muxed in), each by atomic rename."""
    video_path, music_path = media_paths(Path(out_dir), spec.id)
    audio = render_music(spec, renderer, soundfont)
    sf.write(str(_partial(music_path)), audio, MUSIC_SAMPLE_RATE, subtype="PCM_16")
    _partial(music_path).replace(music_path)
    write_mp4(_partial(video_path), render_frames(spec), spec.width, spec.height, spec.fps, audio)
    _partial(video_path).replace(video_path)


def clip_is_done(out_dir: str | Path, spec_id: str) -> bool:
    """Both files exist under their real names (they only get them when complete)."""
    return all(path.is_file() for path in media_paths(Path(out_dir), spec_id))


def clip_row(spec: ClipSpec) -> dict:
    """The dataset row of a clip (``data/schema.py``), ground truth included."""
    key, instrument = KEY_NAMES[spec.key], pretty_midi.program_to_instrument_name(spec.program)
    return {
        "id": spec.id, "video_id": spec.id, "video_path": f"clips/{spec.id}.mp4", "music_path": f"music/{spec.id}.wav",
        "start": 0.0, "duration": float(spec.seconds),
        "title": f"synthetic {spec.mood} scene, {key} {spec.mode}, {instrument}, {spec.bpm:g} BPM",
        "tags": ["synthetic", spec.mood, spec.mode, instrument],
        "event_times": [float(t) for t in spec.event_times()], "beat_times": [float(t) for t in spec.beat_times],
        "tempo": float(spec.bpm), "key": key, "mode": spec.mode, "program": int(spec.program),
    }


def build_dataset(specs: list[ClipSpec], fractions: tuple[float, ...], seed: int) -> DatasetDict:
    """A ``datasets.DatasetDict`` with every split present (possibly empty), rows in clip order."""
    from datasets import Dataset, DatasetDict

    features, splits = clip_features(), assign_splits([spec.id for spec in specs], fractions, seed)
    columns = {}
    for name in SPLITS:  # from column lists, not from_list: an empty split still gets its columns
        rows = [clip_row(spec) for spec in specs if splits[spec.id] == name]
        columns[name] = {column: [row[column] for row in rows] for column in features}
    return DatasetDict({name: Dataset.from_dict(columns[name], features=features) for name in SPLITS})


def _remove_outputs(out_dir: Path) -> None:
    """Delete only what this tool writes, never anything else a user keeps in the folder."""
    for name in ("clips", "music", *SPLITS):
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)
    for name in ("dataset_dict.json", "schema.json", PARAMS_FILE):
        (out_dir / name).unlink(missing_ok=True)


def prepare_out_dir(out_dir: Path, params: dict, overwrite: bool) -> None:
    """Start, resume (same settings only) or, with ``overwrite``, restart a run in ``out_dir``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SyntheticError(f"--out {out_dir} is a file, not a folder")
    if overwrite and out_dir.is_dir():
        _remove_outputs(out_dir)
    elif out_dir.is_dir() and any(out_dir.iterdir()):
        marker = out_dir / PARAMS_FILE
        if not marker.is_file():
            raise SyntheticError(f"--out {out_dir} is not empty and was not made by data.synthetic; "
                                 "pass --overwrite or choose another folder")
        old = json.loads(marker.read_text())
        changed = sorted(k for k in params.keys() | old.keys() if old.get(k) != params.get(k))
        if changed:
            what = ", ".join(f"{k} {old.get(k)!r} -> {params.get(k)!r}" for k in changed)
            raise SyntheticError(f"--out {out_dir} was made with other settings ({what}); "
                                 "pass --overwrite or choose another folder")
    for name in ("clips", "music"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        for leftover in (out_dir / name).glob("*.partial.*"):
            leftover.unlink()
    (out_dir / PARAMS_FILE).write_text(json.dumps(params, indent=2))


def generate(out_dir: str | Path, n: int, seconds: float, seed: int, fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
             height: int = 128, fps: int = 24, renderer: str = "auto", soundfont: str | Path = DEFAULT_SOUNDFONT,
             overwrite: bool = False, progress: bool = True, workers: int = 1) -> DatasetDict:
    """Make (or resume) a synthetic clip dataset of ``n`` clips in ``out_dir``; returns the ``DatasetDict``.

    Clips are independent (clip k depends only on the seed and k), so ``workers`` processes render them in any
    order and the result is the same as with one."""
    out_dir, renderer = Path(out_dir), resolve_renderer(renderer, soundfont)
    params = {"generator_version": GENERATOR_VERSION, "seed": seed, "seconds": seconds, "fps": fps, "height": height,
              "renderer": renderer, "soundfont": str(soundfont) if renderer == "fluidsynth" else None}
    prepare_out_dir(out_dir, params, overwrite)
    specs = [sample_clip_spec(seed, index, seconds, fps, height) for index in range(n)]
    todo = [spec for spec in specs if not clip_is_done(out_dir, spec.id)]
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="synthetic clips", unit="clip",
               disable=not progress)
    if workers > 1 and len(todo) > 1:
        import functools
        import multiprocessing

        render = functools.partial(make_clip, out_dir=out_dir, renderer=renderer, soundfont=soundfont)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(render, todo):
                bar.update()
    else:
        for spec in todo:
            make_clip(spec, out_dir, renderer, soundfont)
            bar.update()
    bar.close()
    dataset = build_dataset(specs, fractions, seed)
    for name in SPLITS:  # stale shards of an earlier save must not survive
        shutil.rmtree(out_dir / name, ignore_errors=True)
    # One shard per split: datasets 5.2 saves an empty split with zero shards and then cannot load it back.
    dataset.save_to_disk(str(out_dir), num_shards={name: 1 for name in SPLITS})
    write_schema_file(out_dir, "synthetic", n=n, splits=dict(zip(SPLITS, fractions)),
                      width=specs[0].width if specs else None, sample_rate=MUSIC_SAMPLE_RATE, **params)
    return dataset


# ---------------------------------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; bad values exit with one argparse-style error line."""
    parser = argparse.ArgumentParser(prog="python -m data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (resumed if it exists)")
    parser.add_argument("--n", required=True, type=int, help="number of clips")
    parser.add_argument("--seconds", required=True, type=float, help="clip length in seconds")
    parser.add_argument("--seed", required=True, type=int, help="set seed (>= 0); clip k depends only on (seed, k)")
    parser.add_argument("--splits", default=",".join(map(str, DEFAULT_FRACTIONS)),
                        help="train,test,validation fractions (by hashed video id)")
    parser.add_argument("--overwrite", action="store_true", help="delete this tool's earlier output in --out first")
    parser.add_argument("--size", type=int, default=128, help="frame height in pixels (even); width is 16:9")
    parser.add_argument("--fps", type=int, default=24, help="video frame rate")
    parser.add_argument("--renderer", default="auto", choices=RENDERERS,
                        help="music renderer (auto: fluidsynth when installed, else additive)")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help="General MIDI SoundFont for fluidsynth")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering clips in parallel (default 1)")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse impossible values the argparse way: usage, one ``error:`` line, exit status 2."""
    problems = [
        (args.n <= 0, f"--n must be a positive number of clips, got {args.n}"),
        (not (0.5 <= args.seconds <= 3600), f"--seconds must be between 0.5 and 3600, got {args.seconds}"),
        (args.seed < 0, f"--seed must be >= 0, got {args.seed}"),
        (args.size < 32 or args.size % 2, f"--size must be an even frame height >= 32, got {args.size}"),
        (not (1 <= args.fps <= 120), f"--fps must be in [1, 120], got {args.fps}"),
        (args.workers < 1, f"--workers must be >= 1, got {args.workers}"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    try:
        args.splits = parse_fractions(args.splits)
    except ValueError as error:
        parser.error(f"--splits: {error}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        renderer = resolve_renderer(args.renderer, args.soundfont)
        dataset = generate(args.out, args.n, args.seconds, args.seed, args.splits, args.size, args.fps,
                           renderer, args.soundfont, args.overwrite, workers=args.workers)
    except SyntheticError as error:
        print(f"python -m data.synthetic: error: {error}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {len(dataset[name])}" for name in SPLITS)
    print(f"wrote {args.out}: {sizes} clips; music rendered by {renderer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
