"""Quantizer interface shared by the compression models."""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
from torch import nn


@dataclasses.dataclass
class QuantizedResult:
    """Output of a quantizer's forward.

    Attributes:
        x: quantized latent ``[B, D, T]`` (straight-through gradients in training).
        codes: ``[B, K, T]`` int64.
        bandwidth: bits per second used, a scalar tensor (in kbps).
        penalty: commitment loss (scalar tensor) or None.
        metrics: free-form extra values.
    """

    x: torch.Tensor
    codes: torch.Tensor
    bandwidth: torch.Tensor
    penalty: tp.Optional[torch.Tensor] = None
    metrics: dict = dataclasses.field(default_factory=dict)


class BaseQuantizer(nn.Module):
    """A quantizer maps latents ``[B, D, T]`` to ``K`` parallel code streams ``[B, K, T]`` and back."""

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        """Quantize ``x`` ``[B, D, T]`` (updating codebooks in training); ``frame_rate`` gives the bandwidth."""
        raise NotImplementedError()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D, T]`` -> codes ``[B, K, T]`` int64."""
        raise NotImplementedError()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T]`` -> latent ``[B, D, T]``."""
        raise NotImplementedError()

    @property
    def total_codebooks(self) -> int:
        """Number of codebooks the quantizer has."""
        raise NotImplementedError()

    @property
    def num_codebooks(self) -> int:
        """Number of codebooks in use."""
        raise NotImplementedError()

    def set_num_codebooks(self, n: int) -> None:
        """Use only the first ``n`` codebooks."""
        raise NotImplementedError()


class DummyQuantizer(BaseQuantizer):
    """No quantization: the "codes" are the latent itself, ``[B, 1, D, T]``-like with one codebook."""

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        q = x.unsqueeze(1)
        bandwidth = torch.tensor(q.numel() * 32 * frame_rate / 1000 / len(x)).to(x)
        return QuantizedResult(x, q, bandwidth)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.squeeze(1)

    @property
    def total_codebooks(self) -> int:
        return 1

    @property
    def num_codebooks(self) -> int:
        return self.total_codebooks

    def set_num_codebooks(self, n: int) -> None:
        raise AttributeError("Cannot override the number of codebooks for the dummy quantizer")
