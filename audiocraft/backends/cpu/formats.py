"""Weight formats of the language model for fast CPU inference.

Generation reads every weight of the LM once per decoding step, so on CPU its speed is set by how many bytes of
weights there are and how fast a kernel streams them (:mod:`audiocraft.backends.cpu.packing`).
:func:`prepare_lm_for_inference` packs the LM's transformer and output heads in place:

======================================  =========================  ==============================================
call                                    weights read per step      results
======================================  =========================  ==============================================
``prepare_lm_for_inference(lm)``        float32, packed layout     the same float32 math (logits move by ~1e-6)
``dtype=torch.bfloat16``                bfloat16 (2 bytes)         bf16-rounded weights, float32 activations
``quantize='int8'``                     int8 + a scale per row     int8 weights; activations on int16 per row,
                                                                   products summed exactly (native kernels)
======================================  =========================  ==============================================

With the native kernels (:mod:`audiocraft.backends.cpu.kernels`, the default where a C++ compiler is found) the
float32 format is ``'native'``; without them it is ``'onednn'`` and bf16 / int8 run on fbgemm (whose int8
quantizes activations to 8 bits per tensor: a larger error).

With packed weights a decoding step runs each transformer layer on the native kernel (:mod:`.decoding`); with
bf16 or int8 weights it also keeps the self-attention keys and values in float16 (rounded to nearest, saturating at
+-65504), which halves the other large read of a step (the cache grows with the audio: at 10 s and batch 4 it is
as large as the int8 weights); float32 weights keep a float32 cache (the exact math).

Embeddings, norms and the conditioners (T5) are left as they are. On other devices than the CPU nothing is
packed: ``dtype`` converts the whole LM (``lm.to(dtype)``) and ``quantize`` is refused.
"""
from __future__ import annotations

import typing as tp

import torch

from torch import nn

from .packing import pack_linear_weights, packing_available, unpack_linear_weights

QUANTIZE_OPTIONS = ("int8",)
# The LM's submodules whose linear maps are packed (embeddings, norms and conditioners are left as they are).
PACKED_SUBMODULES = ("transformer", "linears")
_DTYPES = (torch.float32, torch.bfloat16)


def weight_format(dtype: tp.Optional[torch.dtype] = None, quantize: tp.Optional[str] = None) -> str:
    """The packing kind (see :mod:`audiocraft.backends.cpu.packing`) for ``dtype`` / ``quantize``."""
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"dtype must be None, torch.float32 or torch.bfloat16 on CPU, got {dtype}.")
    if quantize is not None and quantize not in QUANTIZE_OPTIONS:
        raise ValueError(f"quantize must be None or one of {QUANTIZE_OPTIONS}, got {quantize!r}.")
    if quantize is not None and dtype not in (None, torch.float32):
        raise ValueError(f"quantize={quantize!r} stores int8 weights; it cannot be combined with dtype={dtype}.")
    if quantize == "int8":
        return "int8"
    if dtype == torch.bfloat16:
        return "bf16"
    return "native" if packing_available("native") else "onednn"


def prepare_lm_for_inference(lm: nn.Module, dtype: tp.Optional[torch.dtype] = None,
                             quantize: tp.Optional[str] = None, pack: bool = True,
                             release_sources: bool = False) -> nn.Module:
    """Make ``lm`` fast for inference, in place (see the module docstring); returns ``lm``.

    Args:
        lm: a float32 language model.
        dtype: None or ``torch.float32`` (exact), or ``torch.bfloat16`` (bf16 weights).
        quantize: None, or ``'int8'`` (int8 weight-only, one scale per output channel).
        pack: on CPU, pack the float32 weights for oneDNN (ignored with ``dtype``/``quantize``, which always pack).
            Without the oneDNN kernels in this PyTorch build, float32 weights stay as they are.
        release_sources: the LM was just loaded memory-mapped: release the file pages of each dense weight once
            it is packed (peak memory: one copy of the weights).
    Raises:
        ValueError: unknown ``dtype`` / ``quantize``, or ``quantize`` off the CPU.
    """
    device = next(iter(lm.parameters())).device
    if device.type != "cpu":
        if quantize is not None:
            raise ValueError(f"quantize={quantize!r} is only implemented for CPU inference; the LM is on {device}.")
        if dtype is not None:
            lm.to(dtype)
        return lm
    kind = weight_format(dtype, quantize)
    if kind in ("native", "onednn") and (not pack or not packing_available(kind)):
        unpack_linear_weights(lm)
        return lm
    if not packing_available(kind):
        raise RuntimeError(f"This PyTorch build lacks the CPU kernels for {kind!r} weights.")
    for name in PACKED_SUBMODULES:
        pack_linear_weights(getattr(lm, name), kind, release_sources=release_sources)
    return lm
