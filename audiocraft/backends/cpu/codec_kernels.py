"""Kernels of the prepared SEANet decoder (``csrc/codec_kernels.cpp``): ELU with an optional bias and the
point-wise part of an LSTM step, each in one pass, and a whole LSTM layer (every step's recurrent product and cell
update in one call, without the GIL).

PyTorch's ELU evaluates ``expm1`` to full precision and runs at a fifth of the speed of a copy; the decoder
applies it to ~10 million values per second of 32 kHz audio. Built like :mod:`.kernels` (same compiler, flags,
cache and ``AUDIOCRAFT_NATIVE_KERNELS=0`` switch); where it cannot be built, :func:`available` is False and the
decoder uses PyTorch's operations (the same results within 1e-6).
"""
from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
import subprocess
import typing as tp

import torch

from . import kernels

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "codec_kernels.cpp"


def _load() -> tp.Optional[ctypes.CDLL]:
    if os.environ.get("AUDIOCRAFT_NATIVE_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    compiler = kernels._compiler()
    if compiler is None:
        return None
    for openmp in (True, False):
        try:
            lib = ctypes.CDLL(str(kernels._build(compiler, openmp, (SOURCE,), ())))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            logger.info("Codec kernels not built (openmp=%s): %s", openmp, exc)
            continue
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.audiocraft_elu_rows.restype = ctypes.c_int
        lib.audiocraft_elu_rows.argtypes = [ptr, i64, ptr, i64, i64, i64, ptr, ctypes.c_float, ctypes.c_int]
        lib.audiocraft_lstm_cell.restype = ctypes.c_int
        lib.audiocraft_lstm_cell.argtypes = [ptr, i64, ptr, i64, ptr, i64, i64, i64]
        lib.audiocraft_codec_vector_width.restype = ctypes.c_int
        lib.audiocraft_codec_vector_width.argtypes = []
        lib.audiocraft_conv_few.restype = ctypes.c_int
        lib.audiocraft_conv_few.argtypes = [ptr, i64, i64, i64, ptr, i64, i64, i64, ptr, ptr, i64, ctypes.c_int,
                                            ctypes.c_int]
        lib.audiocraft_lstm_layer.restype = ctypes.c_int
        lib.audiocraft_lstm_layer.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, i64, i64, i64, ctypes.c_int]
        return lib
    return None


_library = kernels.LazyLibrary(_load)


def library() -> tp.Optional[ctypes.CDLL]:
    """The loaded library (built on first call), or None where it cannot be built."""
    return _library()


def available() -> bool:
    return library() is not None


def _row_stride(t: torch.Tensor) -> tp.Optional[int]:
    """The row stride of a float32 CPU tensor ``[..., C]`` whose rows are evenly spaced with unit-stride columns
    (None if it is not one)."""
    if t.dtype != torch.float32 or t.device.type != "cpu" or t.dim() < 2 or t.stride(-1) != 1:
        return None
    ld = None
    expected = 0
    for size, st in zip(reversed(t.shape[:-1]), reversed(t.stride()[:-1])):
        if size == 1:
            continue
        if ld is None:
            ld = expected = st
        elif st != expected:
            return None
        expected *= size
    ld = t.shape[-1] if ld is None else ld
    return ld if ld >= t.shape[-1] else None


def elu_into(x: torch.Tensor, out: torch.Tensor, alpha: float = 1.0,
             bias: tp.Optional[torch.Tensor] = None) -> bool:
    """``out[...] = elu(x + bias)`` (``bias`` ``[C]`` or None; ``out`` may be ``x``); False (nothing done) where
    the kernel is not built or the layouts do not fit it (the caller then uses PyTorch)."""
    lib = library()
    if lib is None or x.shape != out.shape:
        return False
    if bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous() or bias.shape != x.shape[-1:]):
        return False
    ldx, ldy = _row_stride(x), _row_stride(out)
    if ldx is None or ldy is None:
        if x.dim() == 3:  # [B, n, C] views of larger buffers: one call per item
            return all(elu_into(xb, ob, alpha, bias) for xb, ob in zip(x, out))
        return False
    cols = x.shape[-1]
    rows = x.numel() // cols if cols else 0
    if rows == 0:
        return True
    return lib.audiocraft_elu_rows(x.data_ptr(), ldx, out.data_ptr(), ldy, rows, cols,
                                   None if bias is None else bias.data_ptr(), float(alpha),
                                   torch.get_num_threads()) == 0


