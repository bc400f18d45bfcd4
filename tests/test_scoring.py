"""The metric math on inputs with known answers; every model is a tiny random-initialised one (no downloads)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

ROOT = Path(__file__).resolve().parent.parent

from scoring.av_align import av_align, av_align_iou, local_maxima, video_motion_peaks
from scoring.beats import beat_scores, beat_times, match_beats
from scoring.chroma import chroma_cosine
from scoring.clap import ClapEmbedder, clap_score
from scoring.embedders import CodecEmbedder, MelStatsEmbedder, encodec_encode_fn
from scoring.fad import fad_from_embeddings, frechet_distance
from scoring.kld import ASTTagger, kl_divergence, kld_both
from scoring.stats import bootstrap_ci, mean_ci
from scoring.testing import chord, click_track, flash_video
from scoring.vggish import VGGish, load_vggish, log_mel_patches

EVENTS = [0.4, 0.9, 1.4, 1.9, 2.4, 2.9, 3.4]


# ---------------------------------------------------------------- FAD

def test_fad_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((400, 16))
    assert fad_from_embeddings(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_known_gaussians():
    # N(0, I) vs N(mu, diag(s^2)): |mu|^2 + sum(1 + s^2 - 2 s)
    mu, s = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    expected = (mu ** 2).sum() + (1 + s ** 2 - 2 * s).sum()
    assert frechet_distance(np.zeros(3), np.eye(3), mu, np.diag(s ** 2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    s1, s2, m1, m2 = a @ a.T, b @ b.T, rng.standard_normal(6), rng.standard_normal(6)
    expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-6)


def test_fad_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    gen, ref = rng.standard_normal((20000, 2)), rng.standard_normal((20000, 2)) * 2.0 + 1.0
    assert fad_from_embeddings(gen, ref) == pytest.approx(2 * 1.0 + 2 * (1 + 4 - 4), rel=0.05)


# ---------------------------------------------------------------- KLD

def test_kl_of_identical_distributions_is_zero_and_known_case_matches():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(p, q) == pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1), abs=1e-5)
    both = kld_both(q[None], p[None])  # generated q, reference p
    assert both["kld_ref_gen"] == pytest.approx(kl_divergence(p, q), abs=1e-9)
    assert both["kld_gen_ref"] == pytest.approx(kl_divergence(q, p), abs=1e-9)


def _tiny_ast() -> ASTTagger:
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       num_mel_bins=32, max_length=128, num_labels=10)
    return ASTTagger(ASTForAudioClassification(config).eval(), ASTFeatureExtractor(num_mel_bins=32, max_length=128))


def test_ast_tagger_gives_distributions_and_kld_zero_for_same_audio():
    tagger = _tiny_ast()
    tone, clicks = chord([60, 64, 67], 3.0, 16000), click_track(EVENTS, 3.0, 16000)
    p, q = tagger(tone), tagger(clicks)
    assert p.shape == (10,) and p.sum() == pytest.approx(1.0, abs=1e-5)
    assert kld_both(p[None], p[None]) == {"kld_ref_gen": pytest.approx(0.0, abs=1e-9),
                                          "kld_gen_ref": pytest.approx(0.0, abs=1e-9)}
    assert kld_both(q[None], p[None])["kld_ref_gen"] > 0


# ---------------------------------------------------------------- chroma, beats

def test_chroma_cosine_is_one_with_itself_and_lower_when_transposed():
    c_major, f_sharp_major = chord([60, 64, 67]), chord([66, 70, 73])
    assert chroma_cosine(c_major, c_major) == pytest.approx(1.0, abs=1e-5)
    assert chroma_cosine(c_major, f_sharp_major) < 0.5
    assert chroma_cosine(c_major, f_sharp_major, argmax=True) == pytest.approx(0.0, abs=1e-6)


def test_beat_coverage_and_hit_on_hand_made_lists():
    ref, gen = np.array([0.0, 0.5, 1.0, 1.5]), np.array([0.05, 0.52, 1.2, 1.49, 2.0])
    assert beat_scores(gen, ref) == {"bcs": pytest.approx(5 / 4), "bhs": pytest.approx(3 / 4)}
    assert match_beats(np.array([1.02]), np.array([1.0, 1.05])) == 1  # one generated beat hits one reference beat
    assert np.isnan(beat_scores(gen, np.array([]))["bhs"])


def test_beat_tracker_finds_a_click_pulse():
    beats = beat_times(click_track(list(np.arange(0.5, 8.0, 0.5)), 8.0, 22050), 22050)
    assert len(beats) >= 8 and np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.03)


# ---------------------------------------------------------------- AV-Align

def test_av_align_iou_and_peaks_by_hand():
    assert av_align_iou(np.array([1.0, 2.0]), np.array([1.01, 3.0]), fps=25) == pytest.approx(1 / 3)
    assert np.isnan(av_align_iou(np.array([]), np.array([]), fps=25))
    assert list(local_maxima(np.array([0.0, 0.5, 0.2, 0.05, 0.08, 0.0]))) == [1]  # 0.08 is below 0.1


@pytest.fixture(scope="module")
def flashes(tmp_path_factory) -> Path:
    return flash_video(tmp_path_factory.mktemp("video") / "flashes.mp4", EVENTS)


def test_av_align_high_for_clicks_on_flashes_and_low_between_them(flashes):
    motion = video_motion_peaks(flashes)
    assert motion.fps == 25 and len(motion.peaks) == len(EVENTS)
    on_beat = click_track(EVENTS, sample_rate=22050)
    between = click_track([e + 0.25 for e in EVENTS], sample_rate=22050)
    assert av_align(flashes, on_beat) >= 0.8
    assert av_align(flashes, between) <= 0.2
    assert av_align(flashes, on_beat, flow_width=64) >= 0.8  # downscaled flow, magnitudes rescaled to native


# ---------------------------------------------------------------- embedders

def test_vggish_frontend_model_and_strict_weight_loading(tmp_path):
    patches = log_mel_patches(np.random.default_rng(0).standard_normal(16000 * 2) * 0.1)
    assert patches.shape == (2, 96, 64)
    assert log_mel_patches(np.zeros(1000)).shape == (1, 96, 64)  # short audio is padded to one patch
    weights = tmp_path / "vggish.pth"
    torch.save(VGGish().state_dict(), weights)
    embedder = load_vggish(weights)
    assert embedder(np.random.default_rng(1).standard_normal(16000 * 3) * 0.1).shape == (3, 128)
    bad = {k: v for k, v in VGGish().state_dict().items() if not k.startswith("embeddings.")}
    torch.save(bad, weights)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_vggish(weights)


def test_mel_and_codec_embedders_give_frames():
    from transformers import EncodecConfig, EncodecModel

    wav = chord([60, 64, 67], 3.0, 16000)
    assert MelStatsEmbedder()(wav).shape == (3, 128)
    torch.manual_seed(0)
    config = EncodecConfig(sampling_rate=16000, num_filters=4, hidden_size=8, upsampling_ratios=[4, 4],
                           codebook_size=16, num_lstm_layers=1)
    codec = CodecEmbedder(encodec_encode_fn(EncodecModel(config).eval()), sample_rate=16000)
    frames = codec(wav)
    assert frames.shape == (3 * 16000 // 16, 8)
    assert fad_from_embeddings(frames, frames) == pytest.approx(0.0, abs=1e-6)


def test_clap_embedder_and_score_with_a_tiny_model():
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(0)
    audio = dict(hidden_size=16, depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=8,
                 window_size=8, spec_size=256, num_mel_bins=64)
    text = dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).eval()
    embedder = ClapEmbedder(model, ClapFeatureExtractor(truncation="rand_trunc"))
    a = embedder(chord([60, 64, 67], 12.0, 48000))
    assert a.shape == (2, 8) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert clap_score(a, a) == pytest.approx(1.0, abs=1e-6)
    assert clap_score(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(0.0)


# ---------------------------------------------------------------- aggregates, evaluate modules

def test_mean_ci_skips_nan_and_brackets_the_mean():
    stats = mean_ci([1.0, 2.0, float("nan"), 3.0, 4.0])
    assert stats["n"] == 4 and stats["mean"] == pytest.approx(2.5)
    assert stats["ci_low"] <= 2.5 <= stats["ci_high"]
    assert mean_ci([])["n"] == 0
    low, high = bootstrap_ci(lambda idx: float(np.mean(np.arange(10)[idx])), 10)
    assert low <= 4.5 <= high


def test_local_evaluate_module_loads_offline():
    script = ("import evaluate, json, numpy as np\n"
              "m = evaluate.load('scoring/hub/fad')\n"
              "a = [np.eye(3, dtype=np.float32) * (i + 1) for i in range(3)]\n"
              "b = [x + 1 for x in a]\n"
              "for name in ('chroma_cosine', 'beat_scores', 'av_align'):\n"
              "    assert evaluate.load(f'scoring/hub/{name}').features is not None, name\n"
              "print(json.dumps([m.compute(predictions=a, references=a)['fad'],\n"
              "                  m.compute(predictions=a, references=b)['fad']]))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    same, shifted = json.loads(done.stdout.strip().splitlines()[-1])
    assert same == pytest.approx(0.0, abs=1e-6) and shifted == pytest.approx(3.0, rel=1e-6)


def test_paired_differences_see_a_shift_that_separate_intervals_hide():
    from scoring.report import markdown_report, paired_differences
    from scoring.runner import Results, Settings

    # clip difficulty varies a lot (shared by both systems); "ours" is better by a constant 0.05 on every clip
    difficulty = np.random.default_rng(0).uniform(0.0, 0.8, size=40)
    results = Results(per_clip={
        "ours": {f"c{i}": {"bhs": d + 0.05} for i, d in enumerate(difficulty)},
        "no_motion": {f"c{i}": {"bhs": d} for i, d in enumerate(difficulty)},
        "reference": {f"c{i}": {"av_align": 0.1} for i in range(40)}})
    paired = paired_differences(results, Settings(metrics=["beat"]))
    delta = paired["versus"]["no_motion"]["bhs"]
    assert paired["base"] == "ours" and "reference" not in paired["versus"]
    assert delta["mean"] == pytest.approx(0.05) and delta["ci_low"] == pytest.approx(0.05) and delta["n"] == 40
    separate = [mean_ci([c["bhs"] for c in results.per_clip[s].values()]) for s in ("ours", "no_motion")]
    assert separate[0]["ci_low"] < separate[1]["ci_high"]  # the unpaired intervals overlap
    report = {"confidence_interval": "x", "systems": {}, "not_computed": {}, "definitions": {}, "skipped": [],
              "timing": {"clips": 0}, "paired_differences": paired}
    assert "| ours − no_motion | 0.050 [0.050, 0.050]" in markdown_report(report, Settings(metrics=["beat"]))
