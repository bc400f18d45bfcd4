"""Presets load into typed configs; unknown keys, wrong types and impossible values fail with a clear message."""
from __future__ import annotations

import pytest

from model.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
def test_presets_load_and_validate(preset):
    config = load_config(preset)
    assert config.semantic.clip_fps == 2.0 and config.motion.flow_fps == 10.0


def test_real_presets_name_the_hub_models():
    small, medium = load_config("small"), load_config("medium")
    assert small.decoder.base == "facebook/musicgen-small" and small.semantic.model_name == "ViT-B-32"
    assert small.semantic.pretrained == "openai" and small.decoder.random_init is None
    assert medium.decoder.base == "facebook/musicgen-medium" and medium.decoder.quantization == "4bit"


def test_overrides_parse_values_as_yaml():
    config = load_config("tiny", ["train.lr=3e-4", "lora.targets=[self_attn.q_proj]", "fusion.use_motion=false",
                                  "semantic.pretrained=none"])
    assert config.train.lr == 3e-4 and config.lora.targets == ["self_attn.q_proj"]
    assert config.fusion.use_motion is False and config.semantic.pretrained is None


@pytest.mark.parametrize("word", ["none", "None", "null"])
def test_none_on_the_command_line_empties_optional_fields_and_stays_a_word_elsewhere(word):
    """``decoder.quantization=none`` is the documented way to turn quantization off (a str field whose values
    include the word); the same word empties an optional field. The GPU check's CUDA tests tripped on this."""
    config = load_config("tiny", [f"decoder.random_init={word}", "decoder.base=somewhere",
                                  "decoder.quantization=none", f"semantic.pretrained={word}"])
    assert config.decoder.random_init is None and config.semantic.pretrained is None
    assert config.decoder.quantization == "none"


@pytest.mark.parametrize("data, message", [
    ({"fusion": {"dfuse": 3}}, "unknown config key"),
    ({"fusoin": {}}, "unknown config section"),
    ({"motion": {"flow_fps": 0}}, "motion.flow_fps must be > 0"),
    ({"motion": {"flow_fps": "fast"}}, "motion.flow_fps must be float"),
    ({"semantic": {"clip_fps": -2}}, "semantic.clip_fps must be > 0"),
    ({"fusion": {"d_fuse": 30, "heads": 4}}, "divisible"),
    ({"decoder": {"quantization": "3bit"}}, "decoder.quantization"),
    ({"train": {"batch_size": True}}, "train.batch_size must be int"),
    ({"lora": {"targets": "q_proj"}}, "lora.targets must be a list"),
    ({"guidance": {"scale": 0.5}}, "guidance.scale"),
])
def test_bad_values_are_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


@pytest.mark.parametrize("override", ["train.lr", "lr=1", "a.b.c=1"])
def test_malformed_overrides(override):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("tiny", [override])


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="presets: .*tiny"):
        load_config("huge")


@pytest.mark.parametrize("override, where", [
    ("decoder.random_init={decoder: {hiden_size: 32}}", "decoder.random_init.decoder: unknown field(s) hiden_size"),
    ("decoder.random_init={decodr: {hidden_size: 32}}", "decoder.random_init: unknown field(s) decodr"),
    ("semantic.random_init={embed_dim: 8, vision_cfg: {layer: 1}}", "semantic.random_init.vision_cfg: unknown"),
])
def test_a_typo_in_random_init_is_refused_not_a_silent_attribute(override, where):
    from model.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=where.replace("(", r"\(").replace(")", r"\)")):
        load_config("tiny", [override])


def test_generation_max_seconds_bounds_one_generation(tiny_model):
    from model.config import load_config
    from model.v2m import VideoToMusic
    from tests.test_devices import features

    short = VideoToMusic.from_config(load_config("tiny", ["generation.max_seconds=0.2"])).eval()
    assert short.generation.max_seconds == 0.2
    short.generate([features(0.2)], 0.2, seed=0)
    with pytest.raises(ValueError, match="generation.max_seconds"):
        short.generate([features(0.5)], 0.5, seed=0)
