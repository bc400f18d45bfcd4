"""Issue 19's training levers: per-stream condition dropout and the lead-in weights of the beat-weighted loss."""
from __future__ import annotations

import torch

from model.features import FeatureBatch, VideoFeatures, collate_features
from model.fusion import TemporalFusion, drop_streams
from training.batches import Example, crop


def _batch(size: int = 64) -> FeatureBatch:
    items = [VideoFeatures(torch.randn(4, 8), torch.arange(4) * 0.5, torch.randn(20, 6), torch.arange(1, 21) * 0.1, 2.0)
             for _ in range(size)]
    return collate_features(items, 8, 6)


def test_drop_streams_drops_each_stream_independently_and_keeps_shapes():
    batch = _batch()
    dropped = drop_streams(batch, 0.5, torch.Generator().manual_seed(0))
    no_picture = (dropped.semantic == 0).flatten(1).all(1)  # [B]
    no_motion = ~dropped.motion_mask.any(1)  # [B]
    assert dropped.semantic.shape == batch.semantic.shape and dropped.motion.shape == batch.motion.shape
    assert 10 < int(no_picture.sum()) < 54 and 10 < int(no_motion.sum()) < 54
    assert bool((no_picture & no_motion).any()) and bool((no_picture & ~no_motion).any())  # all four cases occur
    assert bool((~no_picture & no_motion).any()) and bool((~no_picture & ~no_motion).any())
    kept = ~no_picture
    assert torch.equal(dropped.semantic[kept], batch.semantic[kept])  # untouched rows are unchanged
    assert torch.equal(dropped.semantic_mask, batch.semantic_mask)  # semantic tokens keep their times and mask
    assert (dropped.motion[no_motion] == 0).all()


def test_fusion_drops_streams_only_while_training():
    fusion = TemporalFusion(8, 6, 16, d_fuse=16, heads=2, stream_dropout=0.9, time_aligned=True)
    batch = _batch(8)
    fusion.eval()
    first, second = fusion(batch, 10)[0], fusion(batch, 10)[0]
    assert torch.equal(first, second)  # inference never drops
    fusion.train()
    torch.manual_seed(0)
    hidden, mask, aligned = fusion(batch, 10)
    assert torch.isfinite(hidden).all() and torch.isfinite(aligned).all()  # a clip with no stream left stays finite
    assert (mask[:, :20] == 0).any()  # some clips lost their motion tokens


def test_lead_in_frames_weigh_one_and_the_rest_keep_their_beat_weights():
    features = VideoFeatures(torch.randn(8, 4), torch.arange(8) * 0.5, torch.randn(40, 3), torch.arange(1, 41) * 0.1, 4.0)
    weights = torch.full((200,), 0.1)
    weights[120] = 1.0
    example = Example(features, torch.zeros(2, 200, dtype=torch.long), torch.tensor([2.4]), weights)
    *_, plain = crop(example, 3.0, 50, None)
    *_, lead = crop(example, 3.0, 50, None, lead_in_frames=25)
    assert torch.equal(plain, weights[:150])
    assert (lead[:25] == 1).all() and torch.equal(lead[25:], weights[25:150])
    assert torch.equal(example.frame_weights, weights)  # the clip's own weights are not changed in place
