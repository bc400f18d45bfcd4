"""Long videos (model.long_form): window plan, equal-power joins, prompted sampling, each window on its own video."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.long_form import crossfade, crossfade_gains, generate_long, plan_windows
from model.sampling import sample_codes
from tests.conftest import write_video


def test_windows_cover_the_video_and_overlap_by_the_prompt():
    windows = plan_windows(total_frames=4000, window_frames=1500, overlap_frames=250)
    assert [(w.start, w.end, w.prompt) for w in windows] == [(0, 1500, 0), (1250, 2750, 250), (2500, 4000, 250)]
    assert plan_windows(10, 1500, 250) == plan_windows(10, 1500, 250)[:1] and plan_windows(10, 1500, 250)[0].end == 10
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(4000, 250, 250)


def test_crossfade_keeps_the_level_of_a_join_and_is_exact_at_its_ends():
    fade_out, fade_in = crossfade_gains(1000)
    assert torch.allclose(fade_out + fade_in, torch.ones(1000))
    assert (fade_out[0], fade_in[0], fade_out[-1], fade_in[-1]) == (1.0, 0.0, 0.0, 1.0)
    tail, head = torch.randn(1000), torch.randn(1000)
    mixed = crossfade(tail, head)
    assert mixed[0] == tail[0] and mixed[-1] == head[-1]
    assert torch.allclose(crossfade(tail, tail), tail, atol=1e-6)  # the same music on both sides: no swell


def _condition(model):
    """Random encoder states [1, 6, D] and their mask [1, 6]."""
    hidden = torch.randn(1, 6, model.decoder.config.hidden_size)
    return hidden, torch.ones(1, 6, dtype=torch.long)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_a_prompt_starts_the_output_exactly_and_is_teacher_forced(tiny_model, guidance):
    k, start = tiny_model.num_codebooks, tiny_model.start_token
    hidden, mask = _condition(tiny_model)
    free = sample_codes(tiny_model.decoder, hidden, mask, 40, k, start, guidance, greedy=True)
    prompt = torch.randint(0, start, (1, k, 15))
    prompted = sample_codes(tiny_model.decoder, hidden, mask, 40, k, start, guidance,
                            generator=torch.Generator().manual_seed(1), prompt=prompt)
    assert prompted.shape == (1, k, 40) and torch.equal(prompted[:, :, :15], prompt)
    # greedy continuation of the model's own first 15 frames must give back its own greedy output
    again = sample_codes(tiny_model.decoder, hidden, mask, 40, k, start, guidance, greedy=True, prompt=free[:, :, :15])
    assert torch.equal(again, free)


def test_each_window_is_conditioned_on_its_own_stretch_of_video(tiny_model, tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mp4", seconds=12.0, fps=10, size=(64, 48))
    calls, prompts, extract, generate = [], [], tiny_model.extract_features, tiny_model.generate_codes

    def recording_extract(path, start=0.0, max_seconds=None):
        features = extract(path, start=start, max_seconds=max_seconds)
        calls.append((start, max_seconds, float(features.motion_times.min()), float(features.motion_times.max())))
        return features

    def recording_generate(features, seconds, prompt=None, **kwargs):
        prompts.append(None if prompt is None else prompt.clone())
        codes = generate(features, seconds, prompt=prompt, **kwargs)
        prompts.append(codes)
        return codes

    monkeypatch.setattr(tiny_model, "extract_features", recording_extract)
    monkeypatch.setattr(tiny_model, "generate_codes", recording_generate)
    wav = generate_long(tiny_model, video, 12.0, window_seconds=5.0, overlap_seconds=1.0, seed=2)
    assert wav.shape == (12 * tiny_model.sample_rate,) and wav.abs().max() > 0
    assert [(s, m) for s, m, _, _ in calls] == [(0.0, 5.0), (4.0, 5.0), (8.0, 4.0)]
    assert all(first < 0.5 and last < m for _, m, first, last in calls)  # times count from the window start
    assert prompts[0] is None and torch.equal(prompts[2], prompts[1][:, :, -tiny_model.frame_rate:])
    assert torch.equal(prompts[4], prompts[3][:, :, -tiny_model.frame_rate:])


def test_the_time_aligned_term_covers_the_prompt_steps(video_path):
    from model.config import load_config
    from model.sampling import TransformersSteps
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_config(load_config("tiny", ["fusion.time_aligned=true"])).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.fusion.aligned_project.weight, std=2.0)
    features = model.extract_features(video_path, start=1.0, max_seconds=1.0)
    free = model.generate_codes([features], 1.0, guidance_scale=1.0, greedy=True)
    prompted = model.generate_codes([features], 1.0, guidance_scale=1.0, greedy=True, prompt=free[:, :, :20])
    assert torch.equal(prompted, free)  # step s of the prompted run saw the same aligned[:, s] as the free run
    hidden, mask, aligned = model.full_condition(model.collate([features]), 50 + 3)
    reference = sample_codes(TransformersSteps(model.decoder), hidden, mask, 50, 4, model.start_token, greedy=True,
                             aligned=aligned, prompt=free[:, :, :20])
    assert torch.equal(reference, free)  # the hook path takes the prompt the same way


def test_the_continuity_measure_sees_a_key_change_at_a_join():
    import numpy as np

    from tools.long_video import continuity

    rate, t = 8000, np.arange(30 * 8000) / 8000
    chord = lambda freqs: sum(np.sin(2 * np.pi * f * t) for f in freqs)  # noqa: E731
    c_major, f_sharp = chord([261.6, 329.6, 392.0]), chord([370.0, 466.2, 277.2])
    # windows of 10 s with 2 s overlap: sampled music of window 1 starts at 10 s, of window 2 at 18 s
    wav = np.where(t < 10, c_major, f_sharp).astype(np.float32)
    scores = continuity(wav, rate, window_seconds=10.0, overlap_seconds=2.0)
    assert scores["join"]["points"] == 2 and scores["inside"]["points"] >= 2
    assert scores["join"]["chroma_cosine"] < scores["inside"]["chroma_cosine"] - 0.1


def test_packet_times_give_the_length_when_headers_do_not(tmp_path):
    from media.video import scan_duration

    assert scan_duration(write_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(32, 32))) == pytest.approx(2.0, abs=0.11)


def test_the_continuity_tool_runs_as_a_script_and_refuses_bad_input(tmp_path):
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    root = Path(__file__).resolve().parent.parent
    wav = tmp_path / "music.wav"
    sf.write(wav, 0.1 * np.sin(2 * np.pi * 440 * np.arange(24 * 8000) / 8000), 8000)
    (tmp_path / "noise.wav").write_text("not audio")
    run = lambda *args: subprocess.run([sys.executable, str(root / "tools" / "long_video.py"), *args],  # noqa: E731
                                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    done = run("continuity", str(wav), "--window-seconds", "10", "--overlap-seconds", "2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["join"]["points"] == 2
    for bad in (tmp_path / "missing.wav", tmp_path / "noise.wav"):
        failed = run("continuity", str(bad))
        assert failed.returncode == 2 and failed.stderr.startswith("error:") and "Traceback" not in failed.stderr
