"""1D convolutions written as one matrix product each (im2col / col2im), for CPU inference.

On CPU, PyTorch's oneDNN convolutions are slow for the shapes of the diffusion U-Net: strided and transposed
convolutions with thousands of channels run at half the speed of a matrix product of the same size, and tiny
convolutions (the test models) cost a fixed ~0.5 ms or more per call. Here the input windows are gathered with
``unfold`` (one copy, ``kernel / stride`` times the input) and multiplied by the flattened weight; the transposed
convolution multiplies first and overlap-adds the ``kernel`` outputs of each frame with ``fold``. Same results as
``F.conv1d`` / ``F.conv_transpose1d`` up to float rounding (sums in another order); differentiable.
"""
from __future__ import annotations

import typing as tp

import torch
from torch.nn import functional as F


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None, stride: int = 1,
           padding: int = 0, dilation: int = 1) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, stride, padding, dilation)`` for ``x`` ``[B, C, L]``, ``weight`` ``[O, C, K]``
    (no groups) -> ``[B, O, T]``."""
    B, C, _ = x.shape
    O, _, K = weight.shape
    if padding:
        x = F.pad(x, (padding, padding))
    span = (K - 1) * dilation + 1
    windows = x.unfold(2, span, stride)  # [B, C, T, span] (a view)
    if dilation > 1:
        windows = windows[..., ::dilation]
    T = windows.shape[2]
    if K == 1:
        columns = windows[..., 0]
    else:
        columns = windows.permute(0, 1, 3, 2).reshape(B, C * K, T)  # rows (c, k), like weight.view(O, C * K)
    out = torch.matmul(weight.reshape(O, C * K), columns)
    return out if bias is None else out + bias.view(1, -1, 1)


def conv_transpose1d(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                     stride: int = 1, padding: int = 0) -> torch.Tensor:
    """``F.conv_transpose1d(x, weight, bias, stride, padding)`` for ``x`` ``[B, C, T]``, ``weight`` ``[C, O, K]``
    (no groups, no output padding) -> ``[B, O, (T - 1) * stride - 2 * padding + K]``."""
    B, C, T = x.shape
    _, O, K = weight.shape
    frames = torch.matmul(weight.permute(1, 2, 0).reshape(O * K, C), x)  # [B, O * K, T]: rows (o, k)
    length = (T - 1) * stride + K
    out = F.fold(frames, output_size=(1, length), kernel_size=(1, K), stride=(1, stride))[:, :, 0]
    out = out[:, :, padding:length - padding]
    return out if bias is None else out + bias.view(1, -1, 1)
