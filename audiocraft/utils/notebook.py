"""Notebook helpers: play generated audio inline in Jupyter / Colab."""
from __future__ import annotations

import typing as tp

import torch

from .validation import check_number


def display_audio(samples: torch.Tensor, sample_rate: int) -> tp.List[tp.Any]:
    """Show one audio player per item of ``samples`` (``[B, C, T]``, ``[C, T]`` or ``[T]``, float).

    Returns the list of ``IPython.display.Audio`` objects it displayed (IPython is imported only here).
    """
    from IPython.display import Audio, display  # lazy: only notebooks have IPython

    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor [B, C, T], got {type(samples).__name__}.")
    check_number("sample_rate", sample_rate, minimum=0, strict_min=True, integer=True)
    if samples.dim() == 1:
        samples = samples[None, None]
    elif samples.dim() == 2:
        samples = samples[None]
    elif samples.dim() != 3:
        raise ValueError(f"samples must have shape [B, C, T], [C, T] or [T], got {list(samples.shape)}.")
    players = []
    for audio in samples.detach().float().cpu():
        player = Audio(audio.numpy(), rate=sample_rate)
        display(player)
        players.append(player)
    return players
