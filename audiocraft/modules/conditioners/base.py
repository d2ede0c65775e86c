"""Base classes of the conditioners: each turns raw conditions into (embeddings, mask) of the LM's width.

A conditioner works in two steps, so that the costly, non-differentiable part can run in a data loader:
``tokenize`` (raw batch -> tensors on the right device) then ``forward`` (tensors -> ``(embeds [B, T, D], mask
[B, T])``). Every conditioner ends with ``output_proj``, a Linear from its own width ``dim`` to ``output_dim``.
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn

from ...utils.utils import length_to_mask
from .attributes import ConditionType, WavCondition
from ...utils.validation import ArgumentError, ArgumentTypeError


class BaseConditioner(nn.Module):
    """Common part of all conditioners: ``output_proj`` = Linear(dim, output_dim).

    Args:
        dim: width of the conditioner's own embeddings.
        output_dim: width expected by the language model.
    """

    def __init__(self, dim: int, output_dim: int) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArgumentError(f"{name} must be a positive int, got {value!r}.")
        self.dim = dim
        self.output_dim = output_dim
        self.output_proj = nn.Linear(dim, output_dim)

    def tokenize(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        """Raw batch -> whatever ``forward`` takes, on the conditioner's device."""
        raise NotImplementedError(f"{type(self).__name__} does not implement tokenize().")

    def forward(self, inputs: tp.Any) -> ConditionType:
        """Tokenized batch -> (embeds [B, T, output_dim], mask [B, T])."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward().")


class TextConditioner(BaseConditioner):
    """A conditioner fed by ``ConditioningAttributes.text`` (one ``str | None`` per sample)."""


class WaveformConditioner(BaseConditioner):
    """A conditioner fed by a :class:`WavCondition`; subclasses implement :meth:`_get_wav_embedding`.

    ``forward`` projects the wav embedding and masks it by the valid lengths, downsampled by
    :meth:`_downsampling_factor`, unless ``_use_masking`` is False (then the mask is all ones). The mask is float.

    Args:
        dim: width of the wav embedding.
        output_dim: width expected by the language model.
        device: device the waveforms are moved to by ``tokenize``.
    """

    def __init__(self, dim: int, output_dim: int, device: tp.Union[torch.device, str] = "cpu") -> None:
        super().__init__(dim, output_dim)
        self.device = device
        self._use_masking = True

    def tokenize(self, x: WavCondition) -> WavCondition:
        """Move the batch to ``self.device``."""
        if not isinstance(x, WavCondition):
            raise ArgumentTypeError(f"{type(self).__name__}.tokenize expects a WavCondition, got {type(x).__name__}.")
        if x.length is None:
            raise ArgumentError("WavCondition.length must be given (a [B] tensor of valid lengths).")
        wav, length, sample_rate, path, seek_time = x
        return WavCondition(wav.to(self.device), length.to(self.device), sample_rate, path, seek_time)

    def _get_wav_embedding(self, x: WavCondition) -> torch.Tensor:
        """WavCondition -> embedding [B, T', dim]."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _get_wav_embedding().")

    def _downsampling_factor(self) -> int:
        """Number of input samples per embedding frame (used to turn lengths into a mask)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _downsampling_factor().")

    def forward(self, x: WavCondition) -> ConditionType:
        """WavCondition -> (embeds [B, T', output_dim], mask [B, T'] float)."""
        with torch.no_grad():
            embeds = self._get_wav_embedding(x)
        embeds = self.output_proj(embeds.to(self.output_proj.weight))
        if x.length is not None and self._use_masking:
            frames = x.length.to(embeds.device) / self._downsampling_factor()
            mask = length_to_mask(frames, max_len=embeds.shape[1]).to(embeds.dtype)
        else:
            mask = torch.ones_like(embeds[..., 0])
        return embeds * mask.unsqueeze(-1), mask
