"""Regenerate ``examples/example.mp4``, the video the README's main command runs on.

    python examples/make_example.py            # or: python -m examples.make_example

Why a synthetic clip: it ships with the repository (256x144, 10 s, well under 1 MB), needs no download, and has
known cuts and impacts, so the music generated for it can be checked by eye and ear. Its own audio track is the
synthetic music (FluidSynth when installed, else the additive synth); the inference tool replaces it.
Deterministic: the same seed always picks the same clip.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from data.schema import MUSIC_SAMPLE_RATE  # noqa: E402  (after the path fix above)
from data.synthetic import (  # noqa: E402
    KEY_NAMES, ClipSpec, render_frames, render_music, resolve_renderer, sample_clip_spec,
)
from media.video_writer import write_mp4  # noqa: E402

SEED, SECONDS, HEIGHT, FPS = 2024, 10.0, 144, 24
OUT = ROOT / "examples" / "example.mp4"


def pick_example(min_cuts: int = 2, min_impacts: int = 3) -> ClipSpec:
    """The first clip of the seed with enough of both kinds of event to show what the model should follow."""
    for index in range(1000):
        spec = sample_clip_spec(SEED, index, SECONDS, FPS, HEIGHT)
        if len(spec.event_times("cut")) >= min_cuts and len(spec.event_times("impact")) >= min_impacts:
            return spec
    raise RuntimeError(f"no clip of seed {SEED} has {min_cuts} cuts and {min_impacts} impacts")


def main() -> None:
    spec, renderer = pick_example(), resolve_renderer("auto")
    audio = render_music(spec, renderer)
    partial = OUT.with_name("example.partial.mp4")
    write_mp4(partial, render_frames(spec), spec.width, spec.height, spec.fps, audio, MUSIC_SAMPLE_RATE)
    partial.replace(OUT)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1024:.0f} KiB, {spec.width}x{spec.height}, "
          f"{spec.seconds:g} s, music by {renderer})")
    print(f"{spec.id}: {spec.bpm:g} BPM, key {KEY_NAMES[spec.key]} {spec.mode}, program {spec.program}")
    print("cuts at    " + " ".join(f"{t:.3f}" for t in spec.event_times("cut")))
    print("impacts at " + " ".join(f"{t:.3f}" for t in spec.event_times("impact")))


if __name__ == "__main__":
    main()
