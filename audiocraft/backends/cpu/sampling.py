"""Token sampling on the native kernels (``csrc/sampling.cpp``): the same draws as PyTorch, faster.

A decoding step samples one token per row of ``[B * K, card]`` probabilities. ``torch.multinomial(p, 1)`` on CPU
draws one exponential per element with a serial loop (~30 ns each: ~1 ms a step at batch 4) and ``torch.topk``
sorts where one value is needed. :func:`multinomial_one` and :func:`kth_largest` return exactly what those calls
return and leave the generator in exactly the state they leave it (same random stream, same tokens for a seed),
drawing the exponentials only where the probability is positive.

Each returns None where it does not apply (no native kernels, not float32 / CPU / contiguous, an input PyTorch
refuses, a generator state of another layout), and the caller runs PyTorch's own call. On first use
:func:`multinomial_one` compares itself with ``torch.multinomial`` on a few random cases and turns itself off if
they differ (a PyTorch whose CPU generator or exponential sampling changed).
"""
from __future__ import annotations

import logging
import typing as tp

import torch

from . import kernels

logger = logging.getLogger(__name__)

__all__ = ["multinomial_one", "kth_largest"]

_verified: tp.Dict[str, bool] = {}


def _usable(probs: torch.Tensor) -> bool:
    return (probs.dim() == 2 and probs.dtype == torch.float32 and probs.device.type == "cpu"
            and probs.is_contiguous() and probs.shape[1] > 0 and kernels.available())


def _draw(probs: torch.Tensor, generator: torch.Generator) -> tp.Optional[torch.Tensor]:
    state = generator.get_state()
    out = torch.empty(probs.shape[0], 1, dtype=torch.long)
    code = kernels.library().audiocraft_multinomial_one(  # type: ignore[union-attr]
        probs.data_ptr(), probs.shape[0], probs.shape[1], state.data_ptr(), state.numel(), out.data_ptr())
    if code != 0:
        return None
    generator.set_state(state)
    return out


def _self_check() -> bool:
    """Whether the native draws are PyTorch's on this installation (random rows, many zeros, ties)."""
    ok = _verified.get("multinomial")
    if ok is None:
        ok = True
        cases = torch.Generator().manual_seed(0)
        for rows, n in ((1, 7), (4, 2048), (3, 1000)):
            probs = torch.rand(rows, n, generator=cases)
            probs[probs < 0.7] = 0.0
            probs[:, 0] = 0.25
            probs /= probs.sum(dim=-1, keepdim=True)
            for seed in (0, 1234):
                ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
                for _ in range(3):
                    drawn = _draw(probs, ours)
                    expected = torch.multinomial(probs, 1, generator=theirs)
                    if drawn is None or not torch.equal(drawn, expected):
                        ok = False
                if not torch.equal(ours.get_state(), theirs.get_state()):
                    ok = False
        if not ok:
            logger.warning("The native sampling kernel does not reproduce torch.multinomial on this PyTorch "
                           "(%s); using torch.multinomial.", torch.__version__)
        _verified["multinomial"] = ok
    return ok


def multinomial_one(probs: torch.Tensor, generator: tp.Optional[torch.Generator] = None) -> tp.Optional[torch.Tensor]:
    """``torch.multinomial(probs, 1, generator=generator)`` for float32 CPU ``probs [rows, n]``: indices
    ``[rows, 1]`` and the generator advanced exactly as PyTorch's call does; None where it does not apply."""
    generator = torch.default_generator if generator is None else generator
    if not _usable(probs) or generator.device.type != "cpu" or not _self_check():
        return None
    return _draw(probs, generator)


def kth_largest(probs: torch.Tensor, k: int) -> tp.Optional[torch.Tensor]:
    """``torch.topk(probs, k, dim=-1)[0][..., k - 1:]`` (the k-th largest value of each row, ``[rows, 1]``) for
    float32 CPU ``probs [rows, n]``, ``1 <= k <= n``; None where it does not apply (NaN included)."""
    if not _usable(probs) or not 1 <= k <= probs.shape[1]:
        return None
    out = torch.empty(probs.shape[0], 1)
    code = kernels.library().audiocraft_kth_largest(  # type: ignore[union-attr]
        probs.data_ptr(), probs.shape[0], probs.shape[1], k, out.data_ptr())
    return out if code == 0 else None
