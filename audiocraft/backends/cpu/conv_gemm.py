"""1D convolutions written as one matrix product each (im2col / col2im), for CPU inference.

On CPU, PyTorch's oneDNN convolutions are slow for the shapes of the diffusion U-Net: strided and transposed
convolutions with thousands of channels run at half the speed of a matrix product of the same size, and tiny
convolutions (the test models) cost a fixed ~0.5 ms or more per call. Here each kernel tap's (shifted, strided)
view of the input is copied into one column matrix (zeros where the window leaves the signal: no padded copy of
the input) and multiplied by the weight; the transposed convolution multiplies first and overlap-adds the
``kernel`` outputs of each frame. Same results as ``F.conv1d`` / ``F.conv_transpose1d`` up to float rounding (sums
in another order); differentiable.
"""
from __future__ import annotations

import typing as tp

import torch
from torch.nn import functional as F


def _columns(x: torch.Tensor, K: int, stride: int, padding: int, dilation: int, length: int) -> torch.Tensor:
    """``[B, C, K, T]``: tap ``k`` of output ``t`` is ``x[..., t * stride + k * dilation - padding]``, 0 outside
    ``x``; ``T`` as for a signal of ``length`` (>= the length of ``x``: zeros on the right)."""
    B, C, L = x.shape
    T = (length + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    columns = x.new_empty(B, C, K, T)
    for k in range(K):
        offset = k * dilation - padding  # input index of output t: t * stride + offset
        first = max(0, -(-(-offset) // stride))  # first t with t * stride + offset >= 0
        last = min(T, (L - 1 - offset) // stride + 1)  # one past the last t reading inside x
        if last <= first:
            columns[:, :, k].zero_()
            continue
        start = first * stride + offset
        columns[:, :, k, first:last] = x[:, :, start:start + (last - first - 1) * stride + 1:stride]
        if first > 0:
            columns[:, :, k, :first].zero_()
        if last < T:
            columns[:, :, k, last:].zero_()
    return columns


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None, stride: int = 1,
           padding: int = 0, dilation: int = 1, length: tp.Optional[int] = None) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, stride, padding, dilation)`` for ``x`` ``[B, C, L]``, ``weight`` ``[O, C, K]``
    (no groups) -> ``[B, O, T]``. ``length`` (>= L) treats ``x`` as right-padded with zeros to that length."""
    B, C, L = x.shape
    O, _, K = weight.shape
    length = L if length is None else max(length, L)
    if K == 1 and stride == 1 and padding == 0 and length == L:
        out = torch.matmul(weight.view(O, C), x)
    else:
        columns = _columns(x, K, stride, padding, dilation, length)
        out = torch.matmul(weight.reshape(O, C * K), columns.view(B, C * K, -1))  # rows (c, k), as the weight
    return out if bias is None else out.add_(bias.view(1, -1, 1))


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
