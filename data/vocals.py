"""Vocal removal with Demucs: keep the accompaniment, the sum of every stem except ``vocals``.

This is what ``demucs --two-stems=vocals`` calls ``no_vocals``. V2M removed vocals the same way, so the model learns
instrumental music for the picture rather than singing. Demucs is an optional dependency (``pip install demucs``)
and its weights download on first use: both are imported and loaded lazily, and a missing one stops curation with
one line saying so (``--keep-vocals`` skips the step).
"""
from __future__ import annotations

import contextlib
import io
import sys

import numpy as np
import torch

from common.errors import UserError

DEFAULT_MODEL = "htdemucs"


class VocalsError(UserError):
    """Demucs or its weights are not available; the message is one line meant for the user."""


class VocalRemover:
    """A loaded Demucs model.  audio float32 [C, S] at ``sample_rate`` -> accompaniment [C, S]."""

    def __init__(self, model: torch.nn.Module):
        if "vocals" not in list(model.sources):
            raise VocalsError(f"the Demucs model has no 'vocals' stem (stems: {', '.join(model.sources)})")
        self.model = model.eval()
        self.sample_rate = int(model.samplerate)
        self.channels = int(model.audio_channels)

    @classmethod
    def load(cls, name: str = DEFAULT_MODEL) -> "VocalRemover":
        """Import Demucs and load pretrained ``name``; raise ``VocalsError`` with the fix when either is missing."""
        try:
            from demucs.pretrained import get_model
        except ImportError:
            raise VocalsError("vocal removal needs Demucs, which is not installed: pip install demucs "
                              "(or pass --keep-vocals to keep the vocals)") from None
        chatter = io.StringIO()  # torch.hub announces a download it may then fail: keep the error to one line
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                model = get_model(name)
        except Exception as error:  # offline downloads fail with several exception types
            first = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise VocalsError(f"Demucs weights {name!r} could not be loaded ({first}); download them once with "
                              f"network access, or pass --keep-vocals to keep the vocals") from None
        sys.stderr.write(chatter.getvalue())
        return cls(model)

    @torch.no_grad()
    def accompaniment(self, audio: np.ndarray) -> np.ndarray:
        """float32 [C, S] at ``sample_rate`` (C = ``channels``) -> the mix without the vocals stem, [C, S]."""
        from demucs.apply import apply_model

        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        reference = wav.mean(0)  # normalise by the mono mix, as demucs.separate does
        mean, std = reference.mean(), reference.std().clamp_min(1e-8)
        sources = apply_model(self.model, ((wav - mean) / std)[None], split=True, overlap=0.25, progress=False,
                              device="cpu")[0]  # [stems, C, S]
        keep = [i for i, stem in enumerate(self.model.sources) if stem != "vocals"]
        return (sources[keep].sum(0) * std + mean).numpy().astype(np.float32)
