"""Attention backends: how ``softmax(q k^T / sqrt(D) + mask) v`` is computed, chosen once, outside the model.

:class:`~audiocraft.modules.transformer.StreamingMultiheadAttention` computes its projections, masks and caches
and hands the product to its backend's :meth:`AttentionBackend.attend`. A backend is picked by name when the
module is built (``attention_backend='torch' | 'xformers'``) and may be replaced later by a faster one for the
same math (:meth:`StreamingMultiheadAttention.set_attention_backend`; the CPU backend of
:mod:`audiocraft.backends.cpu` does so at load time).
"""
from __future__ import annotations

import importlib.util
import typing as tp

import torch
from torch.nn import functional as F


class AttentionBackend:
    """PyTorch's ``scaled_dot_product_attention``: every device, every mask, training included."""
    name = "torch"

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: tp.Optional[torch.Tensor] = None,
               is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
        """q ``[B, H, T, D]``, k / v ``[B, H, S, D]`` -> ``[B, H, T, D]``.

        ``mask``: bool (True = attend) or additive float, broadcastable to ``[B, H, T, S]``; ``is_causal``: the
        T queries are the first T keys' times (no mask then); ``dropout_p``: on the attention weights."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class XFormersAttention(AttentionBackend):
    """xformers' memory-efficient kernel for CUDA tensors without an explicit mask; SDPA otherwise."""
    name = "xformers"

    def __init__(self) -> None:
        if importlib.util.find_spec("xformers") is None:
            raise ImportError("attention_backend='xformers' needs the xformers package (pip install xformers).")

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: tp.Optional[torch.Tensor] = None,
               is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
        if not q.is_cuda or mask is not None:
            return super().attend(q, k, v, mask, is_causal, dropout_p)
        from xformers import ops as xops  # optional dependency, CUDA only
        bias = xops.LowerTriangularMask() if is_causal else None
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              attn_bias=bias, p=dropout_p)
        return out.transpose(1, 2)


ATTENTION_BACKENDS: tp.Dict[str, tp.Type[AttentionBackend]] = {"torch": AttentionBackend,
                                                               "xformers": XFormersAttention}


def get_attention_backend(name: str) -> AttentionBackend:
    """The backend registered as ``name`` (one of :data:`ATTENTION_BACKENDS`)."""
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"Unknown attention_backend {name!r}; expected one of {tuple(ATTENTION_BACKENDS)}.")
    return ATTENTION_BACKENDS[name]()
