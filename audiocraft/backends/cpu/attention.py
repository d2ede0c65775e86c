"""The CPU attention backend: a decoding step (one query over the key/value cache) on the native kernel."""
from __future__ import annotations

import typing as tp

import torch

from ..attention import AttentionBackend
from . import kernels


class NativeAttention(AttentionBackend):
    """One float32 CPU query step without mask, dropout or gradient runs on :func:`kernels.attend` (each cached
    key and value read once, from the cache's views); everything else goes to ``fallback``."""

    def __init__(self, fallback: AttentionBackend) -> None:
        self.fallback = fallback
        self.name = fallback.name

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: tp.Optional[torch.Tensor] = None,
               is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
        if (mask is None and not is_causal and dropout_p == 0.0 and q.shape[2] == 1 and q.dtype == torch.float32
                and k.dtype == torch.float32 and q.device.type == "cpu" and k.shape[2] > 0
                and not torch.is_grad_enabled()):
            return kernels.attend(q, k, v)
        return self.fallback.attend(q, k, v, mask, is_causal, dropout_p)
