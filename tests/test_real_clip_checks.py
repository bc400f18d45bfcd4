"""The real-footage music checks on signals whose answer is known: a chord is tonal, white noise is flat, a click
track has an onset in every 5 s (and one with a long pause has not), silence is undefined, not a number."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from media.audio import write_wav
from scoring.music_sanity import clip_figures, longest_gap

SR = 32_000


def chord(seconds: float = 6.0, pitches=(60, 64, 67), sr: int = SR) -> np.ndarray:
    """A C major triad of decaying piano-like tones (three harmonics), struck every 2 s."""
    t = np.arange(int(seconds * sr)) / sr
    envelope = np.exp(-(t % 2.0) / 0.8)
    wave = sum(np.sin(2 * np.pi * k * 440 * 2 ** ((p - 69) / 12) * t) / k for p in pitches for k in (1, 2, 3))
    return (0.2 * envelope * wave).astype(np.float32)


def noise(seconds: float = 6.0, sr: int = SR) -> np.ndarray:
    return (0.3 * np.random.default_rng(0).standard_normal(int(seconds * sr))).astype(np.float32)


def clicks(times, seconds: float, sr: int = SR) -> np.ndarray:
    out = np.zeros(int(seconds * sr), np.float32)
    burst = (np.random.default_rng(1).uniform(-1, 1, 200) * np.exp(-np.arange(200) / 40)).astype(np.float32)
    for t in times:
        out[int(t * sr) : int(t * sr) + 200] += 0.8 * burst
    return out


def test_a_chord_is_tonal_and_noise_is_flat():
    tonal, flat = clip_figures(chord(), SR), clip_figures(noise(), SR)
    assert tonal["undefined"] is None and flat["undefined"] is None
    assert tonal["chroma_peak_mean"] >= 3.0 > flat["chroma_peak_mean"]
    assert flat["chroma_peak_mean"] < 2.0
    assert flat["flatness"] > 0.3 and tonal["flatness"] < 0.01


def test_a_click_track_has_an_onset_in_every_5_s_and_a_long_pause_has_not():
    steady = clip_figures(clicks(np.arange(0.5, 12, 1.0), 12.0), SR)
    assert steady["onset_every_5s"] == 1.0 and steady["longest_gap_s"] < 1.5
    assert 0.8 <= steady["onsets_per_s"] <= 1.2
    paused = clip_figures(clicks([0.5, 1.5, 9.0, 10.0], 12.0), SR)
    assert paused["onset_every_5s"] == 0.0 and 7.0 < paused["longest_gap_s"] < 8.0


def test_a_drone_over_noise_is_tonal_by_chroma_but_flatter_than_music():
    """Why flatness is among the goals: one sustained pitch class makes chroma peak/mean high on its own."""
    t = np.arange(6 * SR) / SR
    drone = (0.2 * np.sin(2 * np.pi * 110 * t)).astype(np.float32) + 0.3 * 0.2 / np.sqrt(2) * noise() / 0.3
    figures, music = clip_figures(drone, SR), clip_figures(chord(), SR)
    assert figures["chroma_peak_mean"] >= 3.0
    assert figures["flatness"] > 10 * music["flatness"]


def test_the_gap_counts_the_clip_edges():
    assert longest_gap(np.array([]), 12.0) == 12.0
    assert longest_gap(np.array([1.0, 2.0]), 9.0) == 7.0


@pytest.mark.parametrize("signal", [np.zeros(6 * SR, np.float32), np.zeros(100, np.float32)])
def test_silence_and_a_too_short_clip_are_undefined_not_numbers(signal):
    figures = clip_figures(signal, SR)
    assert figures["undefined"]
    assert all(math.isnan(figures[name]) for name in ("chroma_peak_mean", "flatness", "onsets_per_s",
                                                      "longest_gap_s", "onset_every_5s"))


def test_the_tool_writes_json_and_markdown_with_verdicts(tmp_path):
    from tools.real_clip_checks import main

    reference, generated = tmp_path / "reference", tmp_path / "generated"
    reference.mkdir(), generated.mkdir()
    for k, pitches in enumerate([(60, 64, 67), (57, 60, 64), (62, 65, 69)]):
        write_wav(reference / f"r{k}.wav", chord(6.0, pitches) + 0.002 * noise(6.0), SR)
    write_wav(generated / "music.wav", chord(6.0) + 0.002 * noise(6.0), SR)
    write_wav(generated / "hiss.wav", noise(6.0), SR)
    write_wav(generated / "mute.wav", np.zeros(6 * SR, np.float32), SR)
    main([str(generated), "--reference", str(reference), "--json", str(tmp_path / "r.json"), "--md",
          str(tmp_path / "r.md")])
    report = json.loads((tmp_path / "r.json").read_text())  # strict JSON: undefined is null, never NaN
    clips = report["clips"]
    assert clips["music"]["tonal"] and clips["music"]["onset_every_window"]
    assert not clips["hiss"]["tonal"] and not clips["hiss"]["flatness_in_reference_range"]
    assert clips["mute"]["chroma_peak_mean"] is None and clips["mute"]["undefined"].startswith("silent")
    assert not clips["mute"]["passes"] and report["summary"]["undefined"] == 1
    assert report["reference"]["flatness"]["n"] == 3
    assert "onset_rate_in_reference_range" in clips["music"] and "onset_rate_in_reference_range" in report["summary"]
    assert "undefined" in (tmp_path / "r.md").read_text()
