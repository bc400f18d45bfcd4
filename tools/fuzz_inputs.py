"""Fuzz ``infer.py`` with damaged and unusual video files: no signal, no hang, no traceback or internal error,
no partial output, the input unchanged.

    python tools/fuzz_inputs.py --cases 200 --seed 0 [--work DIR] [--json REPORT.json]
    python tools/fuzz_inputs.py --seed 0 --replay 17          # one case again, with infer.py's full output

Cases are seeded: case ``i`` of seed ``s`` is always the same file (a base video in one of several containers and
codecs, then one or two mutations: truncated at a random offset, bytes flipped in the header or the payload, a range
zeroed, remuxed into another container). Each case runs ``infer.main`` in a long-lived worker process that keeps
the (tiny, untrained) model loaded, so 200 cases take minutes, not an hour; a worker killed by a signal or stuck past
``--timeout`` is recorded against its case and replaced. What counts as a finding:

- ``signal``: the process died (a native library crashed, e.g. OpenCV's DIS on tiny frames before it was guarded);
- ``hang``: no answer within the timeout;
- ``internal``: exit status other than 0 and 2, or ``error: unexpected ...`` (a bug, not a bad input), or a traceback;
- ``output``: a failed run left an output or a temporary file, or a successful one wrote no usable mp4 with audio;
- ``input``: the input file changed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.cli import OneLineParser, run_cli  # noqa: E402
from common.errors import UserError  # noqa: E402

# (name, container format, suffix, video codec, audio codec or None)
BASES = (
    ("h264_aac", "mp4", ".mp4", "libx264", "aac"),
    ("h264_mkv", "matroska", ".mkv", "libx264", "flac"),
    ("vp8_webm", "webm", ".webm", "libvpx", "libopus"),
    ("mpeg4_avi", "avi", ".avi", "mpeg4", "mp3"),
    ("mpeg1_ps", "mpeg", ".mpg", "mpeg1video", "mp2"),
    ("mjpeg_mov", "mov", ".mov", "mjpeg", "pcm_s16le"),
    ("h264_ts", "mpegts", ".ts", "libx264", "ac3"),
    ("h264_silent", "mp4", ".mp4", "libx264", None),
)
MUTATIONS = ("none", "truncate", "flip_header", "flip_payload", "zero_range", "remux", "remux+flip")
REMUX_TARGETS = (("matroska", ".mkv"), ("mp4", ".mp4"), ("mpegts", ".ts"), ("nut", ".nut"))


@dataclass
class Case:
    index: int
    base: str
    mutation: str
    detail: str
    path: str


@dataclass
class Outcome:
    index: int
    base: str
    mutation: str
    detail: str
    status: str  # "music", "refused" (a one-line user error), or a finding kind
    message: str
    seconds: float


# ---------------------------------------------------------------------------------------------------- files


def write_base(folder: Path, name: str, fmt: str, suffix: str, video_codec: str, audio_codec: str | None,
               seconds: float = 1.0, fps: int = 25, size: tuple[int, int] = (64, 48)) -> Path:
    """A short, small clip: a bar moving over grey, a tone as its sound (when ``audio_codec``)."""
    import av

    path = folder / f"base_{name}{suffix}"
    if path.is_file():
        return path
    partial = path.with_name(f".{path.stem}.partial{suffix}")
    with av.open(str(partial), "w", format=fmt, options={"fflags": "+bitexact"}) as container:  # same bytes
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
        audio = None
        if audio_codec:
            rate = 48000 if audio_codec in ("libopus", "ac3", "mp2") else 44100
            audio = container.add_stream(audio_codec, rate=rate, layout="stereo")
        frames = round(seconds * fps)
        for k in range(frames):
            image = np.full((size[1], size[0], 3), 100, np.uint8)
            image[:, (5 * k) % size[0]:(5 * k) % size[0] + 6] = 230
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            samples, block = round(seconds * audio.rate), audio.codec_context.frame_size or 1024
            t = np.arange(samples) / audio.rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            layout = "fltp" if audio_codec not in ("pcm_s16le",) else "s16"
            for start in range(0, samples, block):
                chunk = wave[start:start + block]
                if layout == "s16":
                    data = np.repeat((chunk * 32767).astype(np.int16)[None], 2, axis=0).T.reshape(1, -1)
                    piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout="stereo")
                else:
                    piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.stack([chunk, chunk])), format="fltp",
                                                       layout="stereo")
                piece.sample_rate, piece.pts, piece.time_base = audio.rate, start, Fraction(1, audio.rate)
                container.mux(audio.encode(piece))
            container.mux(audio.encode(None))
    partial.replace(path)
    return path


def remux(source: Path, target: Path, fmt: str) -> bool:
    """Copy the streams into another container without re-encoding; False when that container cannot hold them."""
    import av

    try:
        with av.open(str(source)) as inp, av.open(str(target), "w", format=fmt, options={"fflags": "+bitexact"}) as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
            for packet in inp.demux():
                if packet.stream.index in mapping and packet.dts is not None:
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
        return True
    except (av.error.FFmpegError, ValueError, TypeError):
        target.unlink(missing_ok=True)
        return False


def make_case(index: int, seed: int, bases: dict[str, Path], folder: Path) -> Case:
    """Case ``index`` of ``seed``: the same bytes every time."""
    rng = np.random.default_rng([seed, index])
    base = BASES[int(rng.integers(len(BASES)))]
    mutation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    data, suffix, detail = bytearray(bases[base[0]].read_bytes()), base[2], ""
    if mutation.startswith("remux"):
        fmt, suffix = REMUX_TARGETS[int(rng.integers(len(REMUX_TARGETS)))]
        moved = folder / f".remux_{index}{suffix}"
        if remux(bases[base[0]], moved, fmt):
            data, detail = bytearray(moved.read_bytes()), f"into {fmt}"
            moved.unlink()
        else:
            suffix, detail = base[2], f"{fmt} refused the streams: kept as is"
    if mutation == "truncate":
        keep = int(len(data) * rng.uniform(0.0, 1.0))
        data, detail = data[:keep], f"kept {keep} of {len(data)} bytes"
    elif mutation in ("flip_header", "flip_payload", "remux+flip"):
        head = min(2048, len(data))
        low, high = (0, head) if mutation == "flip_header" else (head if len(data) > head else 0, len(data))
        count = int(rng.integers(1, 17))
        positions = rng.integers(low, max(low + 1, high), count)
        for p in positions:
            data[int(p)] ^= int(rng.integers(1, 256))
        detail = (detail + "; " if detail else "") + f"{count} bytes flipped in [{low}, {high})"
    elif mutation == "zero_range":
        start = int(rng.integers(0, len(data)))
        length = int(rng.integers(1, max(2, len(data) // 10)))
        data[start:start + length] = bytes(min(length, len(data) - start))
        detail = f"zeroed {length} bytes at {start}"
    path = folder / f"case_{index:04d}{suffix}"
    path.write_bytes(bytes(data))
    return Case(index, base[0], mutation, detail, str(path))


# ---------------------------------------------------------------------------------------------------- worker


def worker() -> None:
    """Read ``{"video", "out"}`` lines on stdin, run ``infer.main`` on each, answer ``{"rc", "stderr"}`` lines.

    The model is loaded once (``infer.load_model`` memoised); everything else is ``infer.py`` as a user runs it.
    """
    import torch

    import infer

    torch.set_num_threads(1)  # tiny model: a second thread only spins, and a busy machine makes that costly
    original, models = infer.load_model, {}

    def load_once(args: argparse.Namespace):
        key = (args.config, args.device, args.precision)
        if key not in models:
            models[key] = original(args)
        return models[key]

    infer.load_model = load_once
    answer = os.fdopen(os.dup(1), "w", buffering=1)  # replies only: whatever else writes to fd 1 goes nowhere
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    for line in sys.stdin:
        request = json.loads(line)
        stderr, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                infer.main(["--video", request["video"], "--out", request["out"], "--config", "tiny",
                            "--precision", "fp32"])
                rc = 0
            except SystemExit as done:
                rc = done.code if isinstance(done.code, int) else 1
        answer.write(json.dumps({"rc": rc, "stderr": stderr.getvalue()[-4000:]}) + "\n")


class Worker:
    """The worker process, restarted after a crash or a hang."""

    def __init__(self):
        self.process = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": ""}
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], cwd=ROOT,
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def ask(self, video: str, out: str, timeout: float) -> tuple[str, dict | None]:
        """("answer", reply) / ("signal", {"rc": returncode}) / ("hang", None)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.process.stdin.write(json.dumps({"video": video, "out": out}) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return "hang", None
        line = self.process.stdout.readline()
        if not line:
            rc = self.process.wait(timeout=10)
            self.process = None
            return "signal", {"rc": rc}
        return "answer", json.loads(line)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


# ---------------------------------------------------------------------------------------------------- judging


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def judge(case: Case, kind: str, reply: dict | None, before: str, out: Path, seconds: float) -> Outcome:
    """The outcome of one case (see the module docstring for what is a finding)."""
    def outcome(status: str, message: str) -> Outcome:
        return Outcome(case.index, case.base, case.mutation, case.detail, status, message[:400], seconds)

    if kind == "hang":
        return outcome("hang", "no answer within the timeout")
    if kind == "signal":
        return outcome("signal", f"the process died (exit status {reply['rc']})")
    leftovers = [p.name for p in out.parent.glob(f".{out.stem}*")]
    if _digest(Path(case.path)) != before:
        return outcome("input", "the input file changed")
    errors = [line for line in reply["stderr"].splitlines() if line.startswith("error:")]
    if "Traceback" in reply["stderr"]:
        return outcome("internal", "a traceback: " + reply["stderr"][-300:])
    if reply["rc"] == 0:
        if leftovers:
            return outcome("output", f"temporary files left: {leftovers}")
        return _check_output(out, outcome)
    if out.exists() or leftovers:
        return outcome("output", f"a failed run left {out.name if out.exists() else leftovers}")
    if reply["rc"] != 2 or len(errors) != 1 or errors[0].startswith("error: unexpected"):
        return outcome("internal", f"exit {reply['rc']}: " + (errors[-1] if errors else reply["stderr"][-300:]))
    return outcome("refused", errors[0])


def _check_output(out: Path, outcome) -> Outcome:
    import av

    try:
        with av.open(str(out)) as container:
            kinds = {s.type for s in container.streams}
    except (av.error.FFmpegError, OSError) as error:
        return outcome("output", f"the written mp4 does not open: {error}")
    if not {"audio", "video"} <= kinds:
        return outcome("output", f"the written mp4 has only {sorted(kinds)}")
    return outcome("music", "ok")


# ---------------------------------------------------------------------------------------------------- running


def run_fuzz(cases: int, seed: int, work: Path, timeout: float = 120.0, only: int | None = None,
             progress: bool = True) -> list[Outcome]:
    """Make and run the cases (all, or case ``only``); returns one ``Outcome`` per case."""
    from tqdm import tqdm

    work.mkdir(parents=True, exist_ok=True)
    bases = {name: write_base(work, name, *rest) for name, *rest in BASES}
    indices = [only] if only is not None else range(cases)
    results, runner = [], Worker()
    try:
        for index in tqdm(indices, desc="fuzz", unit="case", disable=not progress):
            case = make_case(index, seed, bases, work)
            out = work / f"out_{index:04d}.mp4"
            out.unlink(missing_ok=True)
            before, started = _digest(Path(case.path)), time.perf_counter()
            kind, reply = runner.ask(case.path, str(out), timeout)
            results.append(judge(case, kind, reply, before, out, time.perf_counter() - started))
            if only is not None and reply:
                print(reply["stderr"], file=sys.stderr)
            Path(case.path).unlink(missing_ok=True)
            out.unlink(missing_ok=True)
    finally:
        runner.stop()
    return results


def summary(results: list[Outcome]) -> dict:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    findings = [asdict(r) for r in results if r.status not in ("music", "refused")]
    messages: dict[str, int] = {}
    for r in results:
        if r.status == "refused":
            key = r.message.split(":", 2)[-1].strip().split("(")[0][:80] if ":" in r.message else r.message
            messages[key] = messages.get(key, 0) + 1
    return {"cases": len(results), "counts": counts, "findings": findings,
            "refusals": dict(sorted(messages.items(), key=lambda kv: -kv[1])),
            "seconds": round(sum(r.seconds for r in results), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="tools/fuzz_inputs.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder for the case files (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--replay", type=int, default=None, help="run only this case and show infer.py's output")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker()

    def job() -> None:
        if args.cases < 1:
            raise UserError(f"--cases must be >= 1, got {args.cases}")
        with tempfile.TemporaryDirectory(prefix="v2m-fuzz-") as scratch:
            results = run_fuzz(args.cases, args.seed, args.work or Path(scratch), args.timeout, args.replay)
        report = summary(results)
        if args.json:
            from common.files import atomic_write_json

            atomic_write_json(args.json, report)
        print(json.dumps({k: v for k, v in report.items() if k != "findings"}, indent=1))
        for finding in report["findings"]:
            print(f"finding: case {finding['index']} ({finding['base']}, {finding['mutation']}: {finding['detail']}): "
                  f"{finding['status']}: {finding['message']}")
        if report["findings"]:
            raise SystemExit(1)

    run_cli(job)


if __name__ == "__main__":
    main()
