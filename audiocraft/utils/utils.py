"""Small generic helpers (Audiocraft's ``audiocraft.utils.utils``): sampling, masks, configs, collation."""
from __future__ import annotations

import typing as tp

import torch

from .config import to_plain
from .sampling import multinomial, sample_top_k, sample_top_p
from .validation import ArgumentError, ArgumentTypeError

__all__ = ["multinomial", "sample_top_k", "sample_top_p", "length_to_mask", "collate", "dict_from_config"]


def dict_from_config(cfg: tp.Any) -> dict:
    """An OmegaConf node (resolved, relative to its root) as a plain ``dict``."""
    out = to_plain(cfg)
    if not isinstance(out, dict):
        raise ArgumentTypeError(f"Expected a mapping config node, got {type(out).__name__}.")
    return out


def length_to_mask(lengths: torch.Tensor, max_len: tp.Optional[int] = None) -> torch.Tensor:
    """lengths ``[B]`` -> bool mask ``[B, max_len]``, True on the first ``lengths[b]`` positions.
    ``max_len`` defaults (also when 0, as in Audiocraft) to ``max(lengths)``; the width is at least 1."""
    if lengths.dim() != 1:
        raise ArgumentError(f"lengths must be 1-D, got shape {list(lengths.shape)}.")
    if max_len:
        final_length = max_len
    else:
        final_length = int(lengths.max().item()) if lengths.numel() else 0
    return torch.arange(max(final_length, 1), device=lengths.device)[None, :] < lengths[:, None]


def collate(tensors: tp.List[torch.Tensor], dim: int = 0) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Pad 1-D-or-more tensors to the longest along ``dim`` (zeros) and stack them:
    -> (``[N, ...]``, lengths ``[N]`` int64)."""
    lengths = torch.tensor([t.shape[dim] for t in tensors], dtype=torch.long)
    longest = int(lengths.max()) if len(tensors) else 0
    padded = []
    for t in tensors:
        pad = [0, 0] * (t.dim() - dim % t.dim() - 1) + [0, longest - t.shape[dim]]
        padded.append(torch.nn.functional.pad(t, pad))
    return torch.stack(padded), lengths
