"""Bookkeeping of :meth:`LMModel.generate` kept out of the model: which frames are complete after each step,
per-item samplers, and the key masks that hide condition padding.

All of it is computed once per call, before the decoding loop.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
import typing as tp

import torch

from ..modules.codebooks_patterns import Pattern
from ..utils.validation import ArgumentError, ArgumentTypeError

Generators = tp.Union[None, torch.Generator, tp.Sequence[torch.Generator]]


CheckedGenerators = tp.Union[None, torch.Generator, tp.List[torch.Generator]]


def check_generators(generator: Generators, batch_size: int) -> CheckedGenerators:
    """None, one generator, or a list of exactly ``batch_size`` generators (one per item)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch_size or not all(isinstance(g, torch.Generator) for g in generator):
            raise ArgumentError(f"generator must be None, a torch.Generator or a list of {batch_size} torch.Generator "
                                f"(one per item), got a {type(generator).__name__} of {len(generator)} "
                                f"({sorted({type(g).__name__ for g in generator})}).")
        return list(generator)
    raise ArgumentTypeError("generator must be None, a torch.Generator or a list of them, got "
                            f"{type(generator).__name__}.")


class FrameTracker:
    """When the frames of a ``[B, K, T]`` output are complete in the pattern sequence ``[B, K, S]``.

    ``ready_after(step)``: how many leading frames have every codebook written once the sequence position
    ``step`` is written. ``gather(sequence, t0, t1)``: frames ``t0 .. t1 - 1`` read back from the sequence as
    codes ``[B, K, t1 - t0]``, through the same indexes as ``Pattern.revert_pattern_sequence``.
    """

    def __init__(self, pattern: Pattern, sequence_steps: int, device: torch.device) -> None:
        K, S = pattern.n_q, sequence_steps
        indexes, valid = pattern._build_reverted_sequence_scatter_indexes(S, K, device=device)  # [K, T] each
        steps = indexes.cpu() - torch.arange(K)[:, None] * S  # the sequence step of each code
        steps = torch.where(valid.cpu(), steps, S)  # a code missing from the layout never completes
        self._running = torch.cummax(steps.max(dim=0).values, dim=0).values.tolist()  # non-decreasing [T]
        self._indexes = indexes
        self._steps = S

    def ready_after(self, step: int) -> int:
        return bisect.bisect_right(self._running, step)

    def gather(self, sequence: torch.Tensor, t0: int, t1: int) -> torch.Tensor:
        B, K, S = sequence.shape
        if S != self._steps:
            raise ArgumentError(f"The sequence has {S} steps, the tracker was built for {self._steps}.")
        index = self._indexes[:, t0:t1]
        return sequence.reshape(B, K * S)[:, index.reshape(-1)].view(B, K, t1 - t0)


@dataclass
class ConditionPadding:
    """Key masks that hide the padded positions of the conditions, for one batch of ``N`` rows.

    A position is valid where its condition mask is non-zero; a row whose condition is all padding keeps its
    FIRST position valid (the built-in conditioners embed padding as zeros, so attending to that one position
    gives what attending to any number of zero embeddings gives, and no row is left without keys).

    Attributes:
        cross: ``[N, 1, 1, S]`` bool, the valid cross-attention keys (None without cross conditions).
        keys: ``[N, 1, 1, capacity]`` bool, the valid self-attention keys: the prepended prefix's validity, then
            True for every generated step.
        prefix_positions: ``[N, P]`` times of the prefix positions: the count of valid positions before each.
        first_music_position: ``[N, 1]`` time of the first sequence step: the number of valid prefix positions
            (so a row's times do not depend on how much padding other rows forced on it).
        fed: positions fed to the transformer so far (prefix included).
    """
    cross: tp.Optional[torch.Tensor]
    keys: torch.Tensor
    prefix_positions: torch.Tensor
    first_music_position: torch.Tensor
    prefix_length: int
    fed: int = 0

    @staticmethod
    def _valid(mask: torch.Tensor) -> torch.Tensor:
        valid = mask != 0  # [N, S]
        empty = ~valid.any(dim=1)
        if bool(empty.any()) and valid.shape[1] > 0:
            valid[empty, 0] = True
        return valid

    @classmethod
    def build(cls, condition_tensors: tp.Mapping[str, tp.Tuple[torch.Tensor, torch.Tensor]],
              fuse2cond: tp.Mapping[str, tp.List[str]], batch: int, capacity: int,
              device: torch.device) -> "ConditionPadding":
        """Masks in the fuser's layout: prepended conditions end up in reverse order, cross ones in order."""
        prepend, cross = fuse2cond.get("prepend", []), fuse2cond.get("cross", [])
        prefix = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        cross_valid: tp.Optional[torch.Tensor] = None
        for name, (_, mask) in condition_tensors.items():
            if name in prepend:
                prefix = torch.cat([cls._valid(mask), prefix], dim=1)
            elif name in cross:
                valid = cls._valid(mask)
                cross_valid = valid if cross_valid is None else torch.cat([cross_valid, valid], dim=1)
        P = prefix.shape[1]
        keys = torch.ones(batch, capacity, dtype=torch.bool, device=device)
        keys[:, :P] = prefix
        counts = prefix.long().cumsum(dim=1)
        return cls(cross=None if cross_valid is None else cross_valid[:, None, None, :],
                   keys=keys[:, None, None, :], prefix_positions=(counts - 1).clamp_min(0),
                   first_music_position=(counts[:, -1:] if P
                                         else torch.zeros(batch, 1, dtype=torch.long, device=device)),
                   prefix_length=P)

    def step_kwargs(self, steps: int) -> tp.Dict[str, tp.Any]:
        """Transformer keyword arguments for the next ``steps`` sequence positions (prefix added on the first
        call), advancing ``fed``."""
        device = self.keys.device
        first = self.fed == 0
        music_start = 0 if first else self.fed - self.prefix_length
        positions = self.first_music_position + torch.arange(music_start, music_start + steps, device=device)
        if first and self.prefix_length:
            positions = torch.cat([self.prefix_positions, positions], dim=1)
        self.fed += steps + (self.prefix_length if first else 0)
        kwargs: tp.Dict[str, tp.Any] = {"positions": positions, "src_mask": self.keys[..., :self.fed]}
        if self.cross is not None:
            kwargs["cross_attention_mask"] = self.cross
        return kwargs
