"""The music of a clip: a MIDI score built from its spec (a chord bed, an arpeggio, accents and drums on the
event beats), rendered by FluidSynth with a General MIDI SoundFont or by a numpy additive synth.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi

from data.schema import MUSIC_SAMPLE_RATE
from media.audio import read_audio
from data.synthetic.spec import (BEATS_PER_BAR, DEFAULT_SOUNDFONT, PEAK, PROGRESSIONS, RENDERERS, SCALES, ClipSpec,
                                 SyntheticError)


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


def nearest_beat(spec: ClipSpec, time: float) -> int:
    """Index of the beat of ``spec.beat_times`` nearest ``time``: ``round(time / beat)`` on an even grid, and
    still the right bar's chord on an uneven one (the held-out set's grid bends so that events land on beats)."""
    beats = np.asarray(spec.beat_times, float)
    return int(np.abs(beats - time).argmin()) if len(beats) else round(time / spec.beat_length)


def _add_events(accents: pretty_midi.Instrument, drums: pretty_midi.Instrument, spec: ClipSpec) -> None:
    """Loud hits exactly on the event times: cuts get kick + crash + chord, impacts kick + snare + a high note."""
    beat = spec.beat_length
    for n, event in enumerate(spec.events):
        chord, t = chord_at_beat(spec, nearest_beat(spec, event.time)), event.time
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
        audio, file_sr = read_audio(wav)  # mono float32 [samples]
    if file_sr != sr:
        raise RuntimeError(f"fluidsynth wrote {file_sr} Hz, expected {sr} Hz")
    return audio


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
