"""Curation (data.curate): rejection reasons, outputs, splits, resume after SIGKILL, manifests, shards and merge.

Everything runs offline on tiny generated videos (64x64, 3 s) with the tiny preset's random CLIP. With random
weights, different frames still embed close together (mean pairwise similarity about 0.9, at most 0.95 over
60 seeds of these videos with 10 frames compared), so the static-video limit is 0.99 in these tests; a truly
static video scores 1.0, so the test stays meaningful.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from data.curate import REASONS, ClipOptions, clip_windows, iso_structure_problem
from data.curate import main
from data.schema import SPLITS, check_schema, clip_features
from data.splits import split_of
from media.video import probe_video
from model.config import SemanticConfig

REPO = Path(__file__).resolve().parent.parent
FAST = ["--config", "tiny", "--clip-seconds", "2", "--keep-vocals", "--max-frame-similarity", "0.99",
        "--similarity-fps", "5", "--no-progress"]
GOOD = ("good0", "good1", "good2", "good3", "good4")
EXPECTED = {
    "empty": "empty_file", "notavideo": "unreadable", "audioonly": "no_video", "noaudio": "no_audio",
    "short": "too_short", "static": "static_video", "quiet": "silent_music", "zcopy": "duplicate",
    "truncated_index": "truncated", "truncated_faststart": "truncated", "truncated_mkv": "truncated",
}


# ---------------------------------------------------------------------------------------------------- media


def _frame(k: int, fps: int, size: int, seed: int, static: bool) -> np.ndarray:
    """A new random scene every 0.2 s with a moving bar; or one fixed random image when ``static``."""
    rng = np.random.default_rng((seed, 0 if static else k * 5 // fps))
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8) if static else np.empty((size, size, 3), np.uint8)
    if not static:
        image[:] = rng.integers(0, 255, 3)
        image[:, (k * 3) % size:(k * 3) % size + 8] = rng.integers(0, 255, 3)
        image[size // 4:size // 2, size // 4:size // 2] = rng.integers(0, 255, 3)
    return image


def _melody(seconds: float, rate: int, amplitude: float) -> np.ndarray:
    """A stereo arpeggio of sines, float32 [2, S]: music-ish audio with a clear level."""
    t = np.arange(round(seconds * rate)) / rate
    notes = 220.0 * 2 ** (np.array([0, 4, 7, 12, 7, 4]) / 12)
    phase = 2 * np.pi * np.cumsum(notes[(t * 4).astype(int) % len(notes)]) / rate
    mono = (amplitude * np.sin(phase)).astype(np.float32)
    return np.stack([mono, mono])


def make_video(path: Path, seconds: float = 3.0, seed: int = 0, audio: str | None = "melody", video: bool = True,
               static: bool = False, faststart: bool = False, fps: int = 10, size: int = 64, rate: int = 44_100) -> Path:
    """Write a small H.264 + AAC file with PyAV (mp4, or Matroska for a ``.mkv`` path)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="matroska" if path.suffix == ".mkv" else "mp4", options=options) as container:
        streams = []  # every stream is added before the first packet is muxed
        if video:
            picture = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
            picture.width, picture.height, picture.pix_fmt = size, size, "yuv420p"
            picture.codec_context.thread_count = 1
            frames = [av.VideoFrame.from_ndarray(_frame(k, fps, size, seed, static), format="rgb24")
                      for k in range(round(seconds * fps))]
            for k, frame in enumerate(frames):
                frame.pts, frame.time_base = k, Fraction(1, fps)
            streams.append((picture, frames))
        if audio:
            sound = container.add_stream("aac", rate=rate, layout="stereo")
            wave = _melody(seconds, rate, {"melody": 0.3, "quiet": 3e-4}[audio])
            frames = [av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, s:s + 1024]), format="fltp", layout="stereo")
                      for s in range(0, wave.shape[1], 1024)]
            for k, frame in enumerate(frames):
                frame.sample_rate, frame.pts, frame.time_base = rate, k * 1024, Fraction(1, rate)
            streams.append((sound, frames))
        for stream, frames in streams:
            for frame in frames:
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    return path


