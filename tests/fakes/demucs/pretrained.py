"""Fake ``demucs.pretrained``: ``get_model`` returns a parameter-free 'separator'."""
import torch
from torch import nn


class HalfMixSeparator(nn.Module):
    """Looks like htdemucs from the outside (rate, channels, sources); each source is 0.5 * mix."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.samplerate = 44100
        self.audio_channels = 2
        self.sources = ["drums", "bass", "other", "vocals"]

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix [B, C, T] -> stems [B, S, C, T]."""
        half = mix * 0.5
        return torch.stack([half] * len(self.sources), dim=1)


def get_model(name: str = "htdemucs", repo=None) -> HalfMixSeparator:
    return HalfMixSeparator(name)
