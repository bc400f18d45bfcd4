"""tools/codec_ceiling.py: the reference music scored as is and after the codec's round trip, paired per clip."""
from __future__ import annotations

import numpy as np
import pytest

from tools.codec_ceiling import ceiling, round_trip, split_rows


def test_identity_round_trip_changes_nothing_and_a_late_copy_loses_the_events(synthetic_set):
    rows = split_rows(synthetic_set, "train")
    same = ceiling(synthetic_set, rows, 32000, lambda wav: wav.copy(), progress=False)
    assert same["paired"]["lift"]["mean"] == 0.0 and same["paired"]["onsets_per_s"]["mean"] == 0.0
    assert same["reference"]["event"]["mean"] > 0.9  # the synthetic music has an accent on every event

    late = ceiling(synthetic_set, rows, 32000, lambda wav: np.concatenate([np.zeros(8000, wav.dtype), wav[:-8000]]),
                   progress=False)  # 0.25 s late: every accent misses its event by more than the 0.1 s tolerance
    assert late["round_trip"]["event"]["mean"] < 0.2
    assert late["paired"]["lift"]["ci_high"] < 0


def test_the_demo_codec_round_trip_keeps_the_length_and_rejects_an_empty_split(synthetic_set):
    from common.errors import UserError
    from model.spectral_codec import SpectralCodec

    codec = SpectralCodec.load("models/demo-codec/codec.safetensors", griffin_lim_iters=4)
    wav = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    out = round_trip(codec)(wav)
    assert out.shape == wav.shape and np.isfinite(out).all() and np.abs(out).max() > 0
    with pytest.raises(UserError, match="no clip with known event times"):
        ceiling(synthetic_set, [], 32000, lambda wav: wav, progress=False)
    with pytest.raises(UserError, match="has no split 'dev'"):
        split_rows(synthetic_set, "dev")
    assert len(split_rows(synthetic_set, "train", limit=2)) == 2
