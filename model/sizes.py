"""Real architecture sizes with random weights: benchmarks and measurements without downloading a checkpoint.

The decoder sizes are those of the released MusicGen checkpoints; the codec is MusicGen's 32 kHz EnCodec; the
CLIP sizes come from open_clip's own model config. Compute and memory match the real models; outputs are noise.
"""
from __future__ import annotations

import copy

import open_clip

from model.config import V2MConfig

MUSICGEN_DECODERS = {
    "facebook/musicgen-small": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
    "facebook/musicgen-medium": dict(hidden_size=1536, num_hidden_layers=48, num_attention_heads=24, ffn_dim=6144),
    "facebook/musicgen-large": dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32, ffn_dim=8192),
}
MUSICGEN_CODEC = dict(sampling_rate=32000, audio_channels=1, num_filters=64, hidden_size=128, codebook_size=2048,
                      codebook_dim=128, target_bandwidths=[2.2], upsampling_ratios=[8, 5, 4, 4], num_lstm_layers=2,
                      use_causal_conv=False, normalize=False, use_conv_shortcut=False)


def with_random_weights(config: V2MConfig) -> V2MConfig:
    """A copy of ``config`` whose CLIP and MusicGen are built at their real sizes with random weights."""
    if config.decoder.base not in MUSICGEN_DECODERS:
        raise ValueError(f"no known sizes for {config.decoder.base!r} (known: {', '.join(MUSICGEN_DECODERS)})")
    config = copy.deepcopy(config)
    decoder = dict(vocab_size=2048, num_codebooks=4, max_position_embeddings=2048,
                   **MUSICGEN_DECODERS[config.decoder.base])
    config.decoder.random_init = {"decoder": decoder, "codec": dict(MUSICGEN_CODEC)}
    config.decoder.quantization = "none"  # bitsandbytes quantizes at load time from a checkpoint only
    clip = open_clip.get_model_config(config.semantic.model_name)
    config.semantic.random_init = {"embed_dim": clip["embed_dim"], "vision_cfg": clip["vision_cfg"],
                                   "text_cfg": clip["text_cfg"]}
    config.semantic.pretrained = None
    return config
