"""What every command shares: one-line errors instead of tracebacks, argparse with one-line errors, and quiet
third-party logging that still lets real problems through.

A user who passes a bad file or value sees ``error: <what and where>`` on stderr and exit status 2; an
out-of-memory or device failure is named as such (exit 1) and stops the run; anything else is a bug and says
``error: unexpected ...`` (exit 1). ``--debug`` shows the traceback for bug reports.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from typing import Callable

from common.errors import UserError

# Library chatter that means nothing to a user. Only these are hidden: a warning about weights that were not
# loaded, a dtype mismatch or an unknown option must still reach the user.
QUIET_WARNINGS = (
    (FutureWarning, ""),
    (DeprecationWarning, ""),
    (UserWarning, r".*(TypedStorage is deprecated|torch\.meshgrid|upsample|MatMul8bitLt|"
                  r"Input type into Linear4bit|None of the inputs have requires_grad|use_reentrant|"
                  r"`torch_dtype` is deprecated|PySoundFile failed|audioread|torch\.quantize_per_tensor).*"),
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one error line (pointing at --help), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_device_arguments(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """``--device`` and ``--precision``, resolved by ``common.device.placement_for`` (its docstring has the table)."""
    parser.add_argument("--device", default="auto",
                        help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps")
    auto = ("fp32 on a CPU, bf16 on a GPU that supports it (else fp16)" if training else
            "int8 decoding on a CPU (CLIP in bf16 where the CPU has bf16 instructions), bf16 on a GPU "
            "that supports it (else fp16)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                        help=f"storage of CLIP and the decoder (the codec stays fp32); auto: {auto}")


def quiet_libraries() -> None:
    """Hide library chatter (deprecations, kernel probes, progress logs) and keep real warnings visible."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    # bitsandbytes: on CPUs with AVX512-BF16 it logs, at import, that an optional kernel package is missing
    for name in ("httpx", "urllib3", "huggingface_hub", "datasets", "numba", "PIL", "matplotlib", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        # errors only; loading problems are checked by our loaders (``output_loading_info``), which raise
        transformers.logging.set_verbosity_error()
    except ImportError:
        pass


def is_resource_error(error: BaseException) -> bool:
    """Out of memory (host or device) or a broken device: no point in carrying on with the next item."""
    if isinstance(error, MemoryError):
        return True
    name = type(error).__name__
    text = str(error)
    return name in ("OutOfMemoryError", "AcceleratorError") or "CUDA error" in text or "out of memory" in text


def describe(error: BaseException) -> tuple[str, int]:
    """(the one line to print, the exit status) for an exception that reached the command line."""
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, UserError):
        return f"error: {message}", 2
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"error: {message}", 2
    if isinstance(error, OSError) and error.errno == 28:
        return f"error: no space left on the device ({message[:200]})", 1
    if is_resource_error(error):
        return f"error: out of memory or device failure ({type(error).__name__}: {message[:200]}); try a smaller " \
               "batch, a shorter clip, --precision int8/bf16, or --device cpu", 1
    return f"error: unexpected {type(error).__name__}: {message[:300]} (rerun with --debug for details)", 1


def guarded(job: Callable[[], object], prog: str | None = None, debug: bool = False) -> int:
    """Run ``job`` and return an exit status: ``job``'s own (an int, or 0), or that of the exception it raised,
    which is printed as one line on stderr (see ``describe``). For ``main()`` functions that return a status."""
    prefix = f"{prog}: " if prog else ""
    try:
        status = job()
    except KeyboardInterrupt:
        print(f"{prefix}error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that decides what a user sees
        if debug:
            traceback.print_exc()
        line, code = describe(error)
        print(prefix + line, file=sys.stderr)
        return code
    return status if isinstance(status, int) else 0


def run_cli(job: Callable[[], object], debug: bool = False, prog: str | None = None) -> None:
    """``guarded``, then exit with its status when it is not 0."""
    status = guarded(job, prog, debug)
    if status:
        sys.exit(status)


def user_error_line(error: BaseException) -> str | None:
    """``error: ...``, the line a user sees for a mistake of theirs (bad file, bad value); None for anything else.

    Shared by every command and by the web page (``app.py``), so both say the same thing."""
    line, code = describe(error)
    return line if code == 2 else None
