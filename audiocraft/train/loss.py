"""The MusicGen training loss: cross-entropy over the codebooks of the delayed pattern."""
from __future__ import annotations

import typing as tp

import torch
import torch.nn.functional as F


def compute_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                          ) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
    """Cross-entropy per codebook over its valid positions, averaged over the codebooks.

    Args:
        logits: ``[B, K, T, card]`` float (positions where ``mask`` is False may hold NaN: they are never read).
        targets: ``[B, K, T]`` int64 codes in ``[0, card)``.
        mask: ``[B, K, T]`` bool, True where the prediction is valid (pattern mask and padding mask).
    Returns:
        ``(ce, ce_per_codebook)``: the scalar loss (float32, differentiable) and the K detached per-codebook
        losses. A codebook without any valid position is left out of the average (its entry is NaN); if no
        codebook has one the loss is 0 (still attached to ``logits``).
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, K, T, card], got shape {list(logits.shape)}.")
    if targets.shape != logits.shape[:-1] or mask.shape != logits.shape[:-1]:
        raise ValueError(f"targets {list(targets.shape)} and mask {list(mask.shape)} must both be "
                         f"{list(logits.shape[:-1])} (logits {list(logits.shape)} without the last dimension).")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}.")
    card = logits.shape[-1]
    total = logits.new_zeros((), dtype=torch.float32)
    per_codebook: tp.List[torch.Tensor] = []
    used = 0
    for k in range(logits.shape[1]):
        mask_k = mask[:, k].reshape(-1)
        if not bool(mask_k.any()):
            per_codebook.append(torch.tensor(float("nan"), device=logits.device))
            continue
        logits_k = logits[:, k].reshape(-1, card)[mask_k].float()
        targets_k = targets[:, k].reshape(-1)[mask_k]
        ce_k = F.cross_entropy(logits_k, targets_k)
        total = total + ce_k
        per_codebook.append(ce_k.detach())
        used += 1
    if used == 0:
        return (logits.float().nan_to_num(0.0) * 0).sum(), per_codebook
    return total / used, per_codebook
