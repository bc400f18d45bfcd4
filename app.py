"""A web page to try the model: upload a video (or take the bundled example), get it back with music; then, if
one part of that music should change, make that part anew and keep the rest.

    python app.py [--model DIR_OR_HUB_ID | --config PRESET] [--host 127.0.0.1] [--port 7860] [--concurrency 1]
                  [--queue-size 16] [--max-video-seconds 60] [--max-upload-mb 100] [--keep-minutes 60]

Why Gradio: it is how people in this field try a model first (MusicGen's, VidMuse's and MMAudio's demos are Gradio
pages), and it brings the queue, progress bars, uploads and a client for scripts (``gradio_client``).

Generation is ``infer.make_soundtrack``, the CLI's own code, on one model loaded at start; "change one part of the
music" is ``infer.regenerate_soundtrack`` (``infer.py --music --regenerate``). Requests of both kinds wait in one
queue (``--concurrency`` generations at a time, 1 by default). A bad upload or range is answered with the CLI's one-line
``error: ...`` message (``cli.user_error_line``), naming the file as the user called it. Every server run has its
own temporary folder (uploads, results), removed when it stops; a failed request leaves no file behind, and results
are deleted ``--keep-minutes`` after they were made.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check

from common.cli import OneLineParser, add_device_arguments, quiet_libraries, run_cli, user_error_line  # noqa: E402
from common.errors import UserError  # noqa: E402
from infer import MAX_WINDOW_SECONDS, load_model, make_soundtrack, regenerate_soundtrack, video_seconds  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent / "examples" / "example.mp4"
GENERATION = "generation"  # the concurrency group of both jobs: --concurrency counts them together
PICTURE_FLOW_WIDTH = 160  # motion peaks for the picture: flow on frames this wide (AV-Align's, rescaled; fast)
log = logging.getLogger("app")


@dataclass(frozen=True)
class PageSettings:
    """What the page accepts and how it serves; the page states each limit."""

    max_video_seconds: float = 60.0
    max_upload_mb: float = 100.0
    concurrency: int = 1  # generations at a time; the others wait in the queue
    queue_size: int = 16  # requests waiting at most; one more is told the queue is full
    keep_minutes: float = 60.0  # results are deleted this long after they were made


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description="Serve a web page that puts music on uploaded videos.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="trained model: a save_pretrained folder or a Hub repo id "
                                                        "(default: the project's default model)")
    source.add_argument("--config", default=None, help="an UNTRAINED model from a preset (tiny, small, medium)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    defaults = PageSettings()
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="generations at a time")
    parser.add_argument("--queue-size", type=int, default=defaults.queue_size, help="requests waiting at most")
    parser.add_argument("--max-video-seconds", type=float, default=defaults.max_video_seconds)
    parser.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb)
    parser.add_argument("--keep-minutes", type=float, default=defaults.keep_minutes,
                        help="delete results this long after they were made")
    add_device_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> PageSettings:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    for flag, value in (("--concurrency", args.concurrency), ("--queue-size", args.queue_size)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    for flag, value in (("--max-video-seconds", args.max_video_seconds), ("--max-upload-mb", args.max_upload_mb),
                        ("--keep-minutes", args.keep_minutes)):
        if not value > 0:
            raise UserError(f"{flag} must be > 0, got {value}")
    return PageSettings(args.max_video_seconds, args.max_upload_mb, args.concurrency, args.queue_size,
                        args.keep_minutes)


def check_upload(video: Path, settings: PageSettings) -> float:
    """The CLI's checks of a video plus the page's length limit; returns the video's length in seconds.

    The size limit is gradio's ``max_file_size``: a larger file is refused in the browser before it is sent, and
    by the server for API clients, so it never reaches this code.
    """
    seconds = video_seconds(video)
    if seconds > settings.max_video_seconds:
        raise UserError(f"{video}: the video is {seconds:.1f} s long, longer than this page takes "
                        f"({settings.max_video_seconds:g} s); run infer.py for longer videos")
    return seconds


def forget_upload(upload: Path) -> None:
    """Delete a refused upload from gradio's upload folder (never the bundled example, which the page reuses)."""
    import gradio as gr

    folder = Path(gr.utils.get_upload_folder()).resolve()
    path = upload.resolve()
    if folder not in path.parents or not path.is_file():
        return
    if path.stat().st_size == EXAMPLE.stat().st_size and path.read_bytes() == EXAMPLE.read_bytes():
        return
    path.unlink(missing_ok=True)
    if path.parent != folder and not any(path.parent.iterdir()):
        path.parent.rmdir()


