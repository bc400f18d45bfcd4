"""Several users at once on the web page (``app.py``), and the page's cost against the CLI's on one clip.

    python tools/load_test_app.py clients [--model M | --config tiny] [--clients 4] [--concurrency 1]
                                          [--seconds 2,3,4,5] [--timeout 900] [--no-verify] [--json OUT]
    python tools/load_test_app.py overhead [--model M] [--repeats 3] [--video examples/example.mp4] [--json OUT]

Both start the page in this process on a free port of 127.0.0.1 and talk to it with ``gradio_client`` — never to
any other address — and both are bounded: at most 16 clients, every wait has a deadline, and the server is shut
down at the end whatever happens.

``clients``: every client sends its own cut of the example (a different length each) with its own seed, all at
the same moment. A client's answer is right when its music is as long as its video and (unless ``--no-verify``)
equal sample for sample to a direct ``infer.make_soundtrack`` call with the same clip and seed, so no answer was
lost or given to another client. Reports each client's wait in the queue, generation and total time.

``overhead``: alternates, ``--repeats`` times, (a) one request through the page (upload, queue, generation, the
video back, then the picture), (b) ``make_soundtrack`` in this process on the same model (what the CLI does once
its model is loaded) and (c) the CLI itself, ``python infer.py`` (a new process: start-up and model load
included). Reports medians and the ratios page / (b) and page / (c).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script: the project's packages are importable

from common.cli import add_device_arguments, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402

HOST = "127.0.0.1"  # the only address this script ever talks to
MAX_CLIENTS = 16
POLL_SECONDS = 0.05  # how often a client looks at its job: times are this exact, and polling costs no CPU to speak of
EXAMPLE = ROOT / "examples" / "example.mp4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def serving(model, settings, temp_dir: Path):
    """The page on ``model`` at ``http://127.0.0.1:<free port>/``, its files in ``temp_dir``; always shut down."""
    import app

    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)  # read when the page is built and on every upload
    demo = app.build_app(model, settings)
    port = free_port()
    app.launch(demo, HOST, port, settings, block=False)
    try:
        yield demo, f"http://{HOST}:{port}/"
    finally:
        demo.close()


def cut_video(source: Path, seconds: float, out: Path) -> Path:
    """The first ``seconds`` of ``source`` as a new mp4 (re-encoded, so the cut is exact to the frame)."""
    result = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source),
                             "-t", f"{seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-an", str(out)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"ffmpeg could not cut {source}: {result.stderr.strip()[-200:]}")
    return out


def client_for(url: str, downloads: Path):
    from gradio_client import Client

    if not url.startswith(f"http://{HOST}:"):
        raise UserError(f"{url}: the load test talks to {HOST} only")
    return Client(url, download_files=str(downloads), verbose=False, analytics_enabled=False)


def page_request(client, video: Path, seed: int, max_seconds: float, guidance_scale: float = 3.0,
                 prompt: str = ""):
    """Submit one request (the page's defaults for windows; ``prompt`` "" is none) and return its job."""
    from gradio_client import handle_file

    return client.submit(handle_file(str(video)), seed, guidance_scale, max_seconds, 30.0, 5.0, prompt,
                         api_name="/generate")


@dataclass
class Answer:
    """One client's request as it saw it; times in seconds from the moment all clients submitted."""

    client: int
    video_seconds: float
    seed: int
    submitted: float = 0.0
    started: float | None = None  # first seen processing: the wait in the queue ends here
    video_back: float | None = None  # the video with its music arrived (the picture follows)
    finished: float | None = None
    music_seconds: float | None = None
    wav: str | None = None
    error: str | None = None
    matches_direct_call: bool | None = None

    @property
    def wait(self) -> float | None:
        return None if self.started is None else self.started - self.submitted


def follow(job, answer: Answer, zero: float, deadline: float) -> None:
    """Poll ``job`` until it ends (or the deadline passes) and fill in ``answer``'s times and result."""
    import soundfile as sf
    from gradio_client.utils import Status

    while not job.done() and time.perf_counter() < deadline:
        now = time.perf_counter() - zero
        if answer.started is None and job.status().code in (Status.PROCESSING, Status.PROGRESS, Status.ITERATING):
            answer.started = now
        if answer.video_back is None and job.outputs():
            answer.video_back = now
        time.sleep(POLL_SECONDS)
    if not job.done():
        job.cancel()
        answer.error = "no answer before the deadline"
        return
    answer.finished = time.perf_counter() - zero
    try:
        video, wav, _, _ = job.result(timeout=5)
    except Exception as error:  # noqa: BLE001 - a refused or failed request is a result to report
        answer.error = " ".join(str(error).split())[:200]
        return
    answer.started = answer.started if answer.started is not None else answer.finished
    answer.video_back = answer.video_back if answer.video_back is not None else answer.finished
    info = sf.info(wav)
    answer.music_seconds, answer.wav = info.frames / info.samplerate, wav


