"""Regenerating a range of existing music (model.regenerate, infer.py --music --regenerate): the rest is kept bit
for bit, the range changes, the joins sit where they should, long ranges chain windows, bad requests get one line."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from model.regenerate import end_join, fitted_gain, plan_regeneration, regenerate_range, splice
from tests.conftest import decaying_hits, write_video

RATE, HOP = 32000, 640
BEATS = [0.25 + 0.5 * i for i in range(40)]  # a click track at 120 BPM, off the codec's frame grid by 0.25 s


def click_music(seconds: float) -> np.ndarray:
    """Float32 [seconds x 32 kHz]: hits on ``BEATS`` (their known beat grid) over a faint noise floor."""
    return 0.5 * decaying_hits([t for t in BEATS if t < seconds], seconds, RATE)


def assert_kept_outside(edited: np.ndarray, original: np.ndarray, changed: tuple[int, int]) -> None:
    a, e = changed
    assert edited.shape == original.shape
    assert np.array_equal(edited[:a], original[:a]) and np.array_equal(edited[e:], original[e:])


def test_the_range_is_new_the_rest_is_the_original_and_the_end_join_is_on_a_beat(tiny_model, video_path):
    music = click_music(3.0)
    result = regenerate_range(tiny_model, video_path, torch.from_numpy(music), 1.0, 1.8, window_seconds=2.0,
                              overlap_seconds=0.5, seed=3)
    plan, edited = result.plan, result.music.numpy()
    assert (plan.prompt_start, plan.start, plan.prompt_frames) == (0.5 * RATE, 1.0 * RATE, 25)  # 0.5 s of prompt
    assert plan.end_join >= 1.8 * RATE and abs(plan.end_join / RATE - 2.25) < 0.04  # the first beat after 1.8 s
    assert abs(plan.end_fade / RATE - 0.5) < 0.04  # one beat at 120 BPM
    assert plan.changed == (plan.prompt_start, plan.end_join + plan.end_fade)
    assert_kept_outside(edited, music, plan.changed)
    new = edited[plan.start:plan.end_join]
    assert not np.allclose(new, music[plan.start:plan.end_join], atol=1e-3) and np.abs(new).max() > 1e-3
    assert np.abs(edited).max() <= np.abs(music).max() + 1e-6  # never louder than the original's peak: no clipping
    assert np.isfinite(result.gain) and result.gain > 0


def test_a_long_range_is_a_chain_of_windows_the_first_continuing_the_original(tiny_model, tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mp4", seconds=4.0, fps=10, size=(64, 48))
    music = click_music(4.0)
    calls, prompts, extract, generate = [], [], tiny_model.extract_features, tiny_model.generate_codes

    def recording_extract(path, start=0.0, max_seconds=None):
        calls.append((round(start, 3), round(max_seconds, 3)))
        return extract(path, start=start, max_seconds=max_seconds)

    def recording_generate(features, seconds, prompt=None, **kwargs):
        codes = generate(features, seconds, prompt=prompt, **kwargs)
        prompts.append((None if prompt is None else prompt.clone(), codes))
        return codes

    monkeypatch.setattr(tiny_model, "extract_features", recording_extract)
    monkeypatch.setattr(tiny_model, "generate_codes", recording_generate)
    result = regenerate_range(tiny_model, video, torch.from_numpy(music), 0.8, 2.6, window_seconds=1.0,
                              overlap_seconds=0.3, seed=1, guidance_scale=1.0)
    plan = result.plan  # prompt from 0.5 s; the end join is the beat at 2.75 s, faded over a beat to 3.25 s
    assert (plan.first_frame, plan.prompt_frames, plan.last_frame) == (25, 15, 164)
    assert calls == [(0.5, 1.0), (1.2, 1.0), (1.9, 1.0), (2.6, 0.68)]  # each window sees its own video
    original = tiny_model.codec.encode(torch.from_numpy(music[:75 * HOP]).reshape(1, 1, -1))
    assert torch.equal(prompts[0][0], original[:, :, 25:40])  # the first window continues the original's codes
    for (prompt, _), (_, previous) in zip(prompts[1:], prompts):
        assert torch.equal(prompt, previous[:, :, -15:])  # the others continue the window before
    assert_kept_outside(result.music.numpy(), music, plan.changed)


def test_plans_and_splices_at_the_edges():
    music = click_music(3.0)
    plan = plan_regeneration(music, RATE, HOP, 0.0, 1.1, overlap_frames=25)
    assert (plan.prompt_start, plan.start, plan.prompt_frames) == (0, 0, 0)  # from the very start: no prompt
    assert plan_regeneration(music, RATE, HOP, 0.3, 1.1, 25).prompt_frames == 15  # only what exists before
    assert end_join(music, RATE, 3.0) == (len(music), 0)  # to the very end: no fade, the new music runs out
    ending = 0.5 * decaying_hits([t for t in BEATS if t < 1.5], 3.0, RATE)  # hits stop at 1.25 s
    join, fade = end_join(ending, RATE, 2.1)
    assert abs(join / RATE - 2.25) < 0.04 and abs(fade / RATE - 0.5) < 0.04  # the grid goes on after the last hit
    quiet = np.zeros(3 * RATE, np.float32)
    assert end_join(quiet, RATE, 1.3) == (round(1.3 * RATE), RATE // 2)  # no beats: END itself, half a second
    new = torch.full((len(music),), 2.0)
    plan = plan_regeneration(music, RATE, HOP, 1.0, 1.8, 25)
    edited = splice(torch.from_numpy(music), new[plan.prompt_start:], plan).numpy()
    a, b, j, f = plan.prompt_start, plan.start, plan.end_join, plan.end_fade
    assert_kept_outside(edited, music, plan.changed)
    assert edited[a] == music[a] and edited[j + f - 1] == music[j + f - 1]  # the fades' outer ends are exact
    assert np.all(edited[b:j] == 1.0)  # the new part is clipped to full scale: a WAV writer never rescales
    loud, peak_half = torch.tensor([0.0, -0.8]), torch.tensor([0.1, -0.5])
    assert fitted_gain(2.0, loud, peak_half) == pytest.approx(0.625) and fitted_gain(0.5, loud, peak_half) == 0.5


def _main(*args: str) -> None:
    import infer

    infer.main([*args, "--config", "tiny"])


def test_the_command_keeps_the_wav_file_values_outside_the_range(tmp_path, video_path, capsys):
    from media.audio import write_wav

    music = tmp_path / "old.wav"
    write_wav(music, click_music(3.0), RATE)
    before = music.read_bytes()
    _main("--video", str(video_path), "--music", str(music), "--regenerate", "1:1.8", "--out", str(tmp_path / "o.mp4"),
          "--wav-out", str(tmp_path / "new.wav"), "--overlap-seconds", "0.5", "--window-seconds", "2", "--seed", "2")
    assert "new from 1.00 s" in capsys.readouterr().out
    old, new = (sf.read(path, dtype="int16")[0] for path in (music, tmp_path / "new.wav"))
    plan = plan_regeneration((old / 32768.0).astype(np.float32), RATE, HOP, 1.0, 1.8, 25)
    assert_kept_outside(new, old, plan.changed)
    assert not np.array_equal(new[plan.start:plan.end_join], old[plan.start:plan.end_join])
    assert music.read_bytes() == before
    import av

    with av.open(str(tmp_path / "o.mp4")) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.wav", "o.mp4", "old.wav"]  # no temporary files


@pytest.mark.parametrize("args, message", [
    (["--music", "{music}"], "--music and --regenerate go together"),
    (["--regenerate", "1:2"], "--music and --regenerate go together"),
    (["--music", "{music}", "--regenerate", "abc"], "must be START:END"),
    (["--music", "{music}", "--regenerate", "1:2:3"], "must be START:END"),
    (["--music", "{music}", "--regenerate", ""], "must be START:END"),
    (["--music", "{music}", "--regenerate", "2:2"], "the end must come after the start"),
    (["--music", "{music}", "--regenerate", "2.5:1"], "the end must come after the start"),
    (["--music", "{music}", "--regenerate=-1:2"], "the start must be >= 0"),
    (["--music", "{music}", "--regenerate", "1:nan"], "finite"),
    (["--music", "{music}", "--regenerate", "1:5"], "the music is only 3.00 s long"),
    (["--music", "{long}", "--regenerate", "2:4"], "the video is only"),
    (["--music", "{music}", "--regenerate", "1:2", "--wav-out", "{music}"], "is the input music"),
    (["--music", "{missing}", "--regenerate", "1:2"], "no such file"),
    (["--music", "{text}", "--regenerate", "1:2"], "not a readable audio file"),
    (["--music", "{music}", "--regenerate", "1:2", "--max-seconds", "2"], "--max-seconds does not apply"),
])
def test_bad_regenerate_requests_get_one_line(tmp_path, video_path, capsys, args, message):
    from media.audio import write_wav

    paths = {"music": tmp_path / "m.wav", "long": tmp_path / "long.wav", "missing": tmp_path / "none.wav",
             "text": tmp_path / "t.wav"}
    write_wav(paths["music"], click_music(3.0), RATE)
    write_wav(paths["long"], click_music(5.0), RATE)
    paths["text"].write_text("not audio")
    before = paths["music"].read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        _main("--video", str(video_path), "--out", str(tmp_path / "o.mp4"),
              *(arg.format(**paths) for arg in args))
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert paths["music"].read_bytes() == before and not (tmp_path / "o.mp4").exists()


def test_continuity_at_given_joins_sees_a_level_step():
    from tools.long_video import continuity_at, middles_between

    t = np.arange(12 * 8000) / 8000
    wav = (np.sin(2 * np.pi * 261.6 * t) * np.where((t >= 4) & (t < 8), 0.1, 0.5)).astype(np.float32)
    assert middles_between(12.0, [4.0, 8.0]) == [2.0, 6.0, 10.0]
    scores = continuity_at(wav, 8000, [4.0, 8.0], span=2.0)
    assert scores["join"]["points"] == 2 and scores["inside"]["points"] == 3
    assert scores["join"]["level_diff_db"] == pytest.approx(20 * np.log10(5), abs=0.2)
    assert scores["inside"]["level_diff_db"] < 0.1 and set(scores["join"]["at"]) == {"4.00", "8.00"}