def lstm_cell(gates: torch.Tensor, cell: torch.Tensor, hidden: torch.Tensor) -> bool:
    """One LSTM step's point-wise part: ``gates [B, 4H]`` -> ``cell [B, H]`` (in place) and ``hidden [B, H]``;
    False (nothing done) where the kernel is not built or the layouts do not fit it."""
    lib = library()
    if lib is None or gates.dim() != 2 or cell.dim() != 2:
        return False
    batch, size = cell.shape
    if gates.shape != (batch, 4 * size) or hidden.shape != (batch, size):
        return False
    strides = [_row_stride(t) for t in (gates, cell, hidden)]
    if any(ld is None for ld in strides):
        return False
    return lib.audiocraft_lstm_cell(gates.data_ptr(), strides[0], cell.data_ptr(), strides[1], hidden.data_ptr(),
                                    strides[2], batch, size) == 0


def pack_lstm_weight(w_hh: torch.Tensor) -> tp.Optional[torch.Tensor]:
    """``W_hh [4H, H]`` (gates i, f, g, o) in the layout of :func:`lstm_layer`: ``[H / VW, H, 4, VW]`` (for each
    block of VW hidden units, its four gates' rows side by side); None where the kernel is not built or H is not
    a multiple of the vector width VW."""
    lib = library()
    if lib is None or w_hh.dim() != 2 or w_hh.dtype != torch.float32 or w_hh.device.type != "cpu":
        return None
    size = w_hh.shape[1]
    width = int(lib.audiocraft_codec_vector_width())
    if w_hh.shape[0] != 4 * size or size % width:
        return None
    return w_hh.reshape(4, size // width, width, size).permute(1, 3, 0, 2).contiguous()


def lstm_layer(gates_in: torch.Tensor, packed: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor,
               out: torch.Tensor) -> None:
    """Every step of one LSTM layer: ``gates = gates_in[t] + hidden @ W_hh^T``, the cell update, ``out[t] = hidden``.

    Args:
        gates_in: ``[T, B, 4H]`` float32, unit-stride rows (the input projections with both biases).
        packed: ``W_hh`` from :func:`pack_lstm_weight`.
        hidden, cell: contiguous ``[B, H]``: the state before the first step, replaced by the state after the last.
        out: contiguous ``[T, B, H]``.
    """
    lib = library()
    steps, batch, width = gates_in.shape
    size = hidden.shape[-1]
    if lib is None or width != 4 * size or gates_in.stride(-1) != 1 or gates_in.stride(0) != batch * gates_in.stride(1):
        raise ValueError(f"lstm_layer: gates_in {tuple(gates_in.shape)} does not fit hidden {tuple(hidden.shape)}")
    for t, shape in ((hidden, (batch, size)), (cell, (batch, size)), (out, (steps, batch, size))):
        if t.shape != shape or not t.is_contiguous() or t.dtype != torch.float32:
            raise ValueError(f"lstm_layer: expected a contiguous float32 tensor {shape}, got {tuple(t.shape)}")
    code = lib.audiocraft_lstm_layer(gates_in.data_ptr(), gates_in.stride(1), packed.data_ptr(), hidden.data_ptr(),
                                     cell.data_ptr(), out.data_ptr(), steps, batch, size, torch.get_num_threads())
    if code != 0:
        raise ValueError("lstm_layer: the kernel refused its arguments")


def conv_few(x: torch.Tensor, weight: torch.Tensor, dilation: int, bias: tp.Optional[torch.Tensor],
             out: torch.Tensor, accumulate: bool) -> bool:
    """A convolution with few output channels on time-major rows: ``out[t, o] (+)= bias[o] + sum_j x[t + j *
    dilation] . weight[o, j]`` for ``x [L, C_in]`` (unit-stride rows), ``weight [C_out, k, C_in]`` contiguous and
    ``out [m, C_out]`` with ``L >= m + (k - 1) * dilation``; False (nothing done) where the kernel is not built
    or the layouts do not fit it."""
    lib = library()
    if lib is None or x.dim() != 2 or out.dim() != 2 or weight.dim() != 3 or not weight.is_contiguous():
        return False
    cout, taps, cin = weight.shape
    rows = out.shape[0]
    ldx, ldy = _row_stride(x), _row_stride(out)
    if ldx is None or ldy is None or x.shape[1] != cin or out.shape[1] != cout or \
            x.shape[0] < rows + (taps - 1) * dilation or x.dtype != torch.float32 or out.dtype != torch.float32:
        return False
    if bias is not None and (not bias.is_contiguous() or bias.shape != (cout,) or bias.dtype != torch.float32):
        return False
    if rows == 0:
        return True
    return lib.audiocraft_conv_few(x.data_ptr(), ldx, rows, cin, weight.data_ptr(), cout, taps, dilation,
                                   None if bias is None else bias.data_ptr(), out.data_ptr(), ldy, int(accumulate),
                                   torch.get_num_threads()) == 0