def run_clients(url: str, clips: list[tuple[Path, float, int]], downloads: Path, timeout: float) -> list[Answer]:
    """Each (video, its length, seed) from its own client and thread, all submitted at the same moment."""
    if not 0 < len(clips) <= MAX_CLIENTS:
        raise UserError(f"--clients must be in 1..{MAX_CLIENTS}, got {len(clips)}")
    clients = [client_for(url, downloads / f"client{i}") for i in range(len(clips))]
    answers = [Answer(i, seconds, seed) for i, (_, seconds, seed) in enumerate(clips)]
    gate = threading.Barrier(len(clips) + 1)
    zero, deadline = [0.0], time.perf_counter() + timeout

    def one(i: int) -> None:
        gate.wait()
        job = page_request(clients[i], clips[i][0], clips[i][2], max_seconds=clips[i][1] + 1)
        answers[i].submitted = time.perf_counter() - zero[0]
        follow(job, answers[i], zero[0], deadline)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(clips))]
    for thread in threads:
        thread.start()
    zero[0] = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()) + 10)
    for client in clients:
        client.close()
    return answers


def verify(model, clips: list[tuple[Path, float, int]], answers: list[Answer], work: Path) -> None:
    """Set ``matches_direct_call``: each answer's WAV equals ``make_soundtrack`` on its own clip and seed."""
    import numpy as np
    import soundfile as sf

    from infer import make_soundtrack

    for (video, seconds, seed), answer in zip(clips, answers):
        if answer.wav is None:
            continue
        make_soundtrack(model, video, work / "direct.mp4", seed=seed, guidance_scale=3.0, max_seconds=seconds + 1,
                        wav_out=work / "direct.wav", progress=False)
        answer.matches_direct_call = bool(np.array_equal(sf.read(answer.wav, dtype="int16")[0],
                                                         sf.read(work / "direct.wav", dtype="int16")[0]))


def answer_is_right(answer: Answer, tolerance: float = 0.05) -> bool:
    return (answer.error is None and answer.music_seconds is not None
            and abs(answer.music_seconds - answer.video_seconds) <= tolerance
            and answer.matches_direct_call is not False)


def summarise(answers: list[Answer]) -> dict:
    waits = [a.wait for a in answers if a.wait is not None]
    totals = [a.finished - a.submitted for a in answers if a.finished is not None and a.error is None]
    return {"clients": len(answers), "answered": sum(a.error is None for a in answers),
            "right": sum(answer_is_right(a) for a in answers),
            "wait_s": {"min": min(waits, default=None), "median": statistics.median(waits) if waits else None,
                       "max": max(waits, default=None)},
            "total_s": {"min": min(totals, default=None), "max": max(totals, default=None)}}


def print_answers(answers: list[Answer], summary: dict) -> None:
    def cell(value):
        return "-" if value is None else f"{value:.2f}"

    print("| client | video s | seed | wait s | video back s | total s | music s | right |")
    print("|---|---|---|---|---|---|---|---|")
    for a in answers:
        print(f"| {a.client} | {a.video_seconds:g} | {a.seed} | {cell(a.wait)} | {cell(a.video_back and a.video_back - a.submitted)} "
              f"| {cell(a.finished and a.finished - a.submitted)} | {cell(a.music_seconds)} | "
              f"{'yes' if answer_is_right(a) else 'NO: ' + (a.error or 'wrong length or music')} |")
    w = summary["wait_s"]
    print(f"\n{summary['answered']}/{summary['clients']} answered, {summary['right']} right; wait in the queue "
          f"min / median / max {cell(w['min'])} / {cell(w['median'])} / {cell(w['max'])} s")


def load_model_for(args: argparse.Namespace):
    from common.cli import quiet_libraries
    from infer import load_model

    quiet_libraries()
    return load_model(args).eval()


def clients_command(args: argparse.Namespace) -> None:
    import app

    lengths = [float(x) for x in args.seconds.split(",")][:args.clients]
    lengths += [lengths[-1] + i + 1 for i in range(args.clients - len(lengths))]
    model = load_model_for(args)
    settings = app.PageSettings(max_video_seconds=max(lengths) + 1, concurrency=args.concurrency,
                                queue_size=max(args.clients, 1))
    with tempfile.TemporaryDirectory(prefix="load-test-") as work:
        work = Path(work)
        clips = [(cut_video(EXAMPLE, s, work / f"clip{i}_{s:g}s.mp4"), s, 100 + i) for i, s in enumerate(lengths)]
        with serving(model, settings, work / "server") as (_, url):
            answers = run_clients(url, clips, work, args.timeout)
        if args.verify:
            verify(model, clips, answers, work)
        summary = summarise(answers)
        print_answers(answers, summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "answers": [asdict(a) for a in answers],
                                               "concurrency": args.concurrency}, indent=2) + "\n")
    if summary["right"] != summary["clients"]:
        raise UserError(f"{summary['clients'] - summary['right']} of {summary['clients']} requests were not answered "
                        "right (see the table)")


