"""The assembled model: what trains, saving and loading, generation with guidance, and the delay pattern."""
from __future__ import annotations

import json

import pytest
import torch

from model.delay import IGNORE_INDEX, delay_codes, training_pair, undelay_codes
from model.features import VideoFeatures
from model.v2m import CheckpointError, VideoToMusic
from training.loss import codebook_cross_entropy


def _features(seconds: float = 2.0) -> VideoFeatures:
    g = torch.Generator().manual_seed(1)
    tf = torch.arange(1, int(seconds * 10)) / 10
    return VideoFeatures(torch.randn(int(seconds * 2), 32, generator=g), torch.arange(0, seconds, 0.5),
                         torch.randn(len(tf), 30, generator=g), tf, seconds)


def test_only_lora_and_fusion_train(tiny_model):
    trainable = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("fusion.") or "lora_" in n for n in trainable)
    assert any("encoder_attn" in n and "lora_A" in n for n in trainable)
    assert any("self_attn" in n and "lora_B" in n for n in trainable)
    frozen = [n for n, p in tiny_model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("semantic_encoder.") for n in frozen) and any(n.startswith("codec.") for n in frozen)
    assert set(tiny_model.trainable_state_dict()) == (
        {f"fusion.{k}" for k in tiny_model.fusion.state_dict()} | {k for k in tiny_model.trainable_state_dict() if k.startswith("lora.")})


def test_delay_pattern_round_trip_and_labels():
    codes = torch.arange(2 * 4 * 5).reshape(2, 4, 5)
    tokens = delay_codes(codes, bos=99, pad=98)
    assert tokens.shape == (2, 4, 9) and (tokens[:, :, 0] == 99).all()
    assert tokens[0, 3, 4].item() == codes[0, 3, 0].item()  # codebook 3 starts 3 steps late
    assert torch.equal(undelay_codes(tokens, 5), codes)
    inputs, labels = training_pair(codes, 99, 98, lengths=torch.tensor([5, 2]))
    assert inputs.shape == labels.shape == (2, 4, 8)
    assert (labels[0] != IGNORE_INDEX).sum() == 20 and (labels[1] != IGNORE_INDEX).sum() == 8


def test_loss_is_finite_and_reaches_lora_and_fusion(tiny_model):
    model = VideoToMusic.from_config("tiny").train()
    model.config.guidance.condition_dropout = 0.0  # a dropped condition would (rightly) give fusion no gradient
    f = _features()
    loss = codebook_cross_entropy(*model(model.collate([f, f.without_motion()]), torch.randint(0, 64, (2, 4, 100)),
                                         torch.tensor([100, 70])))
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads["fusion.project.weight"].abs().sum() > 0
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)  # B starts at 0


def test_condition_dropout_uses_the_null_condition():
    from model.guidance import drop_condition, with_null_branch

    hidden, mask = torch.ones(1000, 3, 2), torch.ones(1000, 3, dtype=torch.long)
    dropped_hidden, dropped_mask = drop_condition(hidden, mask, p=0.3, generator=torch.Generator().manual_seed(0))
    dropped = dropped_mask.sum(1) == 0
    assert 0.25 < dropped.float().mean() < 0.35 and (dropped_hidden[dropped] == 0).all()
    assert (dropped_hidden[~dropped] == 1).all()
    both, both_mask = with_null_branch(hidden[:2], mask[:2])
    assert both.shape == (4, 3, 2) and both_mask[2:].sum() == 0 and (both[2:] == 0).all()


def test_generation_length_seed_and_guidance(tiny_model):
    f = _features()
    wav = tiny_model.generate([f], seconds=1.3, seed=4, guidance_scale=3.0)
    assert wav.shape == (1, round(1.3 * tiny_model.sample_rate)) and torch.isfinite(wav).all()
    assert torch.equal(wav, tiny_model.generate([f], seconds=1.3, seed=4, guidance_scale=3.0))
    assert not torch.equal(wav, tiny_model.generate([f], seconds=1.3, seed=5, guidance_scale=3.0))


