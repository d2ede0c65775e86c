"""How the diffusion U-Net's convolutions and dropouts are computed, chosen outside the model.

:class:`~audiocraft.models.unet.DiffusionUnet` calls ``self.ops.conv1d`` / ``conv_transpose1d`` / ``dropout``;
:class:`DiffusionOps` computes them with PyTorch's modules and functions. A backend gives the same math faster
(:func:`audiocraft.backends.prepare_diffusion`; on CPU: :mod:`audiocraft.backends.cpu.diffusion`).
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn
from torch.nn import functional as F


class DiffusionOps:
    """PyTorch's own convolutions and dropout."""

    def conv1d(self, conv: nn.Conv1d, x: torch.Tensor, length: tp.Optional[int] = None) -> torch.Tensor:
        """``conv(x)``, ``x`` ``[B, C, T]`` first right-padded with zeros to ``length`` samples."""
        if length is not None and length > x.shape[-1]:
            x = F.pad(x, (0, length - x.shape[-1]))
        return conv(x)

    def conv_transpose1d(self, conv: nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
        """``conv(x)`` for a transposed convolution."""
        return conv(x)

    def dropout(self, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        """``F.dropout(x, p, training)``: draws from torch's global generator."""
        return F.dropout(x, p, training)


TORCH_DIFFUSION_OPS = DiffusionOps()
