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
from data.synthetic.build import build_dataset, clip_is_done, clip_row, generate, make_clip, media_paths
from data.synthetic.command import main, parse_args
from data.synthetic.music import build_midi, render_music, resolve_renderer
from data.synthetic.spec import (DEFAULT_SOUNDFONT, KEY_NAMES, MOODS, RENDERERS, ClipSpec, Event, SyntheticError,
                                 clip_id, sample_clip_spec)
from data.synthetic.video import render_frames

__all__ = ["ClipSpec", "DEFAULT_SOUNDFONT", "Event", "KEY_NAMES", "MOODS", "RENDERERS", "SyntheticError", "build_dataset",
           "build_midi", "clip_id", "clip_is_done", "clip_row", "generate", "main", "make_clip", "media_paths",
           "parse_args", "render_frames", "render_music", "resolve_renderer", "sample_clip_spec"]
