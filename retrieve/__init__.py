"""``python -m retrieve``: rank a music library by fit to a video (see ``retrieve/command.py``)."""
from retrieve.command import main, parse_args

__all__ = ["main", "parse_args"]
