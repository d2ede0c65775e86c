"""``dropout(x, p, training)``: the same result as ``torch.nn.functional.dropout`` on CPU, same random draws from
torch's global generator (same output, same generator state afterwards), several times faster.

MultiBandDiffusion runs its U-Nets in training mode (as Audiocraft does), so every transformer layer applies
dropout at inference and the random masks are part of the official output. PyTorch's CPU ``bernoulli_`` draws
one 64-bit number per element, one element at a time; the native kernel (:file:`csrc/dropout_kernels.cpp`)
produces the same MT19937 stream a block at a time and applies the mask in the same pass.

Before first use, the kernel is checked against the installed PyTorch on a few probes (the global generator is
restored afterwards); where it differs, where no C compiler is found (``backends.cpu.kernels``), for tensors that
need gradients, or for anything but dense float32 CPU tensors, PyTorch's own dropout runs instead.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import math
from pathlib import Path
import subprocess
import typing as tp

import numpy as np
import torch
from torch.nn import functional as F

from . import kernels

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "dropout_kernels.cpp"
_N = 624
_LEFT, _NEXT, _STATE = 8, 16, 24  # byte offsets in torch.get_rng_state(): int32 left, uint64 next, uint64[624]
_STATE_BYTES = _STATE + 8 * _N


def _load() -> tp.Optional[ctypes.CDLL]:
    if kernels.library() is None:  # disabled, or no compiler: nothing native here either
        return None
    compiler = kernels._compiler()
    if compiler is None:
        return None
    try:
        lib = ctypes.CDLL(str(kernels._build(compiler, False, (SOURCE,), ())))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        logger.info("The exact dropout kernel could not be built; using PyTorch's dropout. %s", exc)
        return None
    lib.audiocraft_exact_dropout.restype = ctypes.c_int
    lib.audiocraft_exact_dropout.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                             ctypes.c_int64, ctypes.c_uint64, ctypes.c_float]
    return lib


def _is_dense(x: torch.Tensor) -> bool:
    """Whether ``x``'s elements fill its memory span exactly (any dimension order), from offset 0 of a view."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(x.stride(), x.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


@functools.lru_cache(maxsize=16)
def _constants(p: float) -> tp.Tuple[int, float]:
    """(threshold, scale) of dropout ``p``: an element is kept when its 53-bit draw is below ``threshold``
    (``v * 2 ** -53 < 1 - p``), and kept elements are multiplied by PyTorch's float32 ``1 / (1 - p)``."""
    keep = 1.0 - p
    return math.ceil(keep * 2.0 ** 53), float(torch.tensor(1.0, dtype=torch.float32) / keep)


def _run(lib: ctypes.CDLL, x: tp.Optional[torch.Tensor], out: torch.Tensor, p: float) -> None:
    """Fill ``out`` (dense, same layout as ``x``) with ``x * noise`` (or the noise when ``x`` is None), drawing
    from torch's global generator and advancing it exactly as ``bernoulli_(1 - p)`` on ``out`` would."""
    state = torch.get_rng_state().numpy().copy()
    if state.size < _STATE_BYTES:
        raise RuntimeError("unexpected layout of torch.get_rng_state()")
    left = int(state[_LEFT:_LEFT + 4].view(np.int32)[0])
    if not 1 <= left <= _N:
        raise RuntimeError(f"unexpected generator position {left}")
    key = np.ascontiguousarray(state[_STATE:_STATE_BYTES].view(np.uint64).astype(np.uint32))
    pos = np.array([_N + 1 - left], dtype=np.int32)
    threshold, scale = _constants(p)
    code = lib.audiocraft_exact_dropout(key.ctypes.data, pos.ctypes.data, None if x is None else x.data_ptr(),
                                        out.data_ptr(), out.numel(), threshold, scale)
    if code != 0:
        raise RuntimeError("the exact dropout kernel refused its arguments")
    new_pos = int(pos[0])
    state[_LEFT:_LEFT + 4].view(np.int32)[0] = _N + 1 - new_pos
    state[_NEXT:_NEXT + 8].view(np.uint64)[0] = new_pos
    state[_STATE:_STATE_BYTES].view(np.uint64)[:] = key.astype(np.uint64)
    torch.set_rng_state(torch.from_numpy(state))


def _probe(lib: ctypes.CDLL) -> bool:
    """Whether the kernel reproduces this PyTorch's dropout and generator state on a few cases."""
    saved = torch.get_rng_state()
    try:
        cases = [(torch.randn(1000), 0.1), (torch.randn(53, 37).t(), 0.1), (torch.randn(5), 0.5),
                 (torch.randn(3, 700), 0.25)]
        torch.manual_seed(1234)
        torch.rand(311)  # start mid-block
        expected = [F.dropout(x, p, True) for x, p in cases] + [torch.rand(8)]
        torch.manual_seed(1234)
        torch.rand(311)
        got = []
        for x, p in cases:
            out = torch.empty_like(x)
            _run(lib, x, out, p)
            got.append(out)
        got.append(torch.rand(8))
        return all(torch.equal(a, b) for a, b in zip(got, expected))
    except RuntimeError as exc:
        logger.info("exact dropout probe failed: %s", exc)
        return False
    finally:
        torch.set_rng_state(saved)


def _load_checked() -> tp.Optional[ctypes.CDLL]:
    lib = _load()
    if lib is not None and not _probe(lib):
        logger.info("This PyTorch draws dropout masks differently: using PyTorch's dropout.")
        return None
    return lib


_library = kernels.LazyLibrary(_load_checked)


def library() -> tp.Optional[ctypes.CDLL]:
    """The kernel library, built and checked on first call; None where PyTorch's dropout must be used."""
    return _library()


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)``, bit for bit, including the random draws."""
    if not training or p == 0.0 or x.numel() == 0 or not 0.0 < p < 1.0:
        return F.dropout(x, p, training)
    if (x.device.type != "cpu" or x.dtype != torch.float32 or (x.requires_grad and torch.is_grad_enabled())
            or not _is_dense(x)):
        return F.dropout(x, p, training)
    lib = library()
    if lib is None:
        return F.dropout(x, p, training)
    out = torch.empty_like(x)  # same strides as x (dense): memory order is the draw order in both
    if out.stride() != x.stride():
        return F.dropout(x, p, training)
    _run(lib, x, out, p)
    return out
