"""The CPU backend: native kernels, packed weight formats and thread handling for fast CPU inference.

- :mod:`.kernels`: the matrix-vector and single-query attention kernels of ``csrc/linear_kernels.cpp``,
  compiled on first use (PyTorch's oneDNN / fbgemm kernels are used where no compiler is found);
- :mod:`.packing`: linear weights rearranged once for those kernels (float32, bf16, int8), swapped into a
  model's modules without changing their parameters or state-dict keys;
- :mod:`.formats`: which format an LM gets for ``dtype`` / ``quantize``, and :func:`prepare` of a loaded LM;
- :mod:`.attention`: the attention backend of a decoding step;
- :mod:`.decoding`: a whole decoding step of a transformer layer in one native call;
- :mod:`.threads`: releasing idle OpenMP pools around a generation.
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn

from ..attention import AttentionBackend
from . import kernels
from .attention import NativeAttention
from .decoding import fuse_decoding_layers, unfuse_decoding_layers
from .formats import PACKED_SUBMODULES, prepare_lm_for_inference, weight_format
from .threads import release_openmp_threads, released_threads

__all__ = ["prepare", "Prepacking", "weight_format", "released_threads", "release_openmp_threads",
           "state_prepacking"]

Prepacking = kernels.Prepacking


def use_native_attention(model: nn.Module) -> int:
    """Give every attention module under ``model`` the native decoding-step backend (where the kernels are
    built); returns how many got it."""
    if not kernels.available():
        return 0
    count = 0
    for module in model.modules():
        backend = getattr(module, "backend", None)
        setter: tp.Any = getattr(module, "set_attention_backend", None)
        if isinstance(backend, AttentionBackend) and setter is not None and not isinstance(backend, NativeAttention):
            setter(NativeAttention(backend))
            count += 1
    return count


def prepare(lm: nn.Module, dtype: tp.Optional[torch.dtype] = None, quantize: tp.Optional[str] = None,
            pack: bool = True, release_sources: bool = False) -> nn.Module:
    """Make a CPU language model fast for inference, in place: pack its linear weights in the format of
    ``dtype`` / ``quantize`` (see :mod:`.formats`), run its decoding-step attention on the native kernel and, with
    packed weights, each layer's decoding step as one native call (:mod:`.decoding`)."""
    prepare_lm_for_inference(lm, dtype=dtype, quantize=quantize, pack=pack, release_sources=release_sources)
    use_native_attention(lm)
    if _natively_packed(lm):
        fuse_decoding_layers(lm)
    else:
        unfuse_decoding_layers(lm)
    return lm


def _natively_packed(lm: nn.Module) -> bool:
    """Whether some linear map of ``lm`` holds weights packed for the native kernels."""
    from .packing import PackableWeights, _NativePacked
    return any(isinstance(weight, _NativePacked) for module in lm.modules() if isinstance(module, PackableWeights)
               for weight in (module.__dict__.get("_packed") or {}).values())


def state_prepacking(state: tp.Mapping[str, tp.Any], release_sources: bool = False) -> Prepacking:
    """Start packing, on a background thread, the float32 weights of an LM state dict that :func:`prepare` will
    pack (those under :data:`PACKED_SUBMODULES`); use it as a context manager around building and preparing."""
    prefixes = tuple(f"{name}." for name in PACKED_SUBMODULES)
    return Prepacking([v for k, v in state.items() if isinstance(v, torch.Tensor) and v.dtype == torch.float32
                       and str(k).startswith(prefixes)], release_sources=release_sources)
