"""Device and precision bugs caught on a CPU-only machine.

Every path that runs on a user's GPU runs here with every module and input on the ``meta`` device: a CPU tensor
that meets a device tensor raises ("Tensor on device cpu is not on the expected device meta") exactly where it
would meet a CUDA tensor on a GPU. Meta tensors hold no values, so each path runs up to its honest boundary —
reading a value back (``.item()``, ``.cpu()``, writing a file) — and the test accepts only that boundary.

Two things are replaced because meta tensors have no values, nothing else: transformers' check whether any
cross-attention key is padded (an optimisation that reads the mask), and the seeded sampling generator (PyTorch
has none for ``meta``). Library code that cannot run on ``meta`` at all (EnCodec's padding, torchaudio's iSTFT)
sits behind the codec's ``decode``; the long-form join test gives the model a codec that returns silence of the
right length on the device of its codes.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from common.device import DeviceError, Placement, placement_for, resolve_device
from model.config import load_config
from model.features import VideoFeatures
from tests.conftest import decaying_hits

META = torch.device("meta")
MISMATCH = ("not on the expected device", "Expected all tensors to be on the same device", "same dtype",
            "expected both", "expected scalar type", "expected mat1 and mat2")
VALUE_BOUNDARY = ("cannot be called on meta tensors", "Cannot copy out of meta tensor", "no data",
                  "data-independent implementation does not exist")  # nonzero: its size depends on values


def meta_placement(dtype: torch.dtype = torch.float32) -> Placement:
    return Placement(META, "fp32" if dtype is torch.float32 else "bf16", dtype, dtype, "none", "float32", "no")


@pytest.fixture
def on_meta(monkeypatch):
    import transformers.masking_utils as masking

    import model.v2m as v2m

    monkeypatch.setattr(masking, "_ignore_bidirectional_mask_sdpa", lambda *args, **kwargs: False)
    asked = []  # the devices generation asked generators for (PyTorch has none for meta, so none is made)
    monkeypatch.setattr(v2m, "seeded_generator", lambda device, seed: asked.append(device))
    return asked


@pytest.fixture(scope="module")
def spectral_config(tmp_path_factory):
    """The tiny preset with the demo's kind of codec (fitted in a second) and the time-aligned term on."""
    from model.spectral_codec import SpectralCodec, fit_codebooks

    probe = SpectralCodec(torch.zeros(1, 1, 1025))
    wav = torch.from_numpy(decaying_hits([0.2, 0.5, 0.9], 1.2, 32000))[None, None]
    frames = probe.log_magnitude(wav)[0].numpy()
    path = tmp_path_factory.mktemp("codec") / "codec.safetensors"
    SpectralCodec(fit_codebooks(frames, 4, 16, batch_size=256)).save(path)
    return load_config("tiny", [
        f"decoder.codec={json.dumps({'type': 'spectral', 'weights': str(path), 'griffin_lim_iters': 2})}",
        "decoder.random_init={decoder: {vocab_size: 16, num_codebooks: 4, hidden_size: 32, num_hidden_layers: 2, "
        "num_attention_heads: 2, ffn_dim: 64, max_position_embeddings: 1600}}", "fusion.time_aligned=true"])


def meta_model(config, dtype: torch.dtype = torch.float32):
    from model.v2m import VideoToMusic

    return VideoToMusic.from_config(config, placement=meta_placement(dtype))


def features(seconds: float = 2.0, semantic_dim: int = 32) -> VideoFeatures:
    """CPU features, as a feature cache or a DataLoader hands them over."""
    generator = torch.Generator().manual_seed(0)
    tc, tf = max(1, int(2 * seconds)), max(0, int(10 * seconds) - 1)
    return VideoFeatures(torch.randn(tc, semantic_dim, generator=generator), torch.arange(tc) * 0.5,
                         torch.randn(tf, 30, generator=generator), torch.arange(1, tf + 1) / 10, seconds)