def shown_line(error: BaseException, *uploads: Path | None) -> str:
    """The one line the page shows: the CLI's, with the server's upload paths replaced by the files' own names."""
    line = user_error_line(error) or f"error: unexpected {type(error).__name__} (the server log has the details)"
    for upload in filter(None, uploads):
        line = line.replace(str(upload), upload.name)
    return line


def page_error(line: str):
    """``gr.Error`` showing ``line``. The toast renders HTML, so ``&`` and ``<`` are escaped; nothing else is (``>``
    and quotes are plain text in HTML), so API clients read the CLI's line, ``>=`` included."""
    import gradio as gr

    return gr.Error(line.replace("&", "&amp;").replace("<", "&lt;"), duration=None, print_exception=False)


def draw_picture(path: Path, video: Path, music, sample_rate: int, clip: str, title: str) -> None:
    """Spectrogram of the music with the video's motion peaks and the music's onsets: the evaluation's per-clip
    plot (``scoring.report.plot_clip``) on this one clip; ``music`` float32 [samples] at ``sample_rate``."""
    from media.audio import resample
    from scoring.av_align import ONSET_SAMPLE_RATE, audio_onsets, video_motion_peaks
    from scoring.report import plot_clip

    wav = resample(music, sample_rate, ONSET_SAMPLE_RATE)
    motion = video_motion_peaks(video, max_seconds=len(music) / sample_rate, flow_width=PICTURE_FLOW_WIDTH)
    plot_clip(path, clip, [(title, wav, audio_onsets(wav))], motion, ONSET_SAMPLE_RATE)


def safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)[:80] or "video"


def edit_summary(plan, rate: int, music_name: str) -> str:
    """Where an edit sits (``model.regenerate.RegenerationPlan``), in seconds, as the CLI reports it."""
    changed = plan.changed
    back = (f"back to {music_name} on its beat at {plan.end_join / rate:.2f} s over {plan.end_fade / rate:.2f} s"
            if plan.end_fade else "new to the end")
    return (f"new music from {plan.start / rate:.2f} s, {back}; changed {changed[0] / rate:.2f}-"
            f"{changed[1] / rate:.2f} s (samples {changed[0]}-{changed[1]}), the rest is {music_name} sample for "
            f"sample")


