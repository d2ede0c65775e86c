"""The CPU backend of the diffusion U-Net: convolutions as one matrix product each (:mod:`.conv_gemm`) and the
native dropout that draws torch's own random numbers (:mod:`.dropout`); anything else falls back to PyTorch."""
from __future__ import annotations

import typing as tp

import torch
from torch import nn

from ..diffusion import DiffusionOps
from . import conv_gemm
from .dropout import dropout


class NativeDiffusionOps(DiffusionOps):
    """Same results as :class:`DiffusionOps` up to float rounding (convolutions) and exactly (dropout)."""

    def conv1d(self, conv: nn.Conv1d, x: torch.Tensor, length: tp.Optional[int] = None) -> torch.Tensor:
        if x.device.type != "cpu" or conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            return super().conv1d(conv, x, length)
        return conv_gemm.conv1d(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0], conv.dilation[0], length)

    def conv_transpose1d(self, conv: nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or conv.groups != 1 or conv.output_padding[0] or conv.dilation[0] != 1:
            return super().conv_transpose1d(conv, x)
        return conv_gemm.conv_transpose1d(x, conv.weight, conv.bias, conv.stride[0], int(conv.padding[0]))

    def dropout(self, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        return dropout(x, p, training)
