"""The web page's "change one part of the music" (app.py on ``infer.regenerate_soundtrack``), through gradio_client.

The server is test_app.py's (its ``page`` fixture: the default model on a free port of 127.0.0.1, its own gradio
and temporary folders), started once for this file.
"""
from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT
from tests.test_app import files_under, left_by_requests, page  # noqa: F401 - page is the fixture
from tools import load_test_app as load_test

# uploads of this file's tests that are usable files: the page keeps them (it still shows them); anything else left
# in its folders is a leak
KEPT = ("clip.mp4", "clip_with_music.mp4", "clip_music.wav", "short.mp4", "short_music.wav")


def regenerate_request(page, video: Path, music: Path, start: float, end: float, downloads: Path, seed: int = 1):
    from gradio_client import handle_file

    client = load_test.client_for(page.url, downloads)
    try:
        return client.submit(handle_file(str(video)), handle_file(str(music)), start, end, seed, 3.0, 30.0, 5.0,
                             api_name="/regenerate").result(timeout=240)
    finally:
        client.close()


def refusal(page, video: Path, music: Path, start: float, end: float, downloads: Path) -> str:
    try:
        regenerate_request(page, video, music, start, end, downloads)
    except Exception as error:  # noqa: BLE001 - the refusal is what is tested
        return " ".join(str(error).split())
    pytest.fail(f"{music.name} {start}:{end} was accepted")


def cli_line(video: Path, music: Path, start: float, end: float, capsys, monkeypatch) -> str:
    """The one line ``infer.py --video V --music M --regenerate START:END`` prints, run from their folder."""
    import infer

    monkeypatch.chdir(video.parent)
    with pytest.raises(SystemExit) as exit_status:
        infer.main(["--video", video.name, "--music", music.name, f"--regenerate={start:g}:{end:g}",
                    "--out", "out.mp4", "--config", "tiny"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_status.value.code == 2 and len(lines) == 1
    return lines[0]


def test_a_range_of_the_pages_own_music_is_made_anew_and_the_rest_kept_sample_for_sample(page, tmp_path):
    from model.long_form import samples_per_frame
    from model.regenerate import plan_regeneration

    clip = load_test.cut_video(ROOT / "examples" / "example.mp4", 4.0, tmp_path / "clip.mp4")
    client = load_test.client_for(page.url, tmp_path / "first")
    try:
        made_video, made_wav, _, _ = load_test.page_request(client, clip, 3, 12.0).result(timeout=240)
    finally:
        client.close()
    video, wav, summary = regenerate_request(page, Path(made_video), Path(made_wav), 1.5, 3.0, tmp_path / "edit")

    original, rate = sf.read(made_wav, dtype="float32")
    edited, edited_rate = sf.read(wav, dtype="float32")
    assert edited_rate == rate == page.model.sample_rate and edited.shape == original.shape
    assert sf.info(wav).subtype == sf.info(made_wav).subtype  # the format it was given, not converted
    plan = plan_regeneration(original, rate, samples_per_frame(page.model), 1.5, 3.0,
                             round(5.0 * page.model.frame_rate))
    a, b = plan.changed
    assert re.search(rf"changed {a / rate:.2f}-{b / rate:.2f} s \(samples {a}-{b}\)", summary), summary
    assert f"new music from {plan.start / rate:.2f} s" in summary and f"at {plan.end_join / rate:.2f} s" in summary
    assert np.array_equal(edited[:a], original[:a]) and np.array_equal(edited[b:], original[b:])
    assert not np.array_equal(edited[a:b], original[a:b])
    with av.open(video) as container:
        durations = {s.type: float(s.duration * s.time_base) for s in container.streams}
    assert set(durations) == {"video", "audio"}
    assert durations["video"] == pytest.approx(4.0, abs=0.05)
    assert durations["audio"] == pytest.approx(len(edited) / rate, abs=0.05)
    assert {clip.name, Path(made_video).name, Path(made_wav).name} <= set(KEPT)
    assert left_by_requests(page, kept_uploads=KEPT) == []
    assert files_under(page.temp_dir) == []


@pytest.fixture
def video_and_music(tmp_path):
    from media.audio import write_wav

    video = load_test.cut_video(ROOT / "examples" / "example.mp4", 4.0, tmp_path / "short.mp4")
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(4 * 32000) / 32000)
    music = tmp_path / "short_music.wav"
    write_wav(music, tone.astype(np.float32), 32000)
    return video, music


@pytest.mark.parametrize("start, end", [(2.0, 1.0), (1.0, 9.0), (-1.0, 2.0)],
                         ids=["end-before-start", "past-the-music", "negative-start"])
def test_a_bad_range_gets_the_cli_line_and_leaves_nothing(page, tmp_path, capsys, monkeypatch, video_and_music,
                                                          start, end):
    video, music = video_and_music
    expected = cli_line(video, music, start, end, capsys, monkeypatch)
    assert refusal(page, video, music, start, end, tmp_path / "downloads") == expected
    # both files stay: the page still shows them, and a corrected range uses them again
    assert {video.name, music.name} <= set(KEPT) and left_by_requests(page, kept_uploads=KEPT) == []
    assert files_under(page.temp_dir) == []


def test_a_bad_music_file_gets_the_cli_line_and_is_deleted(page, tmp_path, capsys, monkeypatch, video_and_music):
    video, _ = video_and_music
    music = tmp_path / "notes.wav"
    music.write_text("not music\n" * 50)
    expected = cli_line(video, music, 1.0, 2.0, capsys, monkeypatch)
    assert refusal(page, video, music, 1.0, 2.0, tmp_path / "downloads") == expected
    assert left_by_requests(page, kept_uploads=KEPT) == []  # notes.wav is gone
    assert files_under(page.temp_dir) == []


def test_both_jobs_share_the_queue_and_its_concurrency(page):
    jobs = {fn.api_name: fn for fn in page.demo.fns.values() if fn.api_name in ("generate", "regenerate")}
    assert len(jobs) == 2 and jobs["generate"].concurrency_id == jobs["regenerate"].concurrency_id
    assert {fn.concurrency_limit for fn in jobs.values()} == {"default"}  # --concurrency, for both together


def test_stopping_the_page_leaves_no_file_behind(page):
    page.demo.close()  # what Ctrl-C does; app.py then removes its whole folder
    assert [p for p in files_under(page.gradio_dir) if p.name != "example.mp4"] == []
    assert files_under(page.temp_dir) == []