class Soundtracks:
    """The page's two jobs, each request's files in a fresh folder: ``generate`` (video with music, WAV, picture)
    and ``regenerate`` (one range of a soundtrack made anew: video with the changed music, WAV)."""

    def __init__(self, model, settings: PageSettings, results: Path):
        self.model, self.settings, self.results = model, settings, results

    def generate(self, video: str | None, seed: float, guidance_scale: float, max_seconds: float,
                 window_seconds: float, overlap_seconds: float, progress=None, prompt: str | None = None):
        """Yields (mp4 path, wav path, None, summary) as soon as the music is in the video, then the same with the
        picture's path: the page shows the video while the picture is drawn. A bad request raises
        ``gr.Error("error: ...")`` with the CLI's line and leaves no file behind. ``prompt``: the optional text
        prompt (models with a text encoder); empty means none, as ``infer.py`` without ``--prompt``."""
        import gradio as gr

        if video is None:
            raise gr.Error("error: no video: upload one or click the example first", duration=None,
                           print_exception=False)
        upload = Path(video)
        self.results.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.results))
        started, seconds, stem = time.perf_counter(), None, safe_stem(upload.name)
        prompt = prompt.strip() if prompt and prompt.strip() else None
        try:
            seconds = check_upload(upload, self.settings)
            if progress is not None:
                progress(0.0, desc="generating")
            result = make_soundtrack(self.model, upload, folder / f"{stem}_with_music.mp4", seed=int(seed),
                                     guidance_scale=guidance_scale, max_seconds=max_seconds,
                                     window_seconds=window_seconds, overlap_seconds=overlap_seconds,
                                     wav_out=folder / f"{stem}_music.wav", progress=True, prompt=prompt)
        except Exception as error:  # noqa: BLE001 - every failure becomes one line on the page, nothing is kept
            shutil.rmtree(folder, ignore_errors=True)
            if seconds is None or type(error).__name__ == "VideoError":  # the file itself is refused
                forget_upload(upload)
            if user_error_line(error) is None:
                log.exception("generation failed")
            raise page_error(shown_line(error, upload)) from None
        covered = "" if result.seconds >= seconds - 1e-3 else f" (the first {result.seconds:.1f} s of {seconds:.1f} s)"
        asked = f", prompt \"{prompt}\"" if prompt else ""
        summary = (f"{result.seconds:.1f} s of music{covered}, seed {int(seed)}{asked}, made in "
                   f"{time.perf_counter() - started:.1f} s")
        yield str(result.video), str(result.wav), None, summary + "; drawing the picture..."
        picture = folder / f"{stem}_music.png"
        try:
            draw_picture(picture, result.video, result.music, result.sample_rate, upload.name,
                         f"its music, seed {int(seed)}")
        except Exception as error:  # noqa: BLE001 - the music is delivered already; say why the picture is not
            log.exception("picture failed")
            yield str(result.video), str(result.wav), None, f"{summary}; no picture ({type(error).__name__})"
            return
        yield str(result.video), str(result.wav), str(picture), summary

    def regenerate(self, video: str | None, music: str | None, start: float | None, end: float | None, seed: float,
                   guidance_scale: float, window_seconds: float, overlap_seconds: float, progress=None):
        """New music for ``[start, end)`` s of ``music`` (``infer.regenerate_soundtrack``): returns (mp4 path, wav
        path, summary of where the edit sits). Refused as ``generate`` refuses: ``gr.Error("error: ...")``, the
        CLI's line, no file left; a file that is not a usable video or audio file is deleted, a bad range keeps
        both (the page still shows them, for another try)."""
        if video is None or music is None:
            raise page_error(f"error: no {'video' if video is None else 'music'}: upload one, or click "
                             "'use the result above' after making music")
        if start is None or end is None:
            raise page_error("error: give the start and the end of the part to change, in seconds")
        upload, music_file = Path(video), Path(music)
        self.results.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.results))
        started, checked = time.perf_counter(), False
        stem = re.sub(r"(_edited)?_with_music$", "", safe_stem(upload.name)) + "_edited"
        try:
            check_upload(upload, self.settings)
            checked = True
            if progress is not None:
                progress(0.0, desc="regenerating")
            result = regenerate_soundtrack(self.model, upload, music_file, float(start), float(end),
                                           folder / f"{stem}_with_music.mp4", seed=int(seed),
                                           guidance_scale=guidance_scale, window_seconds=window_seconds,
                                           overlap_seconds=overlap_seconds, wav_out=folder / f"{stem}_music.wav",
                                           progress=True)
        except Exception as error:  # noqa: BLE001 - every failure becomes one line on the page, nothing is kept
            shutil.rmtree(folder, ignore_errors=True)
            if not checked or type(error).__name__ == "VideoError":  # the video itself is refused
                self.forget(upload)
            if type(error).__name__ == "AudioError":  # the music file itself is refused
                self.forget(music_file)
            if user_error_line(error) is None:
                log.exception("regeneration failed")
            raise page_error(shown_line(error, upload, music_file)) from None
        summary = (f"{edit_summary(result.plan, result.sample_rate, music_file.name)}; {result.seconds:.1f} s of "
                   f"music, seed {int(seed)}, made in {time.perf_counter() - started:.1f} s")
        return str(result.video), str(result.wav), summary

    def forget(self, upload: Path) -> None:
        """``forget_upload``, never for the page's own results (a refused request may have reused one)."""
        if self.results.resolve() not in upload.resolve().parents:
            forget_upload(upload)

    def prune(self) -> None:
        """Remove request folders whose files the cache schedule has deleted."""
        for folder in self.results.glob("request-*"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def limits_text(settings: PageSettings, model) -> str:
    waiting = ("one generation at a time" if settings.concurrency == 1
               else f"{settings.concurrency} generations at a time")
    return (f"Videos up to **{settings.max_video_seconds:g} s** and **{settings.max_upload_mb:g} MB** "
            f"(mp4, mov, webm, mkv...). {waiting.capitalize()}; others wait in a queue of at most "
            f"{settings.queue_size} (the page shows your place). Music: {model.sample_rate // 1000} kHz mono, "
            f"windows of up to {MAX_WINDOW_SECONDS:g} s. Results are deleted after {settings.keep_minutes:g} min.")


def build_app(model, settings: PageSettings = PageSettings()):
    """The page as a ``gr.Blocks`` (queue configured; not launched). Call with ``GRADIO_TEMP_DIR`` already set:
    gradio copies the example into that folder here."""
    import gradio as gr

    jobs = Soundtracks(model, settings, Path(gr.utils.get_upload_folder()) / "soundtracks")
    warm_up()

    def generate(video, seed, guidance_scale, max_seconds, window_seconds, overlap_seconds, prompt,
                 progress=gr.Progress(track_tqdm=True)):  # gradio finds the progress bar by this default
        jobs.prune()
        yield from jobs.generate(video, seed, guidance_scale, max_seconds, window_seconds, overlap_seconds, progress,
                                 prompt=prompt)

    def regenerate(video, music, start, end, seed, guidance_scale, window_seconds, overlap_seconds,
                   progress=gr.Progress(track_tqdm=True)):
        jobs.prune()
        return jobs.regenerate(video, music, start, end, seed, guidance_scale, window_seconds, overlap_seconds,
                               progress)

    keep = round(settings.keep_minutes * 60)
    with gr.Blocks(title="Video to music", analytics_enabled=False, delete_cache=(min(keep, 300), keep)) as demo:
        gr.Markdown("# Video to music\nUpload a video, get it back with music that follows its mood and motion.\n\n"
                    + limits_text(settings, model))
        with gr.Row():
            with gr.Column():
                video_in = gr.Video(label="your video", sources=["upload"], elem_id="video-in")
                gr.Examples([[str(EXAMPLE)]], inputs=[video_in], label="or take the example (10 s)")
                # only a model with a text encoder takes a prompt (issue 15); the video keeps the timing
                prompt = gr.Textbox("", label="what to play (optional), e.g. \"calm piano, slow\"", max_lines=1,
                                    elem_id="prompt", visible=getattr(model, "text_conditioner", None) is not None)
                with gr.Accordion("settings", open=False):
                    seed = gr.Number(0, label="seed (same seed, same music)", precision=0, minimum=0)
                    guidance = gr.Slider(1.0, 10.0, value=float(model.config.guidance.scale), step=0.5,
                                         label="guidance scale (how closely the music follows the video)")
                    cap = gr.Slider(1.0, settings.max_video_seconds, value=settings.max_video_seconds, step=0.5,
                                    label="length cap: music covers at most this many seconds")
                    window = gr.Slider(2.0, MAX_WINDOW_SECONDS, value=MAX_WINDOW_SECONDS, step=1.0,
                                       label="window seconds (generated one window at a time)")
                    overlap = gr.Slider(0.0, 10.0, value=5.0, step=0.5,
                                        label="overlap seconds (each window continues the previous one's music)")
                button = gr.Button("Make music", variant="primary", elem_id="generate")
            with gr.Column():
                video_out = gr.Video(label="your video with its new music", elem_id="video-out", interactive=False)
                summary = gr.Markdown(elem_id="summary")
                wav_out = gr.File(label="the music alone (WAV)", elem_id="wav-out", interactive=False)
        picture = gr.Image(label="the music's spectrogram with the video's motion peaks and the music's onsets",
                           show_label=False, type="filepath", elem_id="picture", interactive=False,
                           buttons=["download"])
        with gr.Accordion("Change one part of the music", open=False, elem_id="edit"):
            gr.Markdown("New music for one stretch of a soundtrack, the rest kept sample for sample: the new part "
                        "continues the music before it and hands back to it on its beat. Take the result above or "
                        "upload a video and its music (WAV); guidance and windows are the settings above.")
            with gr.Row():
                with gr.Column():
                    reuse = gr.Button("use the result above", elem_id="reuse", size="sm")
                    edit_video = gr.Video(label="the video", sources=["upload"], elem_id="edit-video-in")
                    edit_music = gr.Audio(label="its music (WAV, e.g. the one made above)", sources=["upload"],
                                          type="filepath", format=None, elem_id="edit-music-in")
                    with gr.Row():
                        start = gr.Number(label="from (s)", elem_id="edit-start")  # no minimum: the CLI's line says it
                        end = gr.Number(label="to (s)", elem_id="edit-end")
                        edit_seed = gr.Number(1, label="seed", precision=0, minimum=0)
                    edit_button = gr.Button("Make this part anew", variant="primary", elem_id="regenerate")
                with gr.Column():
                    edit_video_out = gr.Video(label="the video with the changed music", elem_id="edit-video-out",
                                              interactive=False)
                    edit_summary_out = gr.Markdown(elem_id="edit-summary")
                    edit_wav_out = gr.File(label="the changed music alone (WAV)", elem_id="edit-wav-out",
                                           interactive=False)
        button.click(generate, [video_in, seed, guidance, cap, window, overlap, prompt],
                     [video_out, wav_out, picture, summary], api_name="generate", concurrency_id=GENERATION)
        # in the browser only: gr.File as a server-side input leaves an empty temporary file in the cache per call
        reuse.click(None, [video_out, wav_out], [edit_video, edit_music], js="(video, wav) => [video, wav]")
        edit_button.click(regenerate, [edit_video, edit_music, start, end, edit_seed, guidance, window, overlap],
                          [edit_video_out, edit_wav_out, edit_summary_out], api_name="regenerate",
                          concurrency_id=GENERATION)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    return demo


def launch(demo, host: str, port: int, settings: PageSettings, block: bool):
    """Start serving ``demo``; a port already taken is a one-line error."""
    try:
        return demo.launch(server_name=host, server_port=port, max_file_size=f"{settings.max_upload_mb:g}mb",
                           prevent_thread_lock=not block, quiet=not block, show_error=True, footer_links=["api"])
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {' '.join(str(error).split())}") from None


def warm_up() -> None:
    """Pay the picture's one-off costs (librosa's numba compilation, matplotlib's start) once, not in a request."""
    import io

    import matplotlib
    import numpy as np

    from scoring.av_align import audio_onsets

    audio_onsets(np.random.default_rng(0).standard_normal(22050).astype(np.float32))
    matplotlib.use("Agg")  # files only, as scoring.report draws
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.imshow(np.zeros((4, 4)))
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def serve(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)
    quiet_libraries()
    model = load_model(args).eval()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: the page is reachable from other machines", file=sys.stderr)
    before = os.environ.get("GRADIO_TEMP_DIR")
    with tempfile.TemporaryDirectory(prefix="video-to-music-app-") as cache:
        os.environ["GRADIO_TEMP_DIR"] = cache  # uploads and results of this run only; removed when it stops
        try:
            demo = build_app(model, settings)
            print(f"serving on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
            launch(demo, args.host, args.port, settings, block=True)
        finally:
            os.environ.pop("GRADIO_TEMP_DIR") if before is None else os.environ.update(GRADIO_TEMP_DIR=before)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run_cli(lambda: serve(args), debug=args.debug)


if __name__ == "__main__":
    main()