def reaches(fn):
    """Run ``fn``; it may only stop where it reads a value back. Returns its result (None when it stopped)."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - classified right below
        text = f"{type(error).__name__}: {error}"
        assert not any(m in text for m in MISMATCH), f"device or dtype mismatch: {text[:300]}"
        assert any(b in text for b in VALUE_BOUNDARY), f"stopped before reading a value: {text[:300]}"
        return None


def batch_on_cpu(model, clips: int = 2, seconds: float = 1.0):
    """A training batch exactly as ``training.batches`` builds it (CPU), with beat weights and events."""
    from training.batches import Batch

    frames = round(seconds * model.frame_rate)
    items = [features(seconds) for _ in range(clips)]
    codes = torch.randint(0, model.start_token, (clips, model.num_codebooks, frames))
    near_event = torch.zeros(clips, frames, dtype=torch.bool)
    near_event[:, 10:12] = True
    weights = torch.full((clips, frames), 0.1)
    weights[:, 10] = 1.0
    return Batch(model.collate(items), codes, torch.tensor([frames, frames - 7]), near_event, weights)


# ---------------------------------------------------------------------------------------------------- training


def test_training_step_with_beat_weights_and_condition_dropout_runs_on_the_device(spectral_config, on_meta):
    from training.video_music import clip_loss

    model = meta_model(spectral_config).train()
    assert {device for device, _ in model.parts().values()} == {META}
    batch = batch_on_cpu(model).to(META)  # the loop moves each batch with one call
    loss = clip_loss(model, batch, condition_dropout=0.5)
    assert loss.device == META
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device == META for g in grads)


def test_validation_with_the_sync_probe_runs_on_the_device(spectral_config, on_meta):
    from training.video_music import validation_sums

    model = meta_model(spectral_config).eval()
    with torch.no_grad():
        sums = validation_sums(model, batch_on_cpu(model).to(META))
    assert sums.shape == (6,) and sums.device == META  # reduced over processes before anything is read


def test_batches_move_whole_and_pin():
    from training.batches import Batch

    model_like = argparse.Namespace(frame_rate=50, start_token=16, num_codebooks=4,
                                    collate=lambda items: __import__("model.features", fromlist=["x"])
                                    .collate_features(items, 32, 30))
    batch = batch_on_cpu(model_like).to(META)
    tensors = [batch.codes, batch.lengths, batch.near_event, batch.frame_weights,
               *(getattr(batch.features, f) for f in batch.features.__dataclass_fields__)]
    assert all(t.device == META for t in tensors)
    assert isinstance(batch, Batch)


# ---------------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_generation_with_guidance_and_a_prompt_runs_on_the_device(spectral_config, on_meta, dtype):
    """bf16: the fast path computes in the dtype of the live weights (a GPU's bf16 decoder)."""
    model = meta_model(spectral_config, dtype).eval()
    assert model.parts()["decoder"] == (META, dtype) and model.parts()["codec"][1] == torch.float32
    prompt = torch.randint(0, 16, (1, 4, 10))  # on the CPU, as a previous window's codes come back
    codes = model.generate_codes([features()], 0.5, seed=0, guidance_scale=3.0, prompt=prompt)
    assert codes.shape == (1, 4, 25) and codes.device == META
    codes = model.generate_codes([features()], 0.5, seed=0, unconditional=True)
    assert codes.device == META and on_meta == [META, META]  # samplers draw on the probabilities' device


def test_the_transformers_stepping_path_and_stock_generate_run_on_the_device(spectral_config, on_meta):
    from model.sampling import TransformersSteps, sample_codes, stock_generate

    model = meta_model(spectral_config).eval()
    hidden, mask, aligned = model.full_condition(model.collate([features()]), 25 + 3)
    codes = sample_codes(TransformersSteps(model.decoder), hidden, mask, 25, 4, model.start_token, 3.0, 5, 1.0,
                         None, aligned=aligned, prompt=torch.randint(0, 16, (1, 4, 5)))
    assert codes.device == META
    reaches(lambda: stock_generate(model.decoder, hidden, mask, 10, 4, model.start_token, 3.0))


class SilentCodec(torch.nn.Module):
    """The codec's interface; ``decode`` returns silence of the right length on the codes' device (the real
    decoders are library code that cannot run on ``meta``)."""

    def __init__(self, codec):
        super().__init__()
        self.inner = codec
        for name in ("sample_rate", "frame_rate", "num_codebooks", "codebook_size"):
            setattr(self, name, getattr(codec, name))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        hop = self.sample_rate // self.frame_rate
        return torch.zeros(codes.shape[0], 1, codes.shape[-1] * hop, device=codes.device)


def test_long_form_windows_join_on_the_device(spectral_config, on_meta, video_path, monkeypatch):
    import model.long_form as long_form

    model = meta_model(spectral_config).eval()
    model.codec = SilentCodec(model.codec)
    monkeypatch.setattr(model, "extract_features", lambda video, start=0.0, max_seconds=None: features(max_seconds))
    joins = []
    real_crossfade = long_form.crossfade
    monkeypatch.setattr(long_form, "crossfade", lambda tail, head: joins.append(tail.device) or real_crossfade(tail, head))
    reaches(lambda: long_form.generate_long(model, video_path, 2.6, window_seconds=1.0, overlap_seconds=0.4))
    assert joins and set(joins) == {META}  # the crossfade ran, on the device, before the first read-back


# ---------------------------------------------------------------------------------------------------- features


def test_feature_extraction_runs_the_encoders_on_the_device(spectral_config, video_path, tmp_path):
    from data.features.compute import compute_codes
    from media.audio import write_wav
    from media.video import sample_frames

    model = meta_model(spectral_config)
    frames = sample_frames(video_path, 2.0, model.semantic_encoder.image_size, 10.0, 32)
    tokens = model.semantic_encoder(frames.clip_frames)  # uint8 frames from the decoder, on the CPU
    assert tokens.device == META and tokens.shape == (len(frames.clip_frames), 32)
    reaches(lambda: model.extract_features(video_path, max_seconds=1.0))  # up to reading the tokens back
    write_wav(tmp_path / "music" / "a.wav", decaying_hits([0.3], 1.0, 32000), 32000)
    row = {"id": "a", "music_path": "music/a.wav"}
    reaches(lambda: compute_codes(model.codec, tmp_path, [row], "key"))  # the music is moved to the codec


# ---------------------------------------------------------------------------------------------------- precision


@pytest.mark.parametrize("precision, semantic, decoder, sampling", [
    ("fp32", torch.float32, torch.float32, "float32"),
    ("bf16", torch.bfloat16, torch.float32, "bfloat16"),
    ("int8", "bf16 where the CPU has it", torch.float32, "int8"),
])
def test_every_precision_generates_on_the_cpu(precision, semantic, decoder, sampling):
    from common.device import cpu_computes_bf16
    from model.v2m import VideoToMusic

    if semantic == "bf16 where the CPU has it":
        semantic = torch.bfloat16 if cpu_computes_bf16() else torch.float32

    model = VideoToMusic.from_config("tiny", placement=placement_for("cpu", precision)).eval()
    parts = model.parts()
    assert {device for device, _ in parts.values()} == {torch.device("cpu")}
    assert parts["semantic"][1] == semantic and parts["decoder"][1] == decoder
    assert parts["fusion"][1] == torch.float32 and parts["codec"][1] == torch.float32
    assert model.placement.sampling == sampling
    wav = model.generate([features()], 0.3, seed=0)
    assert wav.shape == (1, round(0.3 * model.sample_rate)) and torch.isfinite(wav).all()


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_on_a_cpu_keeps_clip_in_fp32_without_bf16_instructions(monkeypatch, has_bf16):
    """Emulated bf16 made CLIP 8x slower on an AVX2 CPU: ``auto`` (int8) asks the CPU first."""
    import common.device as device

    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: has_bf16)
    placement = device.placement_for("cpu", "auto")
    assert placement.precision == "int8" and placement.sampling == "int8"
    assert placement.semantic == (torch.bfloat16 if has_bf16 else torch.float32)


