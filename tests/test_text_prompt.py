"""The optional text prompt (issue 15): joint memory and masks, independent dropout, three-branch guidance,
save/load with a text encoder, generation with and without a prompt, captions, and the schema change."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from model.config import ConfigError, load_config
from model.features import VideoFeatures
from model.guidance import (drop_streams, guided_logits, guided_text_logits, joint_memory, with_null_branch,
                            with_text_branches)
from model.sampling import sample_codes
from model.text import TextPromptError
from tests.conftest import ROOT

TINY_T5 = "{vocab_size: 384, d_model: 16, d_kv: 8, d_ff: 32, num_layers: 1, num_heads: 2}"  # ByT5 ids < 384
TEXT = ["text.enabled=true", f"text.random_init={TINY_T5}"]


def _features(seconds: float = 1.0, seed: int = 1) -> VideoFeatures:
    g = torch.Generator().manual_seed(seed)
    tf = torch.arange(1, int(seconds * 10)) / 10
    return VideoFeatures(torch.randn(int(seconds * 2), 32, generator=g), torch.arange(0, seconds, 0.5),
                         torch.randn(len(tf), 30, generator=g), tf, seconds)


@pytest.fixture(scope="module")
def text_model():
    from model.v2m import VideoToMusic

    return VideoToMusic.from_config(load_config("tiny", TEXT)).eval()


@pytest.fixture(scope="module")
def video_model():
    from model.v2m import VideoToMusic

    return VideoToMusic.from_config(load_config("tiny")).eval()


def test_config_defaults_to_no_text_and_refuses_bad_fields():
    config = load_config("tiny")
    assert config.text.enabled is False and config.guidance.text_scale == 3.0
    with pytest.raises(ConfigError, match="text.random_init"):
        load_config("tiny", ["text.random_init={d_modle: 16}"])
    with pytest.raises(ConfigError, match="text.dropout"):
        load_config("tiny", ["text.dropout=1.5"])


def test_text_states_and_joint_masks(text_model):
    states, mask = text_model.text_condition(["calm piano, slow", "fast", ""])
    assert states.shape[:2] == mask.shape and states.shape[0] == 3 and states.shape[2] == 32
    assert mask[0].all() and mask[1].sum() == len("fast") + 1  # bytes + </s>; the rest is padding
    assert mask[2].sum() == 0  # an empty prompt is the null text
    assert (states[1, mask[1] == 0] == 0).all() and (states[2] == 0).all()  # padding carries nothing
    video, video_mask = text_model.condition(text_model.collate([_features()] * 3))
    memory, memory_mask = joint_memory(video, video_mask, states, mask)
    assert memory.shape == (3, video.shape[1] + states.shape[1], 32)
    length = video.shape[1]
    assert torch.equal(memory_mask[:, :length], video_mask) and torch.equal(memory_mask[:, length:], mask)


@pytest.mark.parametrize("p_video, p_text", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_each_dropout_combination_zeroes_its_stream(p_video, p_text):
    video = (torch.ones(4, 3, 2), torch.ones(4, 3, dtype=torch.long), torch.ones(4, 5, 2))  # states, mask, aligned
    text = (torch.full((4, 2, 2), 2.0), torch.ones(4, 2, dtype=torch.long))
    (vs, vm, va), (ts, tm) = drop_streams(video, text, p_video, p_text)
    assert all((t == 0).all() if p_video else torch.equal(t, o) for t, o in zip((vs, vm, va), video))
    assert all((t == 0).all() if p_text else torch.equal(t, o) for t, o in zip((ts, tm), text))


def test_dropout_is_independent_per_sample():
    video = (torch.ones(4000, 1, 1), torch.ones(4000, 1))
    text = (torch.ones(4000, 1, 1), torch.ones(4000, 1))
    (_, vm), (_, tm) = drop_streams(video, text, 0.3, 0.5, generator=torch.Generator().manual_seed(0))
    kept_video, kept_text = vm[:, 0] > 0, tm[:, 0] > 0
    shares = [(kept_video == v) & (kept_text == t) for v in (True, False) for t in (True, False)]
    expected = [0.7 * 0.5, 0.7 * 0.5, 0.3 * 0.5, 0.3 * 0.5]  # neither dropped, text only, video only, both
    for share, want in zip(shares, expected):
        assert share.float().mean().item() == pytest.approx(want, abs=0.03)


def test_text_branches_and_scales():
    states, mask = torch.randn(2, 3, 4), torch.ones(2, 3)
    text, text_mask = torch.randn(2, 2, 4), torch.tensor([[1, 1], [1, 0]])
    aligned = torch.randn(2, 5, 4)
    memory, memory_mask, memory_aligned = with_text_branches(states, mask, text, text_mask, aligned)
    assert memory.shape == (6, 5, 4) and memory_mask.shape == (6, 5) and memory_aligned.shape == (6, 5, 4)
    assert torch.equal(memory[:2], torch.cat([states, text], 1)) and torch.equal(memory_mask[:2, 3:], text_mask.float())
    assert torch.equal(memory[2:4, :3], states) and (memory[2:4, 3:] == 0).all() and (memory_mask[2:4, 3:] == 0).all()
    assert (memory[4:] == 0).all() and (memory_mask[4:] == 0).all() and (memory_aligned[4:] == 0).all()
    full, video, null = torch.randn(3, 2, 7).unbind()
    mixed = guided_text_logits(torch.cat([full, video, null]), 3.0, 2.0)
    assert torch.allclose(mixed, null + 3.0 * (video - null) + 2.0 * (full - video))
    assert torch.allclose(guided_text_logits(torch.cat([full, video, null]), 3.0, 0.0),
                          guided_logits(torch.cat([video, null]), 3.0))


def test_batched_branches_equal_separate_forwards(text_model):
    """One [3B] forward gives each branch's logits; with text_scale 0 the mix is the video-only guidance."""
    video, video_mask = text_model.condition(text_model.collate([_features(), _features(seed=2)]))
    text, text_mask = text_model.text_condition(["calm piano, slow", "upbeat drums"])
    tokens = torch.randint(0, 64, (2 * 4, 6))

    def logits(hidden, mask):
        rows = hidden.shape[0] // 2
        out = text_model.decoder(input_ids=tokens.repeat(rows, 1), encoder_hidden_states=hidden,
                                 encoder_attention_mask=mask)
        return out.logits.reshape(hidden.shape[0], 4, 6, -1)

    with torch.no_grad():
        batched = logits(*with_text_branches(video, video_mask, text, text_mask)[:2])
        full = logits(*joint_memory(video, video_mask, text, text_mask))
        plain = logits(*with_null_branch(video, video_mask))  # the video-only path: [video; null], no text tokens
    assert torch.allclose(batched[:2], full, atol=1e-5)
    assert torch.allclose(batched[2:4], plain[:2], atol=1e-5) and torch.allclose(batched[4:], plain[2:], atol=1e-5)
    assert torch.allclose(guided_text_logits(batched, 3.0, 0.0), guided_logits(plain, 3.0), atol=1e-5)