def timed_page_request(client, video: Path, seed: int, max_seconds: float, timeout: float) -> tuple[float, float]:
    """(seconds until the video with its music is back, seconds until the picture is back too)."""
    started = time.perf_counter()
    job = page_request(client, video, seed, max_seconds)
    video_back, deadline = None, started + timeout
    while not job.done() and time.perf_counter() < deadline:
        if video_back is None and job.outputs():
            video_back = time.perf_counter() - started
        time.sleep(POLL_SECONDS)
    job.result(timeout=max(1.0, deadline - time.perf_counter()))
    total = time.perf_counter() - started
    return (video_back if video_back is not None else total), total


def timed_cli(video: Path, out: Path, seed: int, source: list[str], timeout: float) -> float:
    """Wall seconds of ``python infer.py`` on ``video`` (a new process: start-up and model load included)."""
    started = time.perf_counter()
    command = [sys.executable, str(ROOT / "infer.py"), "--video", str(video), "--out", str(out), "--seed", str(seed),
               "--guidance-scale", "3", *source]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        raise UserError(f"infer.py failed: {result.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - started


def overhead_command(args: argparse.Namespace) -> None:
    import app
    from infer import make_soundtrack, video_seconds

    video = Path(args.video)
    seconds = video_seconds(video)
    model = load_model_for(args)
    settings = app.PageSettings(max_video_seconds=max(seconds, 1.0) + 1)
    source = ["--model", args.model] if args.model else ["--config", args.config] if args.config else []
    rows: dict[str, list[float]] = {"page_video": [], "page_all": [], "in_process": [], "cli": []}
    with tempfile.TemporaryDirectory(prefix="overhead-") as work:
        work = Path(work)
        with serving(model, settings, work / "server") as (_, url):
            client = client_for(url, work / "client")
            timed_page_request(client, video, 0, seconds + 1, args.timeout)  # first request: one-off costs
            for repeat in range(args.repeats):
                page_video, page_all = timed_page_request(client, video, repeat, seconds + 1, args.timeout)
                started = time.perf_counter()
                make_soundtrack(model, video, work / "direct.mp4", seed=repeat, guidance_scale=3.0,
                                max_seconds=seconds + 1, wav_out=work / "direct.wav", progress=False)
                in_process = time.perf_counter() - started
                cli = timed_cli(video, work / "cli.mp4", repeat, source, args.timeout)
                for key, value in zip(rows, (page_video, page_all, in_process, cli)):
                    rows[key].append(value)
                print(f"repeat {repeat}: page {page_video:.2f} s (picture too: {page_all:.2f} s), in-process "
                      f"make_soundtrack {in_process:.2f} s, CLI {cli:.2f} s", flush=True)
            client.close()
    medians = {key: statistics.median(values) for key, values in rows.items()}
    ratios = {"page_video / in_process": medians["page_video"] / medians["in_process"],
              "page_all / in_process": medians["page_all"] / medians["in_process"],
              "page_video / cli": medians["page_video"] / medians["cli"],
              "page_all / cli": medians["page_all"] / medians["cli"]}
    print("medians (s): " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    print("ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"video": str(video), "repeats": rows, "medians": medians,
                                               "ratios": ratios}, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("clients", "overhead"):
        sub = commands.add_parser(name)
        source = sub.add_mutually_exclusive_group()
        source.add_argument("--model", default=None, help="model folder or Hub id (default: the default model)")
        source.add_argument("--config", default=None, help="an untrained preset, e.g. tiny (fast)")
        sub.add_argument("--timeout", type=float, default=900.0, help="seconds, for everything the clients wait on")
        sub.add_argument("--json", default=None, help="also write the figures here")
        sub.add_argument("--debug", action="store_true")
        add_device_arguments(sub)
    clients = commands.choices["clients"]
    clients.add_argument("--clients", type=int, default=4)
    clients.add_argument("--concurrency", type=int, default=1, help="the page's generations at a time")
    clients.add_argument("--seconds", default="2,3,4,5", help="each client's video length (comma list)")
    clients.add_argument("--no-verify", dest="verify", action="store_false",
                         help="skip the direct calls that check each answer's music")
    overhead = commands.choices["overhead"]
    overhead.add_argument("--repeats", type=int, default=3)
    overhead.add_argument("--video", default=str(EXAMPLE))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    job = clients_command if args.command == "clients" else overhead_command
    run_cli(lambda: job(args), debug=args.debug)


if __name__ == "__main__":
    main()