def make_good_videos(folder: Path, names=GOOD, seconds: float = 3.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        make_video(folder / f"{name}.mp4", seconds, seed=seed)
    return folder


def _cut(path: Path, fraction: float, target: Path) -> None:
    data = path.read_bytes()
    target.write_bytes(data[:int(len(data) * fraction)])
    path.unlink()


def make_bad_videos(folder: Path) -> None:
    """One file per rejection reason in ``EXPECTED``."""
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notavideo.mp4").write_text("this is a text file with a video's name\n")
    make_video(folder / "audioonly.mp4", video=False)
    make_video(folder / "noaudio.mp4", audio=None)
    make_video(folder / "short.mp4", seconds=1.0)
    make_video(folder / "static.mp4", static=True)
    make_video(folder / "quiet.mp4", audio="quiet", seed=11)
    shutil.copyfile(folder / "good0.mp4", folder / "zcopy.mp4")
    _cut(make_video(folder / "full1.mp4", seed=21), 0.5, folder / "truncated_index.mp4")  # index (moov) at the end: lost
    _cut(make_video(folder / "full2.mp4", seed=22, faststart=True), 0.6, folder / "truncated_faststart.mp4")
    _cut(make_video(folder / "full3.mkv", seed=23), 0.5, folder / "truncated_mkv.mkv")  # no box structure to read


# ---------------------------------------------------------------------------------------------------- helpers


def run(argv: list[str]) -> int:
    return main([str(a) for a in argv])


def stem_of(entry: dict) -> str:
    return Path(entry["path"]).stem


def read_rejected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]


def snapshot(out: Path) -> dict:
    """Everything a user sees of a dataset, to compare two runs."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(out))
    return {"rows": {split: dataset[split].to_list() for split in SPLITS},
            "rejected": (out / "rejected.jsonl").read_text(),
            "music": {p.name: p.read_bytes() for p in sorted((out / "music").iterdir())},
            "clips": sorted(p.name for p in (out / "clips").iterdir()),
            "records": sorted(p.name for p in (out / "records").iterdir())}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = make_good_videos(tmp_path_factory.mktemp("videos"))
    make_bad_videos(folder)
    return folder


@pytest.fixture(scope="module")
def curated(inputs, tmp_path_factory) -> Path:
    """An uninterrupted single-process run over every input (read-only for the tests)."""
    out = tmp_path_factory.mktemp("curated") / "dataset"
    assert run(["--input", inputs, "--out", out, *FAST]) == 0
    return out


# ---------------------------------------------------------------------------------------------------- tests


def test_every_bad_file_is_rejected_with_its_reason(curated):
    rejected = read_rejected(curated)
    assert {stem_of(e): e["reason"] for e in rejected} == EXPECTED
    assert len(rejected) == len(EXPECTED)  # one entry per file, none twice
    assert all(e["reason"] in REASONS and e["message"] and e["id"] for e in rejected)


def test_good_clips_are_written_in_the_schema(curated, capsys):
    from datasets import load_from_disk

    assert check_schema(curated)["source"] == "curate"
    dataset = load_from_disk(str(curated))
    assert set(dataset) == set(SPLITS)
    rows = [row for split in SPLITS for row in dataset[split]]
    assert sorted(row["id"].rsplit("-", 1)[0] for row in rows) == sorted(GOOD)
    for split in SPLITS:
        assert dataset[split].features == clip_features()
    for row in rows:
        assert (row["start"], row["duration"], row["title"], row["tags"]) == (0.0, 2.0, "", [])
        assert row["video_path"] == f"clips/{row['id']}.mp4" and row["music_path"] == f"music/{row['id']}.wav"
        info = sf.info(str(curated / row["music_path"]))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (32_000, 1, "PCM_16", 64_000)
        video = probe_video(curated / row["video_path"])
        assert abs(video.duration - 2.0) < 0.11 and (video.width, video.height) == (64, 64)
    assert not [p for p in curated.rglob("*") if ".partial." in p.name or p.name.endswith(".tmp")]


def test_music_keeps_the_melody_level(curated):
    """The 44.1 kHz stereo AAC source arrives as 32 kHz mono at about its original level (0.3 peak sine)."""
    audio, rate = sf.read(str(next((curated / "music").glob("good1-*.wav"))))
    assert rate == 32_000
    assert 0.15 < np.sqrt(np.mean(audio[3200:-3200] ** 2)) < 0.25  # sine RMS = 0.3 / sqrt(2) = 0.21


def test_splits_follow_video_ids_and_windows_stay_together(tmp_path):
    """Windows of one video share its split, and the split is the id's (data.splits), whatever else is in the run."""
    from datasets import load_from_disk

    folder = make_good_videos(tmp_path / "videos", names=("a", "b", "c", "d"), seconds=4.2)
    out = tmp_path / "windows"
    assert run(["--input", folder, "--out", out, *FAST, "--windows", "--splits", "0.5,0.25,0.25", "--seed", "3"]) == 0
    dataset = load_from_disk(str(out))
    seen = {}
    for split in SPLITS:
        for row in dataset[split]:
            assert row["id"] == f"{row['video_id']}_w{int(row['start'] // 2)}" and row["duration"] == 2.0
            assert split == split_of(row["video_id"], (0.5, 0.25, 0.25), 3)
            seen.setdefault(row["video_id"], set()).add(split)
    assert len(seen) == 4 and all(len(splits) == 1 for splits in seen.values())
    assert sum(len(dataset[s]) for s in SPLITS) == 8  # two whole 2 s windows in 4.2 s