def test_no_prompt_is_bit_identical_to_the_video_only_model(text_model, video_model):
    features = [_features()]
    with_text = text_model.generate_codes(features, 0.5, seed=4)
    assert torch.equal(with_text, video_model.generate_codes(features, 0.5, seed=4))  # same fusion, LoRA, sampling
    hidden, mask = text_model.condition(text_model.collate(features))
    direct = sample_codes(text_model.decoder_stepper(), hidden, mask, 25, 4, text_model.start_token, 3.0, 50, 1.0,
                          torch.Generator().manual_seed(4))
    assert torch.equal(with_text, direct)  # the two-branch guided path, called directly


def test_prompt_changes_the_music_and_a_model_without_text_refuses_it(text_model, video_model):
    features = [_features(), _features(seed=2)]
    plain = text_model.generate_codes(features, 0.5, seed=4)
    prompted = text_model.generate_codes(features, 0.5, seed=4, text="calm piano, slow")
    assert prompted.shape == plain.shape == (2, 4, 25) and not torch.equal(prompted, plain)
    assert torch.equal(prompted, text_model.generate_codes(features, 0.5, seed=4, text=["calm piano, slow"] * 2))
    wav = text_model.generate(features[:1], 0.5, seed=4, prompt="calm piano, slow")
    assert wav.shape == (1, 16000) and torch.isfinite(wav).all()
    with pytest.raises(TextPromptError, match="no text encoder"):
        video_model.generate(features[:1], 0.5, prompt="calm piano")
    with pytest.raises(TextPromptError, match="2 clips"):
        text_model.generate_codes(features, 0.5, text=["one"])


def test_training_with_captions_reaches_the_text_projection(text_model):
    from training.loss import codebook_cross_entropy

    text_model.train()
    try:
        batch, codes = text_model.collate([_features(), _features(seed=2)]), torch.randint(0, 64, (2, 4, 50))
        loss = codebook_cross_entropy(*text_model(batch, codes, captions=["calm piano", None], text_dropout=0.0))
        loss.backward()
        grad = text_model.text_conditioner.projection.weight.grad
        assert torch.isfinite(loss) and grad is not None and grad.abs().sum() > 0
        assert not any(p.requires_grad for p in text_model.text_conditioner.encoder.parameters())
    finally:
        text_model.zero_grad(set_to_none=True)
        text_model.eval()


