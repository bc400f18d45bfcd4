"""VGGish embeddings (Hershey et al., "CNN Architectures for Large-Scale Audio Classification", 2017) for FAD.

The FAD papers embed with VGGish: 16 kHz audio -> log-mel patches of 0.96 s (96 frames x 64 bands) -> a VGG
network -> one 128-d vector per patch. The frontend below follows the reference ``mel_features.py`` of
tensorflow/models (periodic Hann window of 25 ms, hop 10 ms, FFT 512, mel filters triangular *in mel*
between 125 and 7500 Hz, ``log(mel + 0.01)``). The network's parameter names match harritaylor/torchvggish's
PyTorch port of the published checkpoint, so the weights load with a strict, key-by-key check. Like the Google
FAD reference and the ``frechet_audio_distance`` package, the embedding is the last layer *before* its ReLU,
without the AudioSet PCA/quantisation post-processing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from torch import nn

# The published checkpoint (harritaylor/torchvggish v0.1 release); torch.hub caches it under
# $TORCH_HOME/hub/checkpoints/, so a machine that fetched it once (or got the file copied there) works offline.
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
SAMPLE_RATE = 16_000
PATCH_FRAMES, MEL_BANDS = 96, 64


def _mel_matrix(n_fft_bins: int = 257, low_hz: float = 125.0, high_hz: float = 7500.0) -> np.ndarray:
    """``[n_fft_bins, 64]`` triangular filters, linear in the HTK mel scale (VGGish's ``spectrogram_to_mel_matrix``)."""
    def to_mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)

    bins_mel = to_mel(np.linspace(0.0, SAMPLE_RATE / 2, n_fft_bins))
    edges = np.linspace(to_mel(low_hz), to_mel(high_hz), MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no band (as in the reference)
    return weights


def log_mel_patches(wav: np.ndarray) -> np.ndarray:
    """16 kHz mono ``[samples]`` -> log-mel patches ``[N, 96, 64]`` float32 (0.96 s each, no overlap).

    Audio shorter than one patch is zero-padded to one patch rather than dropped.
    """
    win, hop, n_fft = 400, 160, 512
    wav = np.pad(np.asarray(wav, np.float64), (0, max(0, win + hop * (PATCH_FRAMES - 1) - len(wav))))
    n_frames = 1 + (len(wav) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wav, win)[::hop][:n_frames]  # [F, 400]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, n_fft))  # [F, 257]
    log_mel = np.log(magnitude @ _mel_matrix() + 0.01)  # [F, 64]
    n_patches = n_frames // PATCH_FRAMES
    return log_mel[: n_patches * PATCH_FRAMES].reshape(n_patches, PATCH_FRAMES, MEL_BANDS).astype(np.float32)


class VGGish(nn.Module):
    """VGG-style network: ``[N, 1, 96, 64]`` log-mel patches -> ``[N, 128]`` embeddings."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 1
        for width in (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool"):
            if width == "pool":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(512 * 6 * 4, 4096), nn.ReLU(True), nn.Linear(4096, 4096),
                                        nn.ReLU(True), nn.Linear(4096, 128))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.features(patches)  # [N, 512, 6, 4] (time, frequency)
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels last, as the TensorFlow original flattens
        return self.embeddings(x)  # [N, 128]


@dataclass
class VGGishEmbedder:
    """FAD embedder: 16 kHz ``[samples]`` -> ``[N, 128]``, one row per 0.96 s patch."""

    model: VGGish
    name: str = "vggish"
    sample_rate: int = SAMPLE_RATE
    batch_size: int = 32

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> np.ndarray:
        patches = torch.from_numpy(log_mel_patches(wav))[:, None]  # [N, 1, 96, 64]
        out = [self.model(patches[i:i + self.batch_size]) for i in range(0, len(patches), self.batch_size)]
        return torch.cat(out).numpy()


def load_vggish(weights: str | Path | None = None) -> VGGishEmbedder:
    """VGGish with the published weights: from ``weights`` (a ``.pth`` state dict) or the torch.hub cache/URL.

    Raises ``OSError``/``URLError`` when the weights are neither local nor downloadable (offline).
    """
    if weights is not None:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    else:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGGISH_URL).name
        try:
            state = torch.hub.load_state_dict_from_url(VGGISH_URL, map_location="cpu", progress=False)
        except (OSError, URLError) as error:  # URLError is an OSError; named for the reader
            raise OSError(f"no VGGish weights at {cached} (put {VGGISH_URL} there or pass --vggish-weights); "
                          f"download failed: {error}") from None
    model = VGGish()
    model.load_state_dict(state, strict=True)
    return VGGishEmbedder(model.eval())
