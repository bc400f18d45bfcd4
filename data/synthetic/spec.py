"""What decides one synthetic clip: its mood, key, instrument, tempo, events and layout, drawn from
``(seed, index)`` alone (see the package docstring for how the video decides the music).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.errors import UserError

GENERATOR_VERSION = 1  # bump when the same (seed, index) would draw a different clip
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


class SyntheticError(UserError):
    """A run that cannot go ahead (bad output folder, missing renderer); the message is one line for the user."""


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
