"""Errors of the model package that more than one of its modules raise."""
from __future__ import annotations

from common.errors import UserError


class CheckpointError(UserError):
    """A model folder, Hub repo or checkpoint file that cannot be loaded; the message is one line for the user."""