def test_window_arithmetic():
    options = ClipOptions(SemanticConfig(), clip_seconds=30.0, windows=True)
    assert clip_windows("v", 95.0, options) == [("v_w0", 0.0), ("v_w1", 30.0), ("v_w2", 60.0)]
    assert clip_windows("v", 95.0, ClipOptions(SemanticConfig(), 30.0)) == [("v", 0.0)]
    assert len(clip_windows("v", 95.0, ClipOptions(SemanticConfig(), 30.0, windows=True, max_windows=2))) == 2


def test_resume_after_sigkill_gives_the_same_dataset(inputs, curated, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "data.curate", "--input", str(inputs), "--out", str(out), *FAST]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "records").is_dir() and any((out / "records").glob("*.json")):
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed part way"
    done_at_kill = len(list((out / "records").glob("*.json")))
    assert 1 <= done_at_kill < len(GOOD) + len(EXPECTED)
    assert run(["--input", inputs, "--out", out, *FAST]) == 0
    assert snapshot(out) == snapshot(curated)
    assert not [p for p in out.rglob("*") if ".partial." in p.name]


def test_an_existing_dataset_is_resumed_not_overwritten(curated, inputs, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(curated, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "music").iterdir()}
    assert run(["--input", inputs, "--out", out, *FAST]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "music").iterdir()} == before  # nothing redone
    assert "0 videos processed" in capsys.readouterr().out
    assert run(["--input", inputs, "--out", out, *FAST, "--clip-seconds", "1"]) == 2  # other settings: refused
    assert "--overwrite" in capsys.readouterr().err
    assert run(["--input", inputs, "--out", out, *FAST, "--clip-seconds", "1", "--overwrite"]) == 0
    assert sf.info(str(next((out / "music").glob("good0-*.wav")))).frames == 32_000