def test_the_bf16_setting_reaches_the_decoder_weights(spectral_config, on_meta):
    model = meta_model(spectral_config, torch.bfloat16)
    base = model.decoder.get_base_model()
    assert {p.dtype for n, p in base.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    assert {p.dtype for n, p in base.named_parameters() if "lora_" in n} == {torch.float32}  # adapters train in fp32


def test_device_and_precision_are_resolved_with_one_line_errors():
    assert resolve_device("auto") == torch.device("cpu") or torch.cuda.is_available()
    assert placement_for("cpu", "auto").precision == "int8"  # the fastest CPU setting whose quality was measured
    assert placement_for("cpu", "auto", training=True).precision == "fp32"
    for device, precision, message in [("cuda", "auto", "no CUDA GPU"), ("tpu", "auto", "not"),
                                       ("cpu", "fp16", "needs a GPU"), ("cpu", "fp64", "must be one of")]:
        if device == "cuda" and torch.cuda.is_available():
            continue
        with pytest.raises(DeviceError, match=message) as caught:
            placement_for(device, precision)
        assert "\n" not in str(caught.value)
    with pytest.raises(DeviceError, match="inference"):
        placement_for("cpu", "int8", training=True)


def test_quantized_loads_name_the_device(spectral_config):
    from model.decoder import load_options

    placement = placement_for("cpu", "fp32")
    options = load_options(spectral_config.decoder.__class__(quantization="4bit"), placement)
    assert options["device_map"] == {"": torch.device("cpu")} and options["quantization_config"].load_in_4bit
    gpu_int8 = Placement(torch.device("cuda", 1), "int8", torch.float16, torch.float16, "8bit", "float32", "no")
    options = load_options(spectral_config.decoder.__class__(), gpu_int8)
    assert options["device_map"] == {"": torch.device("cuda", 1)} and options["quantization_config"].load_in_8bit


def test_checkpoints_keep_the_cuda_generator_of_each_process(monkeypatch):
    from training import checkpoint

    calls, asked = [], []
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device="cuda": asked.append(device) or torch.tensor([7, 7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: calls.append((state.tolist(), device)))
    state = checkpoint.rng_state(torch.device("cuda", 1))
    assert set(state) == {"torch", "cuda"}
    assert asked == [torch.device("cuda", 1)]  # this process's GPU, not the current one (cuda:0 on every rank)
    checkpoint.restore_rng(state, torch.device("cuda", 1))
    assert calls == [([7, 7], torch.device("cuda", 1))]
    assert set(checkpoint.rng_state(torch.device("cpu"))) == {"torch"}


@pytest.mark.parametrize("module", ["infer", "eval", "train", "data.features", "data.curate",
                                    "training.pretrain_decoder", "bench"])
def test_every_entry_point_takes_device_and_precision(module):
    import importlib
    import subprocess
    import sys

    from tests.conftest import ROOT

    args = {"infer": [], "eval": ["generate"], "train": [], "data.features": [], "data.curate": [],
            "training.pretrain_decoder": [], "bench": []}[module]
    command = [sys.executable, *(["-m", module] if "." in module or module == "bench" else [str(ROOT / f"{module}.py")]),
               *args, "--help"]
    text = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    importlib.invalidate_caches()
    assert "--device" in text and "--precision" in text, text[-500:]


def test_default_model_is_placed_as_asked():
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_pretrained("default", device="cpu", precision="bf16")
    assert model.parts()["semantic"][1] == torch.bfloat16 and model.placement.sampling == "bfloat16"
    clip = features(semantic_dim=model.semantic_encoder.dim)
    assert np.isfinite(model.generate([clip], 0.2, seed=0).numpy()).all()


# ------------------------------------------------------------------- what the first mutation run did not catch


def test_the_commands_build_their_models_on_the_asked_placement():
    """infer, eval generate, the web page (through infer.load_model), data.features and data.curate each load on
    the placement of their --device/--precision (bf16 on the CPU is visible in the parts' dtypes)."""
    import infer
    from data.curate.one_video import build_similarity_encoder
    from data.features.build import _build_model
    from eval import _load_model

    placement = placement_for("cpu", "bf16")
    models = [infer.load_model(argparse.Namespace(config="tiny", model=None, device="cpu", precision="bf16")),
              infer.load_model(argparse.Namespace(config=None, model="default", device="cpu", precision="bf16")),
              _load_model("default", placement), _build_model(load_config("tiny"), placement)]
    for model in models:
        assert model.placement.precision == "bf16" and model.parts()["semantic"][1] == torch.bfloat16
    assert build_similarity_encoder(load_config("tiny").semantic, "cpu", "bf16").tower_dtype == torch.bfloat16


class InMemoryClips:
    """A validation split as ``ClipSource`` serves it once read (``example(i)``, ``len``, ``frame_rate``)."""

    def __init__(self, model, clips: int = 2, seconds: float = 1.0):
        from training.batches import Example

        frames = round(seconds * model.frame_rate)
        self.frame_rate, self.examples = model.frame_rate, [
            Example(features(seconds), torch.randint(0, model.start_token, (model.num_codebooks, frames)),
                    torch.tensor([0.3])) for _ in range(clips)]

    def __len__(self) -> int:
        return len(self.examples)

    def example(self, index: int):
        return self.examples[index]


def test_the_training_tasks_validation_moves_its_batches(spectral_config, on_meta):
    """``VideoMusicTask.validate`` as the loop calls it: CPU batches from its DataLoader, a model on the device."""
    from training.video_music import VideoMusicTask

    model = meta_model(spectral_config)
    task = VideoMusicTask.__new__(VideoMusicTask)
    task.model, task.config, task.train = model, spectral_config, spectral_config.train
    task.validation = InMemoryClips(model)
    accelerator = argparse.Namespace(device=META, process_index=0, num_processes=1, reduce=lambda t, op: t)
    reaches(lambda: task.validate(model, accelerator))  # up to reading the summed losses back


def test_the_encodec_codec_moves_the_waveform_to_itself(monkeypatch):
    """The tiny preset's EnCodec (the device tests otherwise build the demo's spectral codec)."""
    from model.v2m import VideoToMusic

    model = VideoToMusic.from_config("tiny", placement=meta_placement())
    seen = []
    monkeypatch.setattr(model.codec.model, "encode",
                        lambda wav, bandwidth=None: seen.append(wav.device) or argparse.Namespace(audio_codes=[None]))
    model.codec.encode(torch.zeros(1, 1, 3200))
    assert seen == [META]


def test_fast_generation_computes_in_the_dtype_of_half_precision_weights():
    """A GPU's bf16 decoder, here on the CPU: fp32 activations would meet bf16 weights in every linear."""
    from model.fast_decoder import FastDecoder
    from model.v2m import VideoToMusic

    half = Placement(torch.device("cpu"), "bf16", torch.bfloat16, torch.bfloat16, "none", "float32", "bf16")
    model = VideoToMusic.from_config("tiny", placement=half).eval()
    assert FastDecoder(model.decoder).dtype == torch.bfloat16
    wav = model.generate([features()], 0.2, seed=0)
    assert wav.dtype == torch.float32 and torch.isfinite(wav).all()


def test_generate_hands_its_waveform_back_on_the_cpu(spectral_config, on_meta):
    """Callers (eval.py, the tools) call ``.numpy()`` on what ``generate`` returns."""
    model = meta_model(spectral_config).eval()
    model.codec = SilentCodec(model.codec)
    wav = reaches(lambda: model.generate([features(0.3)], 0.3, seed=0))
    assert wav is None or wav.device.type == "cpu"  # on meta the copy back is the honest boundary


def test_the_sampling_generator_is_made_on_the_models_device(monkeypatch):
    """PyTorch has no meta generator (the device fixture stubs it), so this checks the call itself."""
    import common.device as device

    made = []

    class Recorder:
        def __init__(self, device=None):
            made.append(device)

        def manual_seed(self, seed):
            return self

    monkeypatch.setattr(device.torch, "Generator", Recorder)
    device.seeded_generator(torch.device("cuda", 1), 7)
    assert made == [torch.device("cuda", 1)]


def test_checkpoint_loads_of_the_decoder_ask_for_the_placements_dtype(spectral_config):
    from model.decoder import load_options

    gpu_bf16 = Placement(torch.device("cuda", 0), "bf16", torch.bfloat16, torch.bfloat16, "none", "float32", "bf16")
    assert load_options(spectral_config.decoder.__class__(), gpu_bf16) == {"dtype": torch.bfloat16}
