"""Fusion aligns streams by their timestamps (not token index), and handles missing motion."""
from __future__ import annotations

import torch

from model.features import VideoFeatures, collate_features
from model.fusion import TemporalFusion, timestamp_embedding


def _features(seconds: float = 3.0, clip_fps: float = 2.0, flow_fps: float = 10.0) -> VideoFeatures:
    g = torch.Generator().manual_seed(0)
    ts, tf = torch.arange(0, seconds, 1 / clip_fps), torch.arange(1, seconds * flow_fps) / flow_fps
    return VideoFeatures(torch.randn(len(ts), 8, generator=g), ts, torch.randn(len(tf), 6, generator=g), tf, seconds)


def _fusion(**kw) -> TemporalFusion:
    torch.manual_seed(0)
    return TemporalFusion(8, 6, 16, d_fuse=16, heads=2, dropout=0.0, **kw).eval()


def test_nearest_time_across_rates_has_the_most_similar_embedding():
    flow_times = torch.tensor([[0.1, 0.9, 1.6, 2.4]])
    clip_times = torch.arange(0, 3, 0.5)[None]  # 2 fps
    a, b = timestamp_embedding(flow_times, 64, 60.0), timestamp_embedding(clip_times, 64, 60.0)
    similarity = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).transpose(1, 2)
    nearest = (flow_times[0, :, None] - clip_times[0, None, :]).abs().argmin(-1)
    assert torch.equal(similarity[0].argmax(-1), nearest)


def test_output_shape_mask_and_decoder_width():
    fusion, f = _fusion(), _features()
    hidden, mask, _ = fusion(collate_features([f, f.crop(0, 1.5)], 8, 6))
    assert hidden.shape == (2, 29 + 6, 16) and mask.shape == (2, 35)
    assert mask[0].all() and mask[1].sum() == 14 + 3  # the crop has 14 flow and 3 clip tokens
    assert torch.all(hidden[1][~mask[1].bool()] == 0)


def test_alignment_is_by_time_not_by_token_order():
    fusion, f = _fusion(), _features()
    perm_s, perm_m = torch.randperm(len(f.semantic_times)), torch.randperm(len(f.motion_times))
    shuffled = VideoFeatures(f.semantic[perm_s], f.semantic_times[perm_s], f.motion[perm_m], f.motion_times[perm_m], 3.0)
    with torch.no_grad():
        out, _, _ = fusion(collate_features([f], 8, 6))
        out_shuffled, _, _ = fusion(collate_features([shuffled], 8, 6))
    motion_part = out_shuffled[0, : len(perm_m)]
    assert torch.allclose(motion_part, out[0, perm_m], atol=1e-5)


def test_moving_a_clip_token_in_time_changes_the_fused_motion_tokens():
    fusion, f = _fusion(), _features()
    moved = VideoFeatures(f.semantic, f.semantic_times + 0.7, f.motion, f.motion_times, 3.0)
    with torch.no_grad():
        a, _, _ = fusion(collate_features([f], 8, 6))
        b, _, _ = fusion(collate_features([moved], 8, 6))
    assert not torch.allclose(a[0, :29], b[0, :29], atol=1e-4)


def test_without_motion_uses_the_semantic_tokens_alone():
    fusion, f = _fusion(), _features()
    hidden, mask, _ = fusion(collate_features([f.without_motion()], 8, 6))
    assert hidden.shape == (1, 6, 16) and mask.all()
    ablation = _fusion(use_motion=False)
    hidden, _, _ = ablation(collate_features([f], 8, 6))
    assert hidden.shape == (1, 6, 16)


def test_time_aligned_term_starts_at_zero_and_sees_the_motion_token_covering_each_step():
    fusion, f = _fusion(time_aligned=True, self_layers=0), _features()  # no self-attention: tokens stay separate
    _, _, aligned = fusion(collate_features([f], 8, 6), num_steps=150, frame_rate=50.0)
    assert aligned.shape == (1, 150, 16) and torch.all(aligned == 0)  # zero-initialised: no effect at first
    torch.nn.init.normal_(fusion.aligned_project.weight)
    _, _, before = fusion(collate_features([f], 8, 6), num_steps=150, frame_rate=50.0)
    # steps 1.02-1.10 s lie in the pair stamped 1.1 s (frames 1.0 -> 1.1): they share one term; 1.0 s is the pair before
    assert torch.equal(before[0, 51], before[0, 55]) and not torch.equal(before[0, 50], before[0, 51])
    changed = f.motion.clone()
    changed[10] += 5.0  # the token stamped 1.1 s
    after = fusion(collate_features([VideoFeatures(f.semantic, f.semantic_times, changed, f.motion_times, f.duration)],
                                    8, 6), num_steps=150, frame_rate=50.0)[2]
    moved = (after[0] - before[0]).abs().sum(-1) > 0  # [S]
    # seen by the steps it covers (51-55), one pair ahead (56-60) and one pair behind (46-50), by no other step
    assert moved.nonzero().flatten().tolist() == list(range(46, 61))
    _, _, none = _fusion()(collate_features([f], 8, 6), num_steps=150)
    assert none is None
