"""One base class for every error a user can cause.

A ``UserError``'s message is one line that says what is wrong and where; the commands print it as
``error: <message>`` with exit status 2 (``common.cli.run_cli``). Packages subclass it where callers need to tell
their errors apart (``VideoError``, ``ConfigError``, ...); anything else reaching the command line is a bug.
"""
from __future__ import annotations


class UserError(ValueError):
    """A request or input that cannot be used as given; the message is one line meant for the user."""
