"""The device paths on a real GPU, in bf16, 4-bit and 8-bit (skipped without CUDA; ``python -m bench.gpu_check``
runs this file on a GPU machine). The CPU-only proof of the same paths is tests/test_devices.py."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from tests.test_devices import SilentCodec, batch_on_cpu, features  # noqa: E402


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    from model.config import load_config
    from model.decoder import random_musicgen

    folder = tmp_path_factory.mktemp("musicgen-tiny")
    sizes = load_config("tiny").decoder.random_init
    random_musicgen({"decoder": {**sizes["decoder"], "hidden_size": 64, "ffn_dim": 128}, "codec": sizes["codec"]}) \
        .save_pretrained(folder)
    return folder


def gpu_model(saved_base, precision: str, bits: str = "none"):
    from common.device import placement_for
    from model.config import load_config
    from model.v2m import VideoToMusic

    overrides = [f"decoder.base={saved_base}", "decoder.random_init=null", f"decoder.quantization={bits}",
                 "fusion.time_aligned=true"]
    return VideoToMusic.from_config(load_config("tiny", overrides), placement=placement_for("cuda", precision))


@pytest.mark.parametrize("precision, bits", [("bf16", "none"), ("bf16", "4bit"), ("fp16", "8bit"), ("fp32", "none")])
def test_train_validate_generate_and_join_on_the_gpu(saved_base, precision, bits, video_path):
    from model.long_form import generate_long
    from training.video_music import clip_loss, validation_sums

    model = gpu_model(saved_base, precision, bits).train()
    assert {device.type for device, _ in model.parts().values()} == {"cuda"}
    batch = batch_on_cpu(model).to(model.device, non_blocking=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision != "fp32"):
        loss = clip_loss(model, batch, condition_dropout=0.5)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(validation_sums(model, batch)).all()
    codes = model.generate_codes([features()], 0.5, seed=0, prompt=torch.randint(0, 64, (1, 4, 10)))
    assert codes.is_cuda and codes.shape == (1, 4, 25)
    wav = generate_long(model, video_path, 2.6, window_seconds=1.0, overlap_seconds=0.4)
    assert wav.device.type == "cpu" and torch.isfinite(wav).all()
    model.codec = SilentCodec(model.codec)
    assert model.extract_features(video_path, max_seconds=1.0).semantic.shape[0] > 0


def test_exact_rng_state_round_trip_on_the_gpu():
    from training.checkpoint import restore_rng, rng_state

    device = torch.device("cuda", torch.cuda.current_device())
    state = rng_state(device)
    first = torch.rand(4, device=device)
    restore_rng(state, device)
    assert torch.equal(first, torch.rand(4, device=device))