def test_manifest_paths_must_stay_inside_its_folder(inputs, tmp_path, capsys):
    from datasets import load_from_disk

    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copyfile(inputs / "good1.mp4", folder / "one.mp4")
    (folder / "manifest.csv").write_text("path,id,title,tags\none.mp4,clip-one,First,trailer;dark\n"
                                         f"../{inputs.name}/good2.mp4,,,\n")
    shutil.copytree(inputs, tmp_path / inputs.name, dirs_exist_ok=True)
    out = tmp_path / "out"
    assert run(["--input", folder / "manifest.csv", "--out", out, *FAST]) == 2
    error = capsys.readouterr().err.strip()
    assert "outside the manifest's folder" in error and "--allow-outside" in error and len(error.splitlines()) == 1
    assert run(["--input", folder / "manifest.csv", "--out", out, *FAST, "--allow-outside"]) == 0
    rows = {row["id"]: row for split in SPLITS for row in load_from_disk(str(out))[split]}
    assert rows["clip-one"]["title"] == "First" and rows["clip-one"]["tags"] == ["trailer", "dark"]
    assert len(rows) == 2


def test_jsonl_manifest(inputs, tmp_path):
    from datasets import load_from_disk

    folder = tmp_path / "project"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(inputs / "good3.mp4", folder / "sub" / "good3.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    lines = [{"path": "sub/good3.mp4", "id": "g3", "tags": ["a", "b"], "title": "Three"}, {"path": "empty.mp4"}]
    (folder / "list.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert run(["--input", folder / "list.jsonl", "--out", out, *FAST]) == 0
    dataset = load_from_disk(str(out))
    (row,) = [row for split in SPLITS for row in dataset[split]]
    assert (row["id"], row["title"], row["tags"]) == ("g3", "Three", ["a", "b"])
    assert [e["reason"] for e in read_rejected(out)] == ["empty_file"]


def test_shards_merge_into_the_same_dataset(inputs, curated, tmp_path):
    """Two machines' parts (one with two worker processes) merge into what one run makes."""
    parts = [tmp_path / "part0", tmp_path / "part1"]
    assert run(["--input", inputs, "--out", parts[0], *FAST, "--shard", "0/2", "--workers", "2"]) == 0
    assert run(["--input", inputs, "--out", parts[1], *FAST, "--shard", "1/2"]) == 0
    ids = [{p.stem for p in (part / "records").iterdir()} for part in parts]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    merged = tmp_path / "merged"
    assert run(["merge", "--out", merged, *parts, "--no-progress"]) == 0
    assert snapshot(merged) == snapshot(curated)


@pytest.mark.parametrize("argv, message", [
    (["--splits", "0.5,0.6,0.1"], "sum to 1"),
    (["--shard", "2/2"], "--shard"),
    (["--clip-seconds", "-3"], "--clip-seconds"),
    (["--workers", "0"], "--workers"),
    (["--config", "no-such-preset"], "no config"),
    (["--max-frame-similarity", "1.5"], "--max-frame-similarity"),
])
def test_bad_arguments_exit_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["--input", tmp_path, "--out", tmp_path / "out", "--no-progress", *argv])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m data.curate: error:") and message in last


def test_missing_input_and_missing_demucs_are_one_line_errors(inputs, tmp_path, capsys):
    assert run(["--input", tmp_path / "nope", "--out", tmp_path / "out", *FAST]) == 2
    assert "does not exist" in capsys.readouterr().err
    try:
        import demucs  # noqa: F401
        pytest.skip("Demucs is installed here")
    except ImportError:
        pass
    argv = [a for a in FAST if a != "--keep-vocals"]
    assert run(["--input", inputs, "--out", tmp_path / "out", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Demucs" in error and "--keep-vocals" in error


def test_no_traceback_from_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "data.curate", "--input", str(tmp_path), "--out", str(tmp_path / "o"),
                             "--splits", "1,1,1"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("python -m data.curate: error: --splits")


def test_iso_structure_check(inputs, tmp_path):
    assert iso_structure_problem(inputs / "good0.mp4") is None
    assert "cut off" in iso_structure_problem(inputs / "truncated_index.mp4")
    assert iso_structure_problem(inputs / "notavideo.mp4") is None  # not ISO media: left to the decoder


# ------------------------------------------------------------------------------- odd inputs (damaged, untrained)


def _damage_audio_packet(path: Path, from_end: int = 60) -> Path:
    """Flip the first bytes of one audio packet inside the first 2 s clip (FFmpeg refuses it, decodes the rest)."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size]
    data = bytearray(path.read_bytes())
    position, _ = packets[-from_end]
    data[position:position + 4] = bytes(b ^ 0xFF for b in data[position:position + 4])
    path.write_bytes(bytes(data))
    return path


def _one_record(out: Path) -> dict:
    (record,) = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    return record


def test_a_few_bad_audio_packets_are_tolerated_counted_and_limited(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _damage_audio_packet(make_video(folder / "damaged.mp4", seed=3))
    assert run(["--input", folder, "--out", tmp_path / "kept", *FAST]) == 0
    (clip,) = _one_record(tmp_path / "kept")["clips"]
    assert clip["stats"]["bad_audio_packets"] == 1 and 0 < clip["stats"]["lost_audio_seconds"] < 0.1
    assert run(["--input", folder, "--out", tmp_path / "strict", *FAST, "--max-bad-packets", "0"]) == 0
    (entry,) = read_rejected(tmp_path / "strict")
    assert entry["reason"] == "truncated" and "--max-bad-packets 0" in entry["message"]


def test_an_untrained_image_tower_judges_static_video_by_frame_differences(tmp_path):
    """With a random tower every picture embeds alike (CLIP similarity near 1), so the weight-free measure
    decides: a moving video passes at the default limits, a still one is rejected and the message says why."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "moving.mp4", seed=4)
    make_video(folder / "still.mp4", seed=5, static=True)
    argv = [a for a in FAST if a not in ("--max-frame-similarity", "0.99")]
    assert run(["--input", folder, "--out", tmp_path / "out", *argv]) == 0
    (entry,) = read_rejected(tmp_path / "out")
    assert stem_of(entry) == "still" and entry["reason"] == "static_video" and "untrained" in entry["message"]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("moving*.json")]
    assert record["clips"][0]["stats"]["frame_change"] > 0.01


def test_curation_defaults_to_the_default_model_settings(tmp_path):
    from data.curate.command import parse_args
    from model.config import load_config

    args = parse_args(["--input", str(tmp_path), "--out", str(tmp_path / "o")])
    assert args.semantic == load_config("demo").semantic and args.semantic.pretrained is None  # offline
    assert parse_args(["--input", str(tmp_path), "--out", str(tmp_path / "o"), "--config", "small"]
                      ).semantic.pretrained == "openai"


def test_out_of_memory_stops_the_run_instead_of_failing_every_clip(inputs, tmp_path, monkeypatch, capsys):
    import torch

    import data.curate.one_video as one_video

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(one_video, "_curate", exhausted)
    folder = tmp_path / "in"
    make_good_videos(folder, names=("good0", "good1"))
    assert run(["--input", folder, "--out", tmp_path / "out", *FAST]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "out of memory" in error[0]
    assert not list((tmp_path / "out" / "records").glob("*.json"))  # nothing recorded as a failed clip


def test_overwrite_deletes_only_what_curation_wrote(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train").mkdir()
    (out / "train" / "mine.txt").write_text("not curation's")
    assert run(["--input", inputs, "--out", out, *FAST]) == 2  # someone else's folder: refused, untouched
    assert "not empty" in capsys.readouterr().err and (out / "train" / "mine.txt").is_file()
    fresh = tmp_path / "fresh"
    folder = make_good_videos(tmp_path / "two", names=("good0", "good1"))
    assert run(["--input", folder, "--out", fresh, *FAST]) == 0
    (fresh / "notes").mkdir()
    (fresh / "notes" / "keep.txt").write_text("mine")
    assert run(["--input", folder, "--out", fresh, *FAST, "--clip-seconds", "1", "--overwrite"]) == 0
    assert (fresh / "notes" / "keep.txt").read_text() == "mine" and (fresh / "music").is_dir()