def test_save_and_load_with_a_text_encoder(text_model, tmp_path):
    from model.v2m import VideoToMusic

    with torch.no_grad():
        text_model.text_conditioner.projection.weight.add_(0.5)  # a "trained" projection must come back
    text_model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "text_encoder" / "config.json").is_file()
    loaded = VideoToMusic.from_pretrained(tmp_path / "m")
    assert loaded.text_conditioner is not None and loaded.text_conditioner.tokenizer_name == "byte"
    state, again = text_model.trainable_state_dict(), loaded.trainable_state_dict()
    assert any(k.startswith("text.") for k in state) and all(torch.equal(state[k], again[k]) for k in state)
    for (name, a), (_, b) in zip(text_model.text_conditioner.encoder.state_dict().items(),
                                 loaded.text_conditioner.encoder.state_dict().items()):
        assert torch.equal(a, b), name
    features = [_features()]
    assert torch.equal(text_model.generate_codes(features, 0.3, seed=1, text="slow strings"),
                       loaded.generate_codes(features, 0.3, seed=1, text="slow strings"))


def test_shipped_demo_model_takes_a_prompt_from_the_command_line(tmp_path):
    """models/demo bundles its small trained text encoder (issue 15 item 5): infer.py --prompt works offline."""
    from model.v2m import DEMO_MODEL_DIR, VideoToMusic
    from tests.conftest import write_video

    if not (DEMO_MODEL_DIR / "config.json").is_file():
        pytest.skip("models/demo is not in this checkout")
    model = VideoToMusic.from_pretrained(DEMO_MODEL_DIR)
    assert model.text_conditioner is not None and model.text_conditioner.tokenizer_name == "byte"
    assert any(k.startswith("text.") for k in model.trainable_state_dict())
    video = write_video(tmp_path / "in.mp4", seconds=1.0, size=(64, 48))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--video", str(video), "--out",
                             str(tmp_path / "o.mp4"), "--model", str(DEMO_MODEL_DIR), "--prompt",
                             "dark strings in A minor, slow", "--wav-out", str(tmp_path / "o.wav")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "o.mp4").stat().st_size > 0 and (tmp_path / "o.wav").stat().st_size > 0


# ------------------------------------------------------------------------------------------------ captions, schema
def _truth_rows(n: int = 400) -> list[dict]:
    from data.synthetic.build import clip_row
    from data.synthetic.spec import sample_clip_spec

    return [clip_row(sample_clip_spec(3, i, 2.0)) for i in range(n)]


def test_captions_follow_the_ground_truth_and_are_deterministic():
    from data.captions import caption_from_truth, instrument_family, tempo_word

    assert [tempo_word(b) for b in (70, 84.9, 85, 104, 105, 124, 125, 150)] == [
        "slow", "slow", "moderate", "moderate", "upbeat", "upbeat", "fast", "fast"]
    assert [instrument_family(p) for p in (0, 46, 89)] == ["piano", "strings", "synth pad"]
    row = {"id": "a", "program": 0, "key": "A", "mode": "minor", "tempo": 80.0, "tags": []}
    assert caption_from_truth(row, 1) == caption_from_truth(dict(row), 1)
    assert len({caption_from_truth({**row, "id": str(i)}, 1) for i in range(50)}) > 10  # varied phrasings
    assert "A minor" in caption_from_truth(row, 1) or "A | minor" in caption_from_truth(row, 1, held_out=True)
    assert caption_from_truth({"id": "b", "program": None, "key": None, "mode": None, "tempo": None}) is None
    for r in _truth_rows(40):
        assert r["caption"] and r["key"] in r["caption"] and r["mode"] in r["caption"]


def test_held_out_wording_never_appears_in_train_captions():
    from data.captions import HELD_OUT, TRAIN, caption_from_truth

    rows = _truth_rows()
    rows += [{**r, "id": f"{r['id']}x", "program": p, "tempo": t} for r, p, t in
             zip(rows, range(0, 128, 1), [70, 90, 110, 140] * 32)]  # every family and tempo word
    train = {caption_from_truth(r, s) for r in rows for s in (0, 1)}
    held = {caption_from_truth(r, s, held_out=True) for r in rows for s in (0, 1)}
    assert not train & held
    held_words = {w for part in (HELD_OUT.family, HELD_OUT.tempo, HELD_OUT.mood) for ws in part.values() for w in ws}
    assert not held_words & {w for part in (TRAIN.family, TRAIN.tempo, TRAIN.mood) for ws in part.values() for w in ws}
    for caption in train:
        assert not [w for w in held_words if w in caption], caption
        assert not any(t.split("{")[0].strip() and t.split("{")[0] in caption for t in HELD_OUT.templates)
    assert len({c.split(" ")[0] for c in held}) >= 3  # every held-out template is used