def test_guidance_changes_the_music_when_the_condition_matters():
    model = VideoToMusic.from_config("tiny").eval()
    with torch.no_grad():  # an untrained fusion barely moves the decoder: make the condition loud
        model.fusion.project.weight.mul_(200.0)
    f = _features()
    codes = [model.generate_codes([f], 1.0, seed=4, guidance_scale=g) for g in (1.0, 3.0)]
    assert codes[0].shape == (1, 4, 50) and not torch.equal(codes[0], codes[1])
    unconditional = model.generate_codes([f], 1.0, seed=4, unconditional=True)
    assert not torch.equal(codes[0], unconditional)


def test_greedy_sampling_agrees_with_teacher_forcing(tiny_model):
    """Sampling and training must use the same delay pattern: greedy tokens are the argmax of a full forward."""
    f = _features()
    codes = tiny_model.generate_codes([f], 1.0, guidance_scale=1.0, greedy=True)
    hidden, mask = tiny_model.condition(tiny_model.collate([f]))
    inputs, labels = training_pair(codes, tiny_model.start_token, tiny_model.start_token)
    with torch.no_grad():
        logits = tiny_model.decoder(input_ids=inputs.reshape(4, -1), encoder_hidden_states=hidden,
                                    encoder_attention_mask=mask).logits
    predicted = logits.reshape(1, 4, inputs.shape[-1], -1).argmax(-1)
    real = labels != IGNORE_INDEX
    assert (predicted[real] == labels[real]).float().mean() > 0.99


def test_batched_generation_matches_single(tiny_model):
    """Padding a shorter clip in a batch must not change its music (masks reach the decoder's cross-attention)."""
    short, long = _features(1.0), _features(2.0)
    alone = tiny_model.generate_codes([short], 0.5, greedy=True)
    batched = tiny_model.generate_codes([short, long], 0.5, greedy=True)
    assert torch.equal(alone[0], batched[0])


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = VideoToMusic.from_config("tiny").train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    f = _features()
    for _ in range(3):  # move the weights away from their initial values
        codebook_cross_entropy(*model(model.collate([f]), torch.randint(0, 64, (1, 4, 100)))).backward()
        optimizer.step(), optimizer.zero_grad()
    model.eval().save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                                "semantic.safetensors"]  # random-init CLIP is stored
    loaded = VideoToMusic.from_pretrained(str(tmp_path / "m")).eval()
    codes = torch.randint(0, 64, (1, 4, 50))
    with torch.no_grad():
        assert torch.equal(model(model.collate([f]), codes)[0], loaded(loaded.collate([f]), codes)[0])
    assert torch.equal(model.generate([f], 0.5, seed=1), loaded.generate([f], 0.5, seed=1))
    fresh = VideoToMusic.from_config("tiny")
    assert not torch.equal(fresh.trainable_state_dict()["fusion.project.weight"],
                           loaded.trainable_state_dict()["fusion.project.weight"])


