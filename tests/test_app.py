"""The web page (app.py) on the default model: bad uploads, several clients at once, and a real browser.

One server for the whole file, in this process on a free port of 127.0.0.1, with its own gradio folder and its own
temporary folder (``tempfile.tempdir``), so "nothing is left behind" can be checked; it is always shut down.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

import app
from tests.conftest import ROOT, write_video
from tests.test_infer import _audio_only, _truncated
from tools import load_test_app as load_test

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), "/usr/bin/chromedriver"
SETTINGS = app.PageSettings(max_video_seconds=12.0, max_upload_mb=1.0)  # the example (10 s, 0.2 MB) fits


@dataclass
class Page:
    url: str
    model: object
    demo: object
    gradio_dir: Path  # uploads and results
    temp_dir: Path  # the process's temporary folder while the page runs


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from model.v2m import VideoToMusic

    root = tmp_path_factory.mktemp("app")
    (root / "tmp").mkdir()
    saved_env, saved_tempdir = os.environ.get("GRADIO_TEMP_DIR"), tempfile.tempdir
    tempfile.tempdir = str(root / "tmp")
    model = VideoToMusic.from_pretrained("default").eval()
    try:
        with load_test.serving(model, SETTINGS, root / "gradio") as (demo, url):
            yield Page(url, model, demo, root / "gradio", root / "tmp")
    finally:
        tempfile.tempdir = saved_tempdir
        os.environ.pop("GRADIO_TEMP_DIR") if saved_env is None else os.environ.update(GRADIO_TEMP_DIR=saved_env)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def left_by_requests(page: Page, kept_uploads: tuple[str, ...] = ()) -> list[Path]:
    """Files of failed or unfinished requests: anything but the example's copy, delivered results, the uploads of
    answered requests (the page still shows them) and gradio's own bookkeeping (``vibe_edit_history``)."""
    delivered = ("_with_music.mp4", "_music.wav", "_music.png")
    return [p for p in files_under(page.gradio_dir)
            if p.name not in ("example.mp4", *kept_uploads) and "vibe_edit_history" not in p.parts
            and not ("soundtracks" in p.parts and p.name.endswith(delivered))]