def test_curation_caption_comes_from_the_manifest_or_title_and_tags(tmp_path):
    import json

    from data.captions import caption_from_metadata
    from data.sources import find_sources

    assert caption_from_metadata("calm piano", "Title", ["a"]) == "calm piano"
    assert caption_from_metadata("  ", "Big Day", ["wedding", "outdoor"]) == "Big Day, wedding, outdoor"
    assert caption_from_metadata(None, "", []) is None
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.mp4", "title": "T", "caption": "slow strings"}) + "\n")
    assert find_sources(tmp_path / "m.jsonl")[0].caption == "slow strings"


def test_schema_version_1_datasets_still_load(tmp_path):
    import json

    from datasets import Dataset, DatasetDict, Features

    from data.schema import SCHEMA_VERSION, check_schema, clip_features, row_caption
    from training.batches import load_split

    assert SCHEMA_VERSION == 2 and "caption" in clip_features()
    old = {k: v for k, v in clip_features().items() if k != "caption"}

    row = {"id": "v", "video_id": "v", "video_path": "clips/v.mp4", "music_path": "music/v.wav", "start": 0.0,
           "duration": 1.0, "title": "", "tags": [], "event_times": None, "beat_times": None, "tempo": None,
           "key": None, "mode": None, "program": None}
    splits = {name: Dataset.from_dict({k: [row[k]] * (name == "train") for k in old}, features=Features(old))
              for name in ("train", "test", "validation")}
    DatasetDict(splits).save_to_disk(str(tmp_path), num_shards={name: 1 for name in splits})
    (tmp_path / "schema.json").write_text(json.dumps({"schema_version": 1, "source": "curate"}))
    assert check_schema(tmp_path)["schema_version"] == 1
    loaded = load_split(tmp_path, "train")
    assert "caption" not in loaded.column_names and row_caption(loaded[0]) is None
    (tmp_path / "schema.json").write_text(json.dumps({"schema_version": 3, "source": "curate"}))
    with pytest.raises(ValueError, match="schema version 3"):
        check_schema(tmp_path)


def test_musicgen_checkpoint_text_encoder_and_projection_are_used(tmp_path):
    """The real-preset path, offline: a (tiny) MusicgenForConditionalGeneration folder gives its T5 encoder and
    ``enc_to_dec_proj``; saving bundles a local encoder into the model folder."""
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration,
                              T5Config)

    from model.v2m import VideoToMusic

    tiny = load_config("tiny")
    decoder = MusicgenDecoderConfig(**tiny.decoder.random_init["decoder"])
    musicgen = MusicgenForConditionalGeneration(MusicgenConfig(
        text_encoder=T5Config(vocab_size=384, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
        audio_encoder=EncodecConfig(**tiny.decoder.random_init["codec"]), decoder=decoder))
    musicgen.save_pretrained(tmp_path / "musicgen")
    model = VideoToMusic.from_config(load_config("tiny", ["text.enabled=true", f"text.encoder={tmp_path / 'musicgen'}",
                                                          "text.tokenizer=byte"]))
    conditioner = model.text_conditioner
    assert torch.equal(conditioner.projection.weight, musicgen.enc_to_dec_proj.weight)
    assert torch.equal(conditioner.encoder.shared.weight, musicgen.text_encoder.shared.weight)
    model.save_pretrained(tmp_path / "saved")
    loaded = VideoToMusic.from_pretrained(tmp_path / "saved")
    assert loaded.config.text.encoder.endswith("text_encoder")
    assert torch.equal(loaded.text_conditioner.encoder.shared.weight, musicgen.text_encoder.shared.weight)


def test_caption_states_are_cached_and_match_a_fresh_encoding(text_model):
    conditioner = text_model.text_conditioner
    conditioner._states.clear()
    calls = []
    hook = conditioner.encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        first, mask = conditioner(["calm piano, slow", None, "fast strings", "calm piano, slow"])
        again, mask_again = conditioner(["fast strings", "calm piano, slow", ""])
    finally:
        hook.remove()
    assert len(calls) == 1 and len(conditioner._states) == 2  # two distinct captions, encoded once, together
    assert torch.equal(mask_again[0, : mask[2].shape[0]][mask[2] == 1], mask[2][mask[2] == 1])
    assert torch.allclose(again[0, : int(mask[2].sum())], first[2, : int(mask[2].sum())], atol=1e-6)
    assert (again[2] == 0).all() and mask_again[2].sum() == 0
    ids, solo_mask = conditioner.tokenize(["fast strings"])
    with torch.no_grad():  # the uncached path: the encoder alone on this caption
        solo = conditioner.projection(conditioner.encoder(input_ids=ids, attention_mask=solo_mask).last_hidden_state)
    assert torch.allclose(again[0, : solo.shape[1]], solo[0], atol=1e-5)
    conditioner.cache_size = 1
    try:
        conditioner(["a", "b"])
        assert list(conditioner._states) == ["b"]  # least recently used out first
    finally:
        conditioner.cache_size = 4096
        conditioner._states.clear()
