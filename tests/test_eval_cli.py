"""eval.py end to end on synthetic clips: reports and plots are written, bad inputs give one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

from eval import main
from scoring.testing import chord, click_track, flash_video, write_wav

EVENTS = {"a": [0.4, 0.9, 1.4, 1.9, 2.4, 2.9, 3.4], "b": [0.3, 1.1, 1.6, 2.5, 3.3]}


def _music(times: list[float], notes: list[int], seconds: float = 4.0, rate: int = 32000) -> np.ndarray:
    return click_track(times, seconds, rate) + 0.3 * chord(notes, seconds, rate)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """gen/ours (clicks on the video's flashes), gen/no_motion (clicks between them, other key), ref/, videos/."""
    root = tmp_path_factory.mktemp("run")
    for clip, events in EVENTS.items():
        flash_video(root / "videos" / f"{clip}.mp4", events)
        write_wav(root / "ref" / f"{clip}.wav", _music(events, [60, 64, 67]))
        write_wav(root / "gen" / "ours" / f"{clip}.wav", _music(events, [60, 64, 67]))
        write_wav(root / "gen" / "no_motion" / f"{clip}.wav", _music([e + 0.25 for e in events], [66, 70, 73]))
    (root / "gen" / "ours" / "broken.wav").write_bytes(b"not audio")
    return root


def test_scoring_writes_report_json_markdown_and_plots(run, tmp_path):
    out = tmp_path / "report"
    code = main(["--generated", str(run / "gen"), "--reference", str(run / "ref"), "--videos", str(run / "videos"),
                 "--out", str(out), "--metrics", "fad,kld,chroma,beat,av_align", "--embedder", "mel",
                 "--tagger", str(tmp_path / "no_such_tagger"), "--max-plots", "1", "--fad-bootstrap", "20"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    ours, other = report["systems"]["ours"]["aggregate"], report["systems"]["no_motion"]["aggregate"]
    assert ours["av_align"]["mean"] > 0.8 > 0.2 > other["av_align"]["mean"]
    assert ours["chroma_cosine"]["mean"] > other["chroma_cosine"]["mean"]
    assert ours["fad_mel"]["mean"] < other["fad_mel"]["mean"]
    assert ours["kld_ref_gen"]["not_computed"].startswith("not computed: tagger")
    assert set(report["systems"]["ours"]["clips"]) == {"a", "b"} and "reference" in report["systems"]
    assert any("broken" in line for line in report["skipped"])
    markdown = (out / "report.md").read_text()
    assert "| ours |" in markdown and "| no_motion |" in markdown and "not computed" in markdown
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"clip_a.png", "metric_av_align.png", "metric_fad_mel.png", "metric_bhs.png"} <= plots
    assert "clip_b.png" not in plots and not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("args, message", [
    (["--generated", "/no/such/dir"], "does not exist"),
    (["--generated", "{run}/gen", "--metrics", "fad,bogus", "--reference", "{run}/ref"], "unknown metric 'bogus'"),
    (["--generated", "{run}/gen", "--metrics", "chroma"], "needs --reference"),
    (["--generated", "{run}/videos"], "no .wav files"),
    (["--generated", "{run}/gen", "--reference", "{run}/videos"], "no generated clip has a reference"),
])
def test_bad_inputs_give_one_line_errors(run, tmp_path, capsys, args, message):
    args = [a.format(run=run) for a in args] + ["--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_command_line_errors_exit_non_zero_without_traceback(tmp_path, capsys):
    done = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--generated", "/no/such/dir", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for argv in (["--generated", str(tmp_path)], ["--generated", ".", "--out", "o", "--embedder", "nope"],
                 ["generate", "--model", "m", "--out", "o"],
                 ["generate", "--model", "m", "--dataset", "d", "--out", "o", "--metrics", "av_align", "--bogus"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


class _FakeFeatures:
    def __init__(self, events: list[float], motion: bool = True):
        self.events, self.motion = events, motion

    def without_motion(self) -> "_FakeFeatures":
        return _FakeFeatures(self.events, motion=False)


class _FakeVideoToMusic:
    """Stands in for model.v2m.VideoToMusic (same API): clicks on the events when it sees motion."""

    sample_rate = 16000
    calls: list[tuple] = []
    prompts: list[tuple] = []  # (prompt, text guidance scale) per generate call
    text_conditioner = None  # no text encoder

    @classmethod
    def from_pretrained(cls, name: str, **placement) -> "_FakeVideoToMusic":
        return cls()

    def eval(self) -> "_FakeVideoToMusic":
        return self

    def extract_features(self, video_path: str, max_seconds: float | None = None) -> _FakeFeatures:
        return _FakeFeatures(EVENTS[Path(video_path).stem])

    def generate(self, features, seconds, seed, guidance_scale=None, unconditional=False, prompt=None,
                 text_guidance_scale=None) -> torch.Tensor:
        feats = features[0]
        self.prompts.append((prompt, text_guidance_scale))
        self.calls.append((feats.events[0], seed, seconds, feats.motion, unconditional))
        times = feats.events if feats.motion and not unconditional else [e + 0.25 for e in feats.events]
        return torch.from_numpy(click_track(times, seconds, self.sample_rate, seed=seed))[None]


@pytest.fixture
def dataset(run, tmp_path) -> Path:
    from datasets import Dataset, DatasetDict

    from data.schema import write_schema_file

    root = tmp_path / "dataset"
    rows = {"id": list(EVENTS), "video_id": list(EVENTS), "duration": [4.0] * len(EVENTS),
            "video_path": [f"clips/{c}.mp4" for c in EVENTS], "music_path": [f"music/{c}.wav" for c in EVENTS]}
    DatasetDict({"test": Dataset.from_dict(rows)}).save_to_disk(str(root))
    write_schema_file(root, "synthetic")
    for clip in EVENTS:
        (root / "clips").mkdir(exist_ok=True)
        (root / "clips" / f"{clip}.mp4").write_bytes((run / "videos" / f"{clip}.mp4").read_bytes())
        write_wav(root / "music" / f"{clip}.wav", _music(EVENTS[clip], [60, 64, 67]))
    return root


def test_generate_runs_every_system_with_the_same_seeds_then_scores(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "model.v2m", types.SimpleNamespace(VideoToMusic=_FakeVideoToMusic))
    _FakeVideoToMusic.calls = []
    out = tmp_path / "gen"
    code = main(["generate", "--model", "fake", "--dataset", str(dataset), "--split", "test", "--out", str(out),
                 "--seconds", "3", "--seed", "5", "--metrics", "beat,av_align", "--max-plots", "0"])
    assert code == 0
    seeds = {(first, seed, seconds) for first, seed, seconds, _, _ in _FakeVideoToMusic.calls}
    assert seeds == {(EVENTS["a"][0], 5, 3.0), (EVENTS["b"][0], 6, 3.0)}  # clip i: seed + i for every system
    assert sorted(c[3:] for c in _FakeVideoToMusic.calls if c[1] == 5) == [(False, False), (True, False),
                                                                          (True, True)]
    import soundfile as sf
    assert sf.info(str(out / "reference" / "a.wav")).duration == pytest.approx(3.0)
    assert (out / "videos" / "b.mp4").exists() and (out / "unconditional" / "b.wav").exists()
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["systems"]) == {"ours", "no_motion", "unconditional", "reference"}
    assert report["systems"]["ours"]["aggregate"]["av_align"]["mean"] > 0.8
    assert json.loads((out / "manifest.json").read_text())["clips"]["b"]["seed"] == 6


def test_generate_resumes_only_with_the_same_model_and_settings(dataset, tmp_path, monkeypatch, capsys):
    from eval import model_identity

    monkeypatch.setitem(sys.modules, "model.v2m", types.SimpleNamespace(VideoToMusic=_FakeVideoToMusic))
    out = tmp_path / "gen"
    argv = ["generate", "--model", "fake", "--dataset", str(dataset), "--out", str(out), "--seconds", "3",
            "--systems", "ours", "--metrics", "beat", "--max-plots", "0"]
    assert main(argv) == 0
    (out / "my_notes.txt").write_text("mine")
    before = (out / "ours" / "a.wav").read_bytes()
    assert main(argv + ["--seed", "9"]) == 2  # other seeds: the old WAVs must not be passed off as these
    assert "other settings (seed)" in capsys.readouterr().err
    assert (out / "ours" / "a.wav").read_bytes() == before
    _FakeVideoToMusic.calls = []
    assert main(argv + ["--seed", "9", "--overwrite"]) == 0
    assert {c[1] for c in _FakeVideoToMusic.calls} == {9, 10} and (out / "my_notes.txt").read_text() == "mine"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"one")
    first = model_identity(str(folder))
    (folder / "model.safetensors").write_bytes(b"two")  # retrained in place: another model
    assert model_identity(str(folder)) != first and model_identity("org/name") == "org/name"


def test_generate_with_a_prompt_passes_it_to_every_conditioned_system(dataset, tmp_path, monkeypatch, capsys):
    """Issue 15: eval.py generate --prompt; the unconditional system ignores it, a model without text refuses it."""

    class _TextFake(_FakeVideoToMusic):
        text_conditioner = object()

    monkeypatch.setitem(sys.modules, "model.v2m", types.SimpleNamespace(VideoToMusic=_TextFake))
    _FakeVideoToMusic.prompts = []
    out = tmp_path / "gen"
    argv = ["generate", "--model", "fake", "--dataset", str(dataset), "--out", str(out), "--seconds", "3",
            "--systems", "ours,unconditional", "--metrics", "beat", "--max-plots", "0"]
    assert main(argv + ["--prompt", "calm piano", "--text-guidance-scale", "5"]) == 0
    assert _FakeVideoToMusic.prompts == [("calm piano", 5.0), (None, None)] * 2
    assert json.loads((out / "manifest.json").read_text())["clips"]["a"]["prompt"] == "calm piano"
    assert main(argv + ["--prompt", "loud drums"]) == 2  # other prompt: the old WAVs are not these
    assert "other settings" in capsys.readouterr().err
    assert main(argv + ["--prompt", "calm piano", "--text-guidance-scale", "0"]) == 2  # 0 is a setting too
    assert "other settings" in capsys.readouterr().err
    _FakeVideoToMusic.prompts = []
    assert main(argv + ["--caption-prompts", "--out", str(tmp_path / "captions")]) == 0
    assert _FakeVideoToMusic.prompts == [(None, None)] * 4  # these rows have no caption: video only
    assert main(argv + ["--prompt", "  ", "--out", str(tmp_path / "blank")]) == 2
    assert "--prompt is empty" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "model.v2m", types.SimpleNamespace(VideoToMusic=_FakeVideoToMusic))
    assert main(argv + ["--prompt", "calm piano", "--out", str(tmp_path / "no_text")]) == 2
    err = capsys.readouterr().err.strip()
    assert "need a model with a text encoder" in err and len(err.splitlines()) == 1


def test_a_metric_undefined_for_a_clip_is_reported_with_its_reason_not_as_a_number(tmp_path):
    """A set scored against itself: 1.0 chroma where the music has pitch; a silent clip is left out of the mean
    (audiocraft's formula gave it 0.0, so the set came out 0.667 against itself)."""
    for folder in ("gen", "ref"):
        for clip, notes in (("a", [60, 64, 67]), ("b", [62, 65, 69])):
            write_wav(tmp_path / folder / f"{clip}.wav", _music(EVENTS[clip], notes))
        write_wav(tmp_path / folder / "silent.wav", np.zeros(4 * 32000, np.float32))
    out = tmp_path / "report"
    assert main(["--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"), "--out", str(out),
                 "--metrics", "chroma,beat", "--max-plots", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    system = next(iter(report["systems"].values()))
    assert system["aggregate"]["chroma_cosine"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert system["aggregate"]["chroma_cosine"]["n"] == 2 and system["clips"]["silent"]["chroma_cosine"] is None
    assert "silent" in next(iter(system["undefined"]["chroma_cosine"]["reasons"]))
    assert system["undefined"]["bhs"]["clips"] == ["silent"]
    assert "undefined for 1 clip(s), left out of the mean" in (out / "report.md").read_text()
