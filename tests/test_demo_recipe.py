"""The demo recipe's parts at toy size: the spectral codec, decoder pretraining, and a self-contained model folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from model.config import load_config
from model.spectral_codec import SpectralCodec, fit_codebooks
from tests.conftest import ROOT

SR = 32000


def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def codec_file(tmp_path_factory):
    """Codebooks (2 x 16) fitted on a few tones of a C major scale."""
    probe = SpectralCodec(torch.zeros(1, 1, 1025))
    tones = [_tone(261.63 * 2 ** (s / 12)) for s in (0, 2, 4, 5, 7, 9, 11)]
    frames = np.concatenate([probe.log_magnitude(torch.from_numpy(t)[None, None])[0].numpy() for t in tones])
    path = tmp_path_factory.mktemp("codec") / "codec.safetensors"
    SpectralCodec(fit_codebooks(frames, 2, 16, batch_size=256)).save(path)
    return path


def test_spectral_codec_keeps_pitch_and_has_the_token_interface(codec_file):
    import librosa

    codec = SpectralCodec.load(codec_file)
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (SR, 50, 2, 16)
    a4 = _tone(440.0)  # A, a pitch the codebooks were fitted near (G and B around it)
    codes = codec.encode(torch.from_numpy(a4)[None, None])
    assert codes.shape == (1, 2, 50) and codes.dtype == torch.long
    wav = codec.decode(codes)
    assert wav.shape == (1, 1, 50 * 640) and torch.equal(wav, codec.decode(codes))  # deterministic
    chroma = librosa.feature.chroma_stft(y=wav[0, 0].numpy(), sr=SR).mean(axis=1)
    assert np.argmax(chroma) in (7, 9, 11)  # G, A or B: the nearest fitted tones, not noise


def _spectral_config(codec_file, *extra):
    return load_config("tiny", [
        f"decoder.codec={json.dumps({'type': 'spectral', 'weights': str(codec_file), 'griffin_lim_iters': 4})}",
        "decoder.random_init={decoder: {vocab_size: 16, num_codebooks: 2, hidden_size: 32, num_hidden_layers: 1, "
        "num_attention_heads: 2, ffn_dim: 64, max_position_embeddings: 1600}}", *extra])


def test_model_folder_carries_its_decoder_codec_and_image_tower(codec_file, tmp_path):
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_config(_spectral_config(codec_file)).eval()
    with torch.no_grad():
        model.fusion.project.weight.mul_(3.0)
        next(model.decoder.get_base_model().parameters()).add_(0.5)  # a base no seed could rebuild
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"decoder", "codec.safetensors", "semantic.safetensors"}
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert saved["decoder"]["base"] == "decoder" and saved["decoder"]["codec"]["weights"] == "codec.safetensors"
    shutil.move(str(tmp_path / "m"), str(tmp_path / "moved"))  # relative paths: the folder can travel
    loaded = VideoToMusic.from_pretrained(str(tmp_path / "moved")).eval()
    f = model.extract_features  # noqa: F841
    from model.features import VideoFeatures

    feats = VideoFeatures(torch.randn(2, 32), torch.tensor([0.0, 0.5]), torch.randn(9, 30), torch.arange(1, 10) / 10, 1.0)
    assert torch.equal(model.generate_codes([feats], 0.5, seed=2), loaded.generate_codes([feats], 0.5, seed=2))


def test_pretrain_decoder_runs_resumes_and_writes_a_base(codec_file, synthetic_set, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    config = tmp_path / "spectral.yaml"
    import yaml

    config.write_text(yaml.safe_dump(_spectral_config(codec_file, "train.max_steps=4", "train.save_every=2",
                                                      "train.batch_size=2", "train.clip_seconds=1.0").to_dict()))
    command = [sys.executable, "-m", "training.pretrain_decoder", "--config", str(config), "--dataset",
               str(synthetic_set), "--output-dir", str(tmp_path / "base")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(np.isfinite(losses))
    from transformers import MusicgenForCausalLM

    assert MusicgenForCausalLM.from_pretrained(tmp_path / "base" / "decoder").config.vocab_size == 16
    shutil.rmtree(tmp_path / "base" / "checkpoints" / "step_000004")
    (tmp_path / "base" / "metrics.jsonl").write_text("".join(
        line + "\n" for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()[:2]))
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0 and "at step 2" in resumed.stdout  # "resumed from ...step_000002 at step 2"
    again = [json.loads(line)["loss"] for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    assert again == losses


def test_demo_preset_describes_the_shipped_model():
    """configs/demo.yaml is the recipe the README gives for models/demo: every network and sampling section must
    match the shipped config (only file locations, the stage-1 init and the run paths may differ)."""
    import dataclasses

    from model.config import config_from_dict

    preset = load_config("demo")
    shipped = config_from_dict(json.loads((ROOT / "models" / "demo" / "config.json").read_text())["config"])
    for section in ("motion", "fusion", "lora", "guidance", "generation"):
        assert getattr(preset, section) == getattr(shipped, section), section
    assert dataclasses.replace(preset.text, encoder="") == dataclasses.replace(shipped.text, encoder="")
    assert dataclasses.replace(preset.semantic, weights=None) == dataclasses.replace(shipped.semantic, weights=None)
    assert preset.train.clip_seconds == shipped.train.clip_seconds and preset.train.beat_alpha == shipped.train.beat_alpha
