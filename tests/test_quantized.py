"""The 4-bit (NF4, QLoRA) and 8-bit load paths on CPU, through the same from_pretrained a Hub checkpoint takes."""
from __future__ import annotations

import pytest
import torch

from model.config import load_config
from model.decoder import random_musicgen
from model.features import VideoFeatures
from model.v2m import VideoToMusic
from training.loss import codebook_cross_entropy


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    """A tiny MusicgenForConditionalGeneration saved like a Hub repo (config.json + safetensors)."""
    folder = tmp_path_factory.mktemp("musicgen-tiny")
    sizes = load_config("tiny").decoder.random_init
    sizes = {"decoder": {**sizes["decoder"], "hidden_size": 64, "ffn_dim": 128}, "codec": sizes["codec"]}
    random_musicgen(sizes).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_base_trains_and_generates(saved_base, bits, tmp_path):
    import bitsandbytes as bnb

    config = load_config("tiny", [f"decoder.base={saved_base}", "decoder.random_init=null",
                                  f"decoder.quantization={bits}"])
    model = VideoToMusic.from_config(config)
    linear = bnb.nn.Linear4bit if bits == "4bit" else bnb.nn.Linear8bitLt
    quantized = [n for n, m in model.decoder.named_modules() if isinstance(m, linear)]
    assert any("encoder_attn.q_proj" in n for n in quantized) and any("fc1" in n for n in quantized)
    assert not any("lm_heads" in n for n in quantized)  # kept in full precision
    f = VideoFeatures(torch.randn(4, 32), torch.arange(4) * 0.5, torch.randn(19, 30), torch.arange(1, 20) / 10, 2.0)
    model.train()
    model.config.guidance.condition_dropout = 0.0
    loss = codebook_cross_entropy(*model(model.collate([f]), torch.randint(0, 64, (1, 4, 60))))
    loss.backward()
    assert torch.isfinite(loss)
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    model.eval()
    wav = model.generate([f], 0.4, seed=0)
    assert wav.shape == (1, round(0.4 * model.sample_rate)) and torch.isfinite(wav).all()
    model.save_pretrained(tmp_path / "adapter")  # only the trained part is stored, never the quantized base
    assert (tmp_path / "adapter" / "model.safetensors").stat().st_size < 1_000_000
