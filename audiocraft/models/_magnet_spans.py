"""Which tokens MAGNeT re-masks at a decoding step: spans of ``span_len`` tokens chosen from their scores.

Two arrangements (Audiocraft's ``span_arrangement``):

- ``'nonoverlap'``: the sequence is cut into chunks of ``span_len``; the ``n`` chunks with the highest scores
  (``torch.topk``) are re-masked (:func:`chunk_mask`);
- ``'stride1'``: spans may start anywhere; the spans with the highest summed token scores are taken, as many as
  needed for their union to cover about ``n`` tokens (a binary search on the number of spans,
  :func:`least_probable_span_mask`).

Scores are "how unsure": ``1 - max prob`` of a chunk, or ``-log p`` of a token; fixed tokens carry
:data:`DONT_REMASK_ME_SCORE` so that they are picked last.
"""
from __future__ import annotations

import typing as tp

import torch

DONT_REMASK_ME_SCORE = -1e4  # score of tokens that must stay fixed (already decoded, or the prompt)


def chunk_mask(scores: torch.Tensor, num_masked: int, span_len: int) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """scores ``[B, 1, n_chunks]`` -> (chunks ``[B, 1, n_chunks]`` bool, tokens ``[B, 1, n_chunks * span_len]``
    bool): the ``num_masked`` chunks of highest score per item (ties as ``torch.topk`` breaks them)."""
    picked = scores.topk(num_masked, dim=-1).indices
    chunks = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter(2, picked, True)
    return chunks, torch.repeat_interleave(chunks, span_len, dim=-1)


def spans_union(span_starts: torch.Tensor, length: int, span_len: int) -> torch.Tensor:
    """bool ``[1, 1, length]``: True on ``start .. start + span_len - 1`` for every start of ``span_starts``."""
    starts = torch.zeros(length, dtype=torch.bool, device=span_starts.device)
    starts[span_starts] = True
    mask = starts.clone()
    for shift in range(1, span_len):
        mask[shift:] |= starts[:length - shift]
    return mask.view(1, 1, length)


def least_probable_span_mask(scores: torch.Tensor, num_masked: int, span_len: int) -> torch.Tensor:
    """One item's token scores ``[1, 1, T]`` (``-log p``) -> bool ``[1, 1, T]``: the union of the ``u`` spans
    of ``span_len`` tokens with the highest summed scores, ``u`` chosen so that the union covers about
    ``max(num_masked, span_len)`` tokens.

    ``u`` is binary-searched in ``[target // span_len, target - span_len + 1]`` from the midpoint (Python's
    ``round``, half to even): a union larger than the target lowers the upper bound, otherwise the lower bound
    rises. If the first midpoint is already a bound it is used directly; otherwise the result is the union of
    the last midpoint tried inside the search (Audiocraft's exact rule).
    """
    length = scores.shape[-1]
    span_scores = scores.unfold(2, span_len, 1).sum(dim=-1)  # [1, 1, T - span_len + 1]
    order = torch.argsort(span_scores[0, 0], descending=True)
    target = max(num_masked, span_len)
    low, high = target // span_len, target - span_len + 1
    mid = round(0.5 * (low + high))
    if mid in (low, high):
        return spans_union(order[:mid], length, span_len)
    mask = spans_union(order[:mid], length, span_len)
    while low < mid < high:
        mask = spans_union(order[:mid], length, span_len)
        if int(mask.sum()) > target:
            high = mid
        else:
            low = mid
        mid = round(0.5 * (low + high))
    return mask