def test_loading_refuses_bad_folders(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "ok")
    with pytest.raises(CheckpointError, match="no config.json"):
        VideoToMusic.from_pretrained(str(tmp_path))
    meta = json.loads((tmp_path / "ok" / "config.json").read_text())
    meta["config"]["fusion"]["d_fuse"] = 64
    (tmp_path / "ok" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape|do not match"):
        VideoToMusic.from_pretrained(str(tmp_path / "ok"))
    meta["config"]["fusion"]["d_fuse"] = "wide"  # a stored config the dataclasses refuse: one line naming the folder
    (tmp_path / "ok" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'ok'}: .*d_fuse"):
        VideoToMusic.from_pretrained(str(tmp_path / "ok"))
    meta["config"]["fusion"]["d_fuse"] = 32
    meta["config"]["decoder"]["base"] = "../../etc"
    meta["config"]["decoder"]["random_init"] = None
    (tmp_path / "ok" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="outside the model folder"):
        VideoToMusic.from_pretrained(str(tmp_path / "ok"))
    (tmp_path / "ok" / "model.safetensors").write_bytes(b"\x80\x04pickle? no")
    meta["config"]["decoder"]["base"] = "facebook/musicgen-small"
    meta["config"]["decoder"]["random_init"] = tiny_model.config.decoder.random_init
    (tmp_path / "ok" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="safetensors"):
        VideoToMusic.from_pretrained(str(tmp_path / "ok"))
    with pytest.raises(CheckpointError, match="not a model folder or a Hub repo id"):
        VideoToMusic.from_pretrained("no such thing")


def test_time_aligned_term_reaches_sampling_exactly_as_in_training():
    """With DESIGN.md §9's additive term, sampling step t must add what the teacher-forced pass added at step t."""
    from model.config import load_config
    from model.sampling import TransformersSteps, sample_codes

    model = VideoToMusic.from_config(load_config("tiny", ["fusion.time_aligned=true"])).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.fusion.aligned_project.weight, std=2.0)
    f = _features()
    codes = model.generate_codes([f], 1.0, guidance_scale=1.0, greedy=True)
    inputs, labels = training_pair(codes, model.start_token, model.start_token)
    logits, labels = model.teacher_forced(model.collate([f]), codes)
    real = labels != IGNORE_INDEX
    assert (logits.argmax(-1)[real] == labels[real]).float().mean() > 0.99
    hidden, mask, aligned = model.full_condition(model.collate([f]), 50 + 3)
    reference = sample_codes(TransformersSteps(model.decoder), hidden, mask, 50, 4, model.start_token, greedy=True,
                             aligned=aligned)
    assert torch.equal(reference, codes)  # the hook path and the fast path agree
    without = sample_codes(TransformersSteps(model.decoder), hidden, mask, 50, 4, model.start_token, greedy=True)
    assert not torch.equal(without, codes)


def test_a_no_motion_model_takes_the_motion_free_features_of_a_model_with_more_motion_features():
    """eval.py's --no-motion-model: the ablation (30 motion features) gets ``without_motion()`` of features that
    a speed_stats model (33) extracted; the semantic tokens are the same, so the music must be too."""
    from model.config import load_config

    ablation = VideoToMusic.from_config(load_config("tiny", ["fusion.use_motion=false"])).eval()
    f = _features()
    wider = VideoFeatures(f.semantic, f.semantic_times, torch.randn(len(f.motion_times), 33), f.motion_times, 2.0)
    wav = ablation.generate([wider.without_motion()], seconds=0.5, seed=2)
    assert torch.equal(wav, ablation.generate([f.without_motion()], seconds=0.5, seed=2))
    assert torch.equal(wav, ablation.generate([f], seconds=0.5, seed=2))  # use_motion=false ignores motion tokens


def test_our_decoder_folder_with_a_missing_tensor_is_an_error_not_a_warning(tmp_path):
    """transformers only logs "some weights were not initialized"; for a decoder folder this project wrote, that
    partial load would be silent garbage, so it is refused."""
    import shutil

    from safetensors.torch import load_file, save_file

    from common.device import placement_for
    from model.config import load_config
    from model.decoder import _decoder_only
    from model.v2m import DEMO_MODEL_DIR, default_model_is_trained

    if not default_model_is_trained():
        pytest.skip("the demo model is not shipped in this checkout")
    folder = tmp_path / "decoder"
    shutil.copytree(DEMO_MODEL_DIR / "decoder", folder)
    weights = load_file(folder / "model.safetensors")
    dropped = next(k for k in weights if "layers.0.fc1" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, folder / "model.safetensors", metadata={"format": "pt"})
    config = load_config("demo").decoder
    with pytest.raises(CheckpointError, match="do not match"):
        _decoder_only(type(config)(**{**vars(config), "base": str(folder), "random_init": None}),
                      placement_for("cpu", "fp32"))


def test_a_save_killed_half_way_leaves_the_old_model_whole(tmp_path, monkeypatch):
    import model.checkpoint as checkpoint

    model = VideoToMusic.from_config("tiny")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C between the config and the weights

    monkeypatch.setattr(checkpoint, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no half-built folder left beside it