def cli_line(video: Path, capsys, monkeypatch) -> str:
    """The one line ``infer.py --video NAME`` prints for ``video``, run from its folder."""
    import infer

    monkeypatch.chdir(video.parent)
    with pytest.raises(SystemExit) as exit_status:
        infer.main(["--video", video.name, "--out", "out.mp4", "--config", "tiny"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_status.value.code == 2 and len(lines) == 1
    return lines[0]


def page_error(page: Page, video: Path, downloads: Path) -> str:
    client = load_test.client_for(page.url, downloads)
    try:
        load_test.page_request(client, video, 0, 12.0).result(timeout=120)
    except Exception as error:  # noqa: BLE001 - the refusal is what is tested
        return " ".join(str(error).split())
    finally:
        client.close()
    pytest.fail(f"{video.name} was accepted")


BAD_UPLOADS = {
    "notes.mp4": lambda p, t: (p.write_text("just text, not a video\n" * 20), p)[1],
    "empty.mp4": lambda p, t: (p.write_bytes(b""), p)[1],
    "half.mp4": lambda p, t: _truncated(p, t),
    "sound.mp4": lambda p, t: _audio_only(p),
}


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_a_bad_upload_gets_the_cli_message_and_leaves_nothing(page, tmp_path, capsys, monkeypatch, name):
    video = BAD_UPLOADS[name](tmp_path / name, tmp_path)
    expected = cli_line(video, capsys, monkeypatch)
    assert page_error(page, video, tmp_path / "downloads") == expected
    assert left_by_requests(page) == [] and files_under(page.temp_dir) == []


def test_a_video_over_the_page_limits_is_refused_with_one_line(page, tmp_path):
    long = write_video(tmp_path / "long.mp4", seconds=13.0, fps=4, size=(32, 32))
    assert page_error(page, long, tmp_path / "downloads") == (
        "error: long.mp4: the video is 13.0 s long, longer than this page takes (12 s); run infer.py for longer "
        "videos")
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(1_500_000))  # over max_upload_mb: refused before it is sent (the browser and
    assert "exceeds the maximum file size" in page_error(page, big, tmp_path / "downloads")  # gradio_client)
    import httpx  # and by the server, for anything that sends it anyway

    answer = httpx.post(f"{page.url}gradio_api/upload", files={"files": ("big.mp4", big.read_bytes())}, timeout=30)
    assert answer.status_code == 413 and "maximum allowed size" in answer.text
    assert left_by_requests(page) == [] and files_under(page.temp_dir) == []


def test_several_clients_at_once_each_get_the_music_of_their_own_video(page, tmp_path):
    clips = [(load_test.cut_video(ROOT / "examples" / "example.mp4", s, tmp_path / f"clip{i}.mp4"), s, 7 + i)
             for i, s in enumerate([1.0, 1.5, 2.0])]
    answers = load_test.run_clients(page.url, clips, tmp_path, timeout=240)
    load_test.verify(page.model, clips, answers, tmp_path)  # the same music as a direct call, sample for sample
    summary = load_test.summarise(answers)
    load_test.print_answers(answers, summary)
    assert summary["answered"] == summary["right"] == 3, answers
    assert all(a.wait is not None and a.wait >= 0 for a in answers)
    assert left_by_requests(page, kept_uploads=tuple(clip.name for clip, _, _ in clips)) == []
    assert files_under(page.temp_dir) == []


def chromium(window: tuple[int, int] = (1280, 1150)):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={window[0]},{window[1]}", "--mute-audio"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def upload(driver, video: Path) -> None:
    """Put ``video`` into the page's video input, clearing what it held."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    for button in driver.find_elements(By.CSS_SELECTOR, "#video-in button[aria-label='Clear']"):
        button.click()
    field = WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.CSS_SELECTOR,
                                                                               "#video-in input[type=file]")))
    field.send_keys(str(video))


def change_one_part(driver, screenshot: Path) -> str:
    """Open "Change one part of the music", take the result above, make 3-7 s anew; returns the edit's summary."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.XPATH, "//*[@id='edit']//*[contains(text(), 'Change one part of the music')]").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "reuse").is_displayed())
    driver.find_element(By.ID, "reuse").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#edit-video-in video[src]"))
    for field, value in (("edit-start", "3"), ("edit-end", "7")):
        box = driver.find_element(By.CSS_SELECTOR, f"#{field} input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value, Keys.TAB)
    time.sleep(0.5)
    driver.find_element(By.ID, "regenerate").click()
    WebDriverWait(driver, 240).until(lambda d: "changed" in d.find_element(By.ID, "edit-summary").text)
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#edit-video-out video[src]"))
    driver.set_window_size(1280, driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)") + 150)
    driver.execute_script("window.scrollTo(0, 0)")  # the whole page, the panel open
    time.sleep(1.0)
    driver.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    return " ".join(driver.find_element(By.ID, "edit-summary").text.split())


@pytest.mark.skipif(CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
                    reason="needs Debian's chromium and chromium-driver (./setup.sh installs them)")
def test_in_a_real_browser_the_example_gets_music_and_a_bad_upload_its_message(page, tmp_path, capsys,
                                                                               monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.mp4"
    bad.write_text("just text, not a video\n" * 20)
    expected = cli_line(bad, capsys, monkeypatch)
    driver = chromium()
    try:
        driver.get(page.url)
        upload(driver, bad)
        driver.find_element(By.ID, "generate").click()
        toasts = WebDriverWait(driver, 60).until(lambda d: [t.text for t in d.find_elements(
            By.CSS_SELECTOR, "[data-testid='toast-text']") if t.text.startswith("error:")])
        assert " ".join(toasts[0].split()) == expected
        for close in driver.find_elements(By.CSS_SELECTOR, ".toast-close"):
            close.click()

        upload(driver, ROOT / "examples" / "example.mp4")  # the page is still usable after the error
        # the default model has a text encoder (issue 15), so the page shows the prompt box
        driver.find_element(By.CSS_SELECTOR, "#prompt textarea, #prompt input").send_keys("bright piano, fast")
        time.sleep(1.0)  # the upload finishes before the click
        driver.find_element(By.ID, "generate").click()
        picture = WebDriverWait(driver, 240).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#picture img[src]"))
        video_url = driver.find_element(By.CSS_SELECTOR, "#video-out video").get_attribute("src")
        summary = driver.find_element(By.ID, "summary").text
        driver.save_screenshot(str(tmp_path / "app.png"))
        print(f"screenshot: {tmp_path / 'app.png'}")
        assert picture and "10.0 s of music" in summary and 'prompt "bright piano, fast"' in summary
        edit_summary = change_one_part(driver, tmp_path / "app_edit.png")
    finally:
        driver.quit()
    assert re.search(r"new music from 3\.00 s, back to example_music\.wav on its beat at [\d.]+ s over [\d.]+ s; "
                     r"changed [\d.]+-[\d.]+ s", edit_summary), edit_summary
    assert video_url.startswith(page.url)  # served by the page itself, on 127.0.0.1
    out = tmp_path / "with_music.mp4"
    with urllib.request.urlopen(video_url, timeout=30) as response:  # noqa: S310 - 127.0.0.1, checked above
        out.write_bytes(response.read())
    with av.open(str(out)) as container:
        durations = {s.type: float(s.duration * s.time_base) for s in container.streams}
    assert set(durations) == {"video", "audio"}
    assert durations["video"] == pytest.approx(10.0, abs=0.05)
    assert durations["audio"] == pytest.approx(durations["video"], abs=0.1)


@pytest.mark.parametrize("args, message", [(["--concurrency", "0"], "--concurrency must be >= 1"),
                                           (["--port", "70000"], "--port must be in 1..65535"),
                                           (["--max-video-seconds", "0"], "--max-video-seconds must be > 0")])
def test_bad_server_options(args, message, capsys):
    with pytest.raises(SystemExit) as exit_status:
        app.main(args)
    assert exit_status.value.code == 2 and f"error: {message}" in capsys.readouterr().err


def test_the_page_passes_a_prompt_to_a_text_model_and_refuses_it_for_a_video_only_one(tmp_path, monkeypatch):
    """The prompt box (issue 15): its text reaches generation (same seed, other music), blank means none, and a model
    without a text encoder answers with the CLI's line. Called directly, as gradio calls it, without a server."""
    import gradio as gr

    from media.audio import read_audio
    from model.config import load_config
    from model.v2m import VideoToMusic

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    video = write_video(tmp_path / "clip.mp4", seconds=1.0, size=(64, 48))
    text_model = VideoToMusic.from_config(load_config("tiny", [
        "text.enabled=true", "text.random_init={vocab_size: 384, d_model: 16, d_kv: 8, d_ff: 32, num_layers: 1, "
        "num_heads: 2}"])).eval()
    jobs = app.Soundtracks(text_model, SETTINGS, tmp_path / "results")

    def music(prompt):
        *_, (mp4, wav, _, summary) = jobs.generate(str(video), 3, 3.0, 12.0, 30.0, 5.0, prompt=prompt)
        return read_audio(wav)[0], summary

    plain, plain_summary = music(None)
    blank, _ = music("   ")
    prompted, summary = music("calm piano, slow")
    assert (blank == plain).all() and not (prompted.shape == plain.shape and (prompted == plain).all())
    assert 'prompt "calm piano, slow"' in summary and "prompt" not in plain_summary
    video_only = app.Soundtracks(VideoToMusic.from_config(load_config("tiny")).eval(), SETTINGS, tmp_path / "r2")
    with pytest.raises(gr.Error, match="no text encoder"):
        list(video_only.generate(str(video), 3, 3.0, 12.0, 30.0, 5.0, prompt="calm piano"))
    assert not list((tmp_path / "r2").glob("request-*"))  # nothing left of the refused request


def test_stopping_the_page_leaves_no_file_behind(page):
    page.demo.close()  # what Ctrl-C does; app.py then removes its whole folder
    assert [p for p in files_under(page.gradio_dir) if p.name != "example.mp4"] == []
    assert files_under(page.temp_dir) == []
