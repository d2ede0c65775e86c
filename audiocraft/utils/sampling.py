"""Sampling from categorical distributions, with Audiocraft's exact semantics.

All functions take probabilities ``[..., card]`` (e.g. ``[B, K, card]``) and return indices ``[..., 1]``.
The draws are ONE ``torch.multinomial`` call over the flattened ``[N, card]`` rows, which is what makes a
seeded draw reproduce Audiocraft's. Pass a ``torch.Generator`` to keep the global RNG untouched. On CPU, one
sample per row and the top-k threshold run on the CPU backend's kernels where they build
(:mod:`audiocraft.backends.cpu.sampling`: the same results and generator state as the PyTorch calls, faster).
"""
from __future__ import annotations

import typing as tp

import torch

from .validation import ArgumentError


def multinomial(input: torch.Tensor, num_samples: int, replacement: bool = False, *,
                generator: tp.Optional[torch.Generator] = None) -> torch.Tensor:
    """``torch.multinomial`` over the last dimension of a tensor of any rank: ``[..., card] -> [..., num_samples]``."""
    rows = input.reshape(-1, input.shape[-1])
    out = _cpu_backend().multinomial_one(rows, generator) if num_samples == 1 and _on_cpu(rows) else None
    if out is None:
        out = torch.multinomial(rows, num_samples=num_samples, replacement=replacement, generator=generator)
    return out.reshape(*input.shape[:-1], -1)


def _on_cpu(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32


def _cpu_backend() -> tp.Any:
    from ..backends.cpu import sampling  # imported when first used: ``import audiocraft`` stays light
    return sampling


def sample_top_k(probs: torch.Tensor, k: int, *, generator: tp.Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample among the entries >= the k-th largest probability (ties kept), renormalised: ``[..., card] ->
    [..., 1]``. ``probs`` is not modified."""
    if k < 1:
        raise ArgumentError(f"top_k must be >= 1, got {k}.")
    k = min(k, probs.shape[-1])
    kth = _cpu_backend().kth_largest(probs.reshape(-1, probs.shape[-1]), k) if _on_cpu(probs) else None
    kth = torch.topk(probs, k, dim=-1)[0][..., -1:] if kth is None else kth.view(*probs.shape[:-1], 1)
    kept = probs * (probs >= kth).float()
    kept = kept / kept.sum(dim=-1, keepdim=True)
    return multinomial(kept, num_samples=1, generator=generator)


def sample_top_p(probs: torch.Tensor, p: float, *, generator: tp.Optional[torch.Generator] = None) -> torch.Tensor:
    """Nucleus sampling: sort descending, keep the entries whose preceding cumulative mass is <= ``p``
    (``cumsum - prob <= p``, so the most likely entry is always kept), renormalise, sample, map back to the
    original indices: ``[..., card] -> [..., 1]``. ``probs`` is not modified."""
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"top_p must be in [0, 1], got {p}.")
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
    drop = torch.cumsum(probs_sort, dim=-1) - probs_sort > p
    kept = probs_sort * (~drop).float()
    kept = kept / kept.sum(dim=-1, keepdim=True)
    choice = multinomial(kept, num_samples=1, generator=generator)
    return torch.gather(probs_idx, -1, choice)
