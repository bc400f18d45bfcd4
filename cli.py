"""What every command shares: one-line errors instead of tracebacks, and quiet third-party logging.

A user who passes a bad file or value sees ``error: <what and where>`` on stderr and a non-zero exit status;
``--debug`` shows the traceback for bug reports.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from typing import Callable

# Exceptions whose message is already a one-line explanation meant for the user (each module defines its own).
USER_ERROR_NAMES = {"UserError", "ConfigError", "VideoError", "CheckpointError", "MediaError", "DatasetError"}


class UserError(ValueError):
    """A request that cannot be carried out as given; the message says why."""


def quiet_libraries() -> None:
    """Hide library chatter that means nothing to a user (random-init notices, deprecations, kernel probes)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        pass


def run_cli(job: Callable[[], None], debug: bool = False) -> None:
    """Run ``job``; turn known user errors into ``error: ...`` + exit 2, anything else into exit 1."""
    try:
        job()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the one place that decides what a user sees
        if debug:
            traceback.print_exc()
        line = user_error_line(error)
        if line is not None:
            print(line, file=sys.stderr)
            sys.exit(2)
        print(f"error: unexpected {type(error).__name__}: {_one_line(error)[:300]} (rerun with --debug for details)",
              file=sys.stderr)
        sys.exit(1)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def user_error_line(error: BaseException) -> str | None:
    """``error: ...``, the line a user sees for a mistake of theirs (bad file, bad value); None for a bug.

    Shared by every command and by the web page (``app.py``), so both say the same thing.
    """
    if type(error).__name__ in USER_ERROR_NAMES or isinstance(error, (FileNotFoundError, PermissionError)):
        return f"error: {_one_line(error)}"
    return None
