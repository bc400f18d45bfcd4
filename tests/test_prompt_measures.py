"""Issue 15, items 5-6: the small text encoder trained here, the read-back of music attributes (key and mode,
tempo, timbre) and the prompt-effect tool's prompts; a warm start that adds a text encoder to a video-only model."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from model.config import load_config

RATE = 16_000


def _chord_wav(pitches_per_chord: list[list[int]], seconds_each: float = 1.0) -> np.ndarray:
    """Additive-synth chords (three harmonics each), one after the other: a known key for the estimator."""
    out = []
    for pitches in pitches_per_chord:
        t = np.arange(int(seconds_each * RATE)) / RATE
        tone = sum(np.sin(2 * np.pi * k * 440 * 2 ** ((p - 69) / 12) * t) / k for p in pitches for k in (1, 2, 3))
        out.append(0.1 * tone * np.exp(-t / 0.8))
    return np.concatenate(out).astype(np.float32)


def test_key_estimate_reads_a_minor_and_a_major_cadence():
    from data.music_key import estimate_key

    a_minor = _chord_wav([[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]] * 2)  # i iv V i in A minor
    c_major = _chord_wav([[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]] * 2)  # I IV V I in C major
    assert estimate_key(a_minor, RATE)[:2] == ("A", "minor")
    assert estimate_key(c_major, RATE)[:2] == ("C", "major")


def test_tempo_and_timbre_read_back():
    from scoring.music_attributes import estimate_tempo, timbre_features

    clicks, rng, burst = np.zeros(10 * RATE, np.float32), np.random.default_rng(0), int(0.1 * RATE)
    for beat in np.arange(0.25, 10.0, 0.5):  # 120 BPM: decaying noise bursts, like a hi-hat
        start = int(beat * RATE)
        clicks[start:start + burst] += rng.uniform(-1, 1, burst) * np.exp(-np.arange(burst) / (0.02 * RATE))
    assert abs(estimate_tempo(clicks, RATE) - 120.0) < 6.0  # librosa's tempo grid: 117.2 here
    assert estimate_tempo(np.zeros(5 * RATE, np.float32), RATE) == 0.0  # silence: no beat
    features = timbre_features(_chord_wav([[60, 64, 67]]), RATE)
    assert features.shape == (54,) and np.isfinite(features).all()
    assert not np.allclose(features, timbre_features(clicks[:RATE], RATE))  # a click is not a chord


def test_contradicting_prompts_ask_for_other_facts_within_the_set():
    from data.captions import HELD_OUT, caption_from_truth, instrument_family, tempo_word
    from tools.prompt_effect import CONDITIONS, contradicting_truth, family_programs, prompts_for

    rows = [{"id": f"c{i}", "program": p, "key": "A", "mode": m, "tempo": t, "tags": []}
            for i, (p, m, t) in enumerate([(0, "major", 80.0), (48, "minor", 140.0), (24, "major", 118.0),
                                           (89, "minor", 70.0)])]
    families = family_programs(rows)
    assert families == [0, 24, 48, 89]  # one program per family, the lowest
    for row in rows:
        other = contradicting_truth(row, families)
        assert instrument_family(other["program"]) != instrument_family(row["program"])
        assert other["program"] in families and other["mode"] != row["mode"]
        ratio = other["tempo"] / row["tempo"]
        assert ratio == pytest.approx(1.3) or ratio == pytest.approx(1 / 1.3)
        assert tempo_word(other["tempo"]) != tempo_word(row["tempo"])
        prompts, asked = prompts_for(row, families)
        assert list(prompts) == list(CONDITIONS) and prompts["none"] is None and asked == other
        assert prompts["match"] == caption_from_truth(row, seed=7)
        assert prompts["contradict_held"] == caption_from_truth(other, seed=7, held_out=True)
        assert any(t.split("{")[0] in prompts["match_held"] for t in HELD_OUT.templates)


@pytest.fixture(scope="module")
def small_encoder(tmp_path_factory):
    from training.text_encoder import TextEncoderSize, train_text_encoder

    out = tmp_path_factory.mktemp("text") / "encoder"
    torch.manual_seed(0)
    metrics = train_text_encoder(out, steps=120, batch_size=32, lr=3e-3, eval_size=200,
                                 size=TextEncoderSize(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2))
    return out, metrics


def test_small_text_encoder_learns_the_caption_facts_and_saves_as_t5(small_encoder):
    from transformers import T5EncoderModel

    from training.text_encoder import FACTS, METRICS_NAME

    out, metrics = small_encoder
    assert (out / "model.safetensors").is_file() and (out / METRICS_NAME).is_file()
    assert not list(out.glob("*.bin"))
    encoder = T5EncoderModel.from_pretrained(out)
    assert encoder.config.d_model == 32 and sum(p.numel() for p in encoder.parameters()) == metrics["parameters"]
    train = metrics["train_phrasings"]
    assert set(train) == set(FACTS) and set(metrics["held_out_phrasings"]) == set(FACTS)
    # the mode word is in every caption: 120 steps must read it far above chance (0.5)
    assert train["mode"] > 0.9, train


def test_random_truth_covers_every_fact():
    from training.text_encoder import FACTS, random_truth

    rng = random.Random(0)
    seen = {fact: set() for fact in FACTS}
    for i in range(3000):
        _, classes = random_truth(rng, i)
        for fact, value in classes.items():
            seen[fact].add(value)
    assert all(len(seen[fact]) == len(classes) for fact, classes in FACTS.items())


def test_warm_start_from_a_video_only_model_adds_a_fresh_text_projection(small_encoder):
    from model.checkpoint import CheckpointError
    from model.v2m import VideoToMusic

    encoder, _ = small_encoder
    video = VideoToMusic.from_config(load_config("tiny"))
    text = VideoToMusic.from_config(load_config("tiny", ["text.enabled=true", f"text.encoder={encoder}",
                                                         "text.tokenizer=byte"]))
    fresh = {k: v.clone() for k, v in text.trainable_state_dict().items() if k.startswith("text.")}
    assert fresh
    with pytest.raises(CheckpointError, match="missing"):  # a plain load still refuses the gap
        text.load_trainable_state(video.trainable_state_dict())
    text.load_trainable_state(video.trainable_state_dict(), keep_fresh_text=True)
    after = text.trainable_state_dict()
    assert all(torch.equal(after[k], v) for k, v in video.trainable_state_dict().items())
    assert all(torch.equal(after[k], v) for k, v in fresh.items())
    wrong = {**video.trainable_state_dict(), "fusion.extra": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected"):  # only the text part may be absent
        text.load_trainable_state(wrong, keep_fresh_text=True)


def test_prompt_effect_generates_every_condition_and_scores_them(synthetic_set, tmp_path):
    from data.captions import instrument_family
    from data.schema import read_split
    from model.v2m import VideoToMusic
    from tools import prompt_effect

    config = load_config("tiny", ["text.enabled=true",
                                  "text.random_init={vocab_size: 384, d_model: 16, d_kv: 8, d_ff: 32, num_layers: 1, "
                                  "num_heads: 2}"])
    VideoToMusic.from_config(config).save_pretrained(tmp_path / "model")
    run = tmp_path / "run"
    prompt_effect.main(["generate", "--model", str(tmp_path / "model"), "--dataset", str(synthetic_set),
                        "--out", str(run), "--limit", "1"])
    clip = read_split(synthetic_set, "test")[0]["id"]
    waves = {c: (run / c / f"{clip}.wav").stat().st_mtime_ns for c in prompt_effect.CONDITIONS}
    prompt_effect.main(["generate", "--model", str(tmp_path / "model"), "--dataset", str(synthetic_set),
                        "--out", str(run), "--limit", "1"])  # resumed: nothing is made twice
    assert waves == {c: (run / c / f"{clip}.wav").stat().st_mtime_ns for c in prompt_effect.CONDITIONS}
    assert len({instrument_family(r["program"]) for r in read_split(synthetic_set, "train")}) >= 2  # a classifier
    prompt_effect.main(["score", "--run", str(run), "--json", str(tmp_path / "score.json")])
    import json

    result = json.loads((tmp_path / "score.json").read_text())
    assert result["clips"] == 1 and set(result["conditions"]) == {*prompt_effect.CONDITIONS, "reference"}
    assert "minus_none" in result["conditions"]["contradict"]["family_asked"]
    assert result["conditions"]["reference"]["tempo_toward_asked"]["mean"]["n"] == 1


def test_a_model_without_text_is_refused_by_prompt_effect(synthetic_set, tmp_path, capsys):
    from model.v2m import VideoToMusic
    from tools import prompt_effect

    VideoToMusic.from_config(load_config("tiny")).save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit) as exit_info:
        prompt_effect.main(["generate", "--model", str(tmp_path / "model"), "--dataset", str(synthetic_set),
                            "--out", str(tmp_path / "run"), "--limit", "1"])
    assert exit_info.value.code != 0 and "has no text encoder" in capsys.readouterr().err
