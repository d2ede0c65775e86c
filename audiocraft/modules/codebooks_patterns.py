"""Codebook interleaving patterns: how K parallel streams of codes become one sequence for the LM.

A :class:`Pattern` is a layout: for each sequence step ``s``, the list of ``(t, q)`` coordinates (timestep,
codebook) predicted at that step. The first step is normally empty: it holds the special token the LM starts
from (MAGNeT's parallel pattern, ``empty_initial=-1``, omits it: there step ``s`` holds timestep ``s`` and the
model's output at ``s`` is the prediction of that same step). MusicGen's delay pattern (``DelayedPatternProvider``,
delays ``[0, 1, 2, 3]``) for T = 4 timesteps, ``S`` being the special token and ``a1`` the code of codebook a at
time 1::

    step s:     0   1   2   3   4   5   6   7
    codebook 0  S   a1  a2  a3  a4  -   -   -        (t = s - 1)
    codebook 1  S   S   b1  b2  b3  b4  -   -        (t = s - 2)
    codebook 2  S   S   S   c1  c2  c3  c4  -        (t = s - 3)
    codebook 3  S   S   S   S   d1  d2  d3  d4       (t = s - 4)

(``-``: coordinates beyond T; ``build_pattern_sequence`` writes the special token there too.) The LM
predicts step ``s + 1`` from steps ``<= s``, so all codebooks of a column are sampled at once while codebook
k at time t still sees codebooks ``< k`` at time t. ``valid_layout`` drops the last ``max_delay`` steps
(those with missing coordinates), which is what training (``keep_only_valid_steps=True``) uses.

Index tensors are computed once per (pattern, length, options, device) and cached; building or reverting a
sequence is then one gather, with no Python loop per step.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import namedtuple
import dataclasses
import functools
import typing as tp

import torch

from ..utils.validation import ArgumentError

LayoutCoord = namedtuple("LayoutCoord", ["t", "q"])  # (timestep, codebook index)
PatternLayout = tp.List[tp.List[LayoutCoord]]


@dataclasses.dataclass
class Pattern:
    """An interleaving of ``n_q`` codebooks over ``timesteps`` steps; see the module docstring.

    Args:
        layout: per sequence step, the coordinates it holds; ``layout[0]`` is empty unless the pattern omits the
            initial special step (``starts_with_special_token()`` is then False).
        timesteps: number of timesteps T of the original ``[B, K, T]`` codes.
        n_q: number of codebooks K.
    """
    layout: PatternLayout
    timesteps: int
    n_q: int
    _cache: tp.Dict[tp.Tuple[tp.Any, ...], tp.Tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.layout) == 0:
            raise ArgumentError("A pattern layout needs at least one step.")
        last = [0] * self.n_q
        for s, coords in enumerate(self.layout):
            qs = [c.q for c in coords]
            if len(set(qs)) != len(qs):
                raise ArgumentError(f"Step {s} of the pattern holds several coordinates of the same codebook: "
                                    f"{coords}.")
            for c in coords:
                if not 0 <= c.q < self.n_q:
                    raise ArgumentError(f"Step {s} holds codebook {c.q}, outside [0, {self.n_q}).")
                if c.t < last[c.q]:
                    raise ArgumentError(f"Step {s} goes back in time for codebook {c.q} (t={c.t} after {last[c.q]}).")
                last[c.q] = c.t

    # ---- layout queries ------------------------------------------------------------------------------
    @property
    def num_sequence_steps(self) -> int:
        """Number of steps after the initial special step: ``len(layout) - 1``."""
        return len(self.layout) - 1

    @property
    def max_delay(self) -> int:
        """How many steps the layout runs past ``timesteps`` (max coordinate time + 1 - timesteps)."""
        max_t = max((c.t + 1 for coords in self.layout[1:] for c in coords), default=0)
        return max_t - self.timesteps

    @property
    def valid_layout(self) -> PatternLayout:
        """The layout without its last ``max_delay`` steps (the ones with coordinates past the end)."""
        return self.layout[:len(self.layout) - self.max_delay]

    def starts_with_special_token(self) -> bool:
        return list(self.layout[0]) == []

    def get_sequence_coords_with_timestep(self, t: int,
                                          q: tp.Optional[int] = None) -> tp.List[tp.Tuple[int, LayoutCoord]]:
        """``(step, coord)`` of every coordinate at timestep ``t`` (and codebook ``q`` if given), in step order."""
        if t > self.timesteps:
            raise ArgumentError(f"t={t} is beyond the pattern's {self.timesteps} timesteps.")
        if q is not None and q > self.n_q:
            raise ArgumentError(f"q={q} is beyond the pattern's {self.n_q} codebooks.")
        return [(s, c) for s, coords in enumerate(self.layout) for c in coords
                if c.t == t and (q is None or c.q == q)]

    def get_steps_with_timestep(self, t: int, q: tp.Optional[int] = None) -> tp.List[int]:
        return [s for s, _ in self.get_sequence_coords_with_timestep(t, q)]

    def get_first_step_with_timesteps(self, t: int, q: tp.Optional[int] = None) -> tp.Optional[int]:
        """First sequence step holding timestep ``t`` (of codebook ``q`` if given), None if there is none."""
        steps = self.get_steps_with_timestep(t, q)
        return steps[0] if steps else None

    # ---- index tensors (cached) ----------------------------------------------------------------------
    def _cached(self, key: tp.Tuple[tp.Any, ...], rows: int, cols: int, fill: int,
                entries: tp.Iterable[tp.Tuple[int, int, int]],
                device: tp.Union[torch.device, str]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """indexes ``[rows, cols]`` (``fill`` where no entry) and mask, from ``(row, col, value)`` entries."""
        key = key + (str(device),)
        if key not in self._cache:
            listed = list(entries)
            with torch.inference_mode(False):  # cached tensors must stay usable outside inference mode
                idx = torch.full((rows, cols), fill, dtype=torch.long)
                mask = torch.zeros(rows, cols, dtype=torch.bool)
                if listed:
                    r, c, v = (torch.tensor(x, dtype=torch.long) for x in zip(*listed))
                    idx[r, c] = v
                    mask[r, c] = True
                self._cache[key] = (idx.to(device), mask.to(device))
        return self._cache[key]

    def _build_pattern_sequence_scatter_indexes(self, timesteps: int, n_q: int, keep_only_valid_steps: bool,
                                                device: tp.Union[torch.device, str] = "cpu"
                                                ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """indexes ``[K, S]`` into the flattened codes ``[K * T (+1 special)]`` and mask ``[K, S]``."""
        if n_q != self.n_q:
            raise ArgumentError(f"The codes have {n_q} codebooks but the pattern has {self.n_q}.")
        if timesteps > self.timesteps:
            raise ArgumentError(f"The codes have {timesteps} timesteps, more than the pattern's {self.timesteps}.")
        layout = self.valid_layout if keep_only_valid_steps else self.layout
        entries = ((c.q, s, c.t + c.q * timesteps) for s, coords in enumerate(layout) for c in coords
                   if c.t < timesteps)
        return self._cached(("build", timesteps, keep_only_valid_steps), n_q, len(layout), n_q * timesteps,
                            entries, device)

    def _build_reverted_sequence_scatter_indexes(self, sequence_steps: int, n_q: int,
                                                 keep_only_valid_steps: bool = False, is_model_output: bool = False,
                                                 device: tp.Union[torch.device, str] = "cpu"
                                                 ) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """indexes ``[K, T]`` into the flattened sequence ``[K * S (+1 special)]`` and mask ``[K, T]``.

        With ``is_model_output`` and an initial special step, sequence position ``s`` holds the prediction of
        layout step ``s + 1`` (without one, of step ``s``)."""
        if n_q != self.n_q:
            raise ArgumentError(f"The sequence has {n_q} codebooks but the pattern has {self.n_q}.")
        layout = self.valid_layout if keep_only_valid_steps else self.layout
        if sequence_steps > len(layout):
            raise ArgumentError(f"The sequence ({sequence_steps} steps) is longer than the pattern ({len(layout)}).")
        if is_model_output and self.starts_with_special_token():
            layout = layout[1:]
        T = self.timesteps
        entries = ((c.q, c.t, s + c.q * sequence_steps) for s, coords in enumerate(layout[:sequence_steps])
                   for c in coords if c.t < T)
        return self._cached(("revert", sequence_steps, keep_only_valid_steps, is_model_output), n_q, T,
                            n_q * sequence_steps, entries, device)

    # ---- build / revert ------------------------------------------------------------------------------
    def build_pattern_sequence(self, z: torch.Tensor, special_token: int, keep_only_valid_steps: bool = False
                               ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """codes ``z`` ``[B, K, T]`` -> (sequence ``[B, K, S]`` with ``special_token`` where the layout has no
        coordinate, indexes ``[K, S]``, mask ``[K, S]`` True where a code was placed)."""
        B, K, T = z.shape
        indexes, mask = self._build_pattern_sequence_scatter_indexes(T, K, keep_only_valid_steps, z.device)
        flat = torch.cat([z.reshape(B, K * T), torch.full_like(z[:, 0, :1], special_token)], dim=1)
        values = flat[:, indexes.view(-1)].view(B, K, indexes.shape[-1])
        return values, indexes, mask

    def revert_pattern_sequence(self, s: torch.Tensor, special_token: int, keep_only_valid_steps: bool = False
                                ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """sequence ``s`` ``[B, K, S]`` -> (codes ``[B, K, T]`` with ``special_token`` where no step holds the
        coordinate, indexes ``[K, T]``, mask ``[K, T]``)."""
        B, K, S = s.shape
        indexes, mask = self._build_reverted_sequence_scatter_indexes(S, K, keep_only_valid_steps, False, s.device)
        flat = torch.cat([s.reshape(B, K * S), torch.full_like(s[:, 0, :1], special_token)], dim=1)
        values = flat[:, indexes.view(-1)].view(B, K, indexes.shape[-1])
        return values, indexes, mask

    def revert_pattern_logits(self, logits: torch.Tensor, special_token: float, keep_only_valid_steps: bool = False
                              ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model outputs ``[B, card, K, S]`` (position s predicts step s + 1) -> (``[B, card, K, T]`` aligned with
        the codes, ``special_token`` (e.g. NaN) where there is no prediction; indexes ``[K, T]``; mask ``[K, T]``)."""
        B, card, K, S = logits.shape
        indexes, mask = self._build_reverted_sequence_scatter_indexes(S, K, keep_only_valid_steps, True,
                                                                      logits.device)
        flat = torch.cat([logits.reshape(B, card, K * S), torch.full_like(logits[:, :, 0, :1], special_token)],
                         dim=-1)
        values = flat[:, :, indexes.view(-1)].view(B, card, K, indexes.shape[-1])
        return values, indexes, mask


# ------------------------------------------------------------------------------------------------ providers
class CodebooksPatternProvider(ABC):
    """Makes the :class:`Pattern` of a given number of timesteps for ``n_q`` codebooks.

    Args:
        n_q: number of codebooks.
        cached: memoize ``get_pattern`` per number of timesteps (recommended: patterns and their index
            tensors are then built once).
    """

    def __init__(self, n_q: int, cached: bool = True) -> None:
        if n_q <= 0:
            raise ArgumentError(f"n_q must be positive, got {n_q}.")
        self.n_q = n_q
        if cached:
            self.get_pattern = functools.lru_cache(maxsize=100)(self.get_pattern)  # type: ignore[method-assign]

    @abstractmethod
    def get_pattern(self, timesteps: int) -> Pattern:
        """The pattern for ``timesteps`` timesteps."""
        raise NotImplementedError


def _check_sorted(name: str, values: tp.Sequence[int], length: int) -> None:
    if len(values) != length:
        raise ArgumentError(f"{name} must have {length} entries, got {len(values)}: {list(values)}.")
    if list(values) != sorted(values):
        raise ArgumentError(f"{name} must be non-decreasing, got {list(values)}.")


class DelayedPatternProvider(CodebooksPatternProvider):
    """Codebook q is delayed by ``delays[q]`` steps (default ``0, 1, ..., n_q - 1``): see the module docstring.

    Args:
        n_q: number of codebooks.
        delays: per-codebook delays (non-decreasing).
        flatten_first: the first N timesteps are fully flattened (one codebook per step).
        empty_initial: N extra empty steps after the initial one; a negative value omits the initial special
            step too (Audiocraft's ``empty_initial=-1``, MAGNeT).
    """

    def __init__(self, n_q: int, delays: tp.Optional[tp.List[int]] = None, flatten_first: int = 0,
                 empty_initial: int = 0) -> None:
        super().__init__(n_q)
        self.delays = list(range(n_q)) if delays is None else list(delays)
        _check_sorted("delays", self.delays, n_q)
        self.flatten_first = flatten_first
        self.empty_initial = empty_initial

    def get_pattern(self, timesteps: int) -> Pattern:
        layout: PatternLayout = [[] for _ in range(max(0, 1 + self.empty_initial))]
        for t in range(min(timesteps, self.flatten_first)):
            layout.extend([LayoutCoord(t, q)] for q in range(self.n_q))
        for s in range(self.flatten_first, timesteps + max(self.delays)):
            layout.append([LayoutCoord(s - d, q) for q, d in enumerate(self.delays) if s - d >= self.flatten_first])
        return Pattern(layout, timesteps=timesteps, n_q=self.n_q)


class ParallelPatternProvider(DelayedPatternProvider):
    """All codebooks of a timestep in the same step (delays all 0); ``empty_initial`` as for the delay pattern
    (MAGNeT uses -1: no initial special step)."""

    def __init__(self, n_q: int, empty_initial: int = 0) -> None:
        super().__init__(n_q, [0] * n_q, empty_initial=empty_initial)


class UnrolledPatternProvider(CodebooksPatternProvider):
    """Codebooks flattened over ``max(flattening) + 1`` inner steps per timestep, with optional delays.

    ``flattening[q]`` is the inner step of codebook q (codebooks sharing one are predicted together);
    ``delays[q]`` delays it (codebooks sharing an inner step must share their delay). Default: full
    flattening, no delay. Both lists are non-decreasing.
    """
    FlattenedCodebook = namedtuple("FlattenedCodebook", ["codebooks", "delay"])

    def __init__(self, n_q: int, flattening: tp.Optional[tp.List[int]] = None,
                 delays: tp.Optional[tp.List[int]] = None) -> None:
        super().__init__(n_q)
        flattening = list(range(n_q)) if flattening is None else list(flattening)
        delays = [0] * n_q if delays is None else list(delays)
        _check_sorted("flattening", flattening, n_q)
        _check_sorted("delays", delays, n_q)
        self._flattened_codebooks: tp.Dict[int, UnrolledPatternProvider.FlattenedCodebook] = {}
        for q, (step, delay) in enumerate(zip(flattening, delays)):
            if step in self._flattened_codebooks:
                if self._flattened_codebooks[step].delay != delay:
                    raise ArgumentError(f"Codebooks flattened to inner step {step} have different delays: {delays}.")
                self._flattened_codebooks[step].codebooks.append(q)
            else:
                self._flattened_codebooks[step] = self.FlattenedCodebook(codebooks=[q], delay=delay)
        self.max_delay = max(delays)

    @property
    def _num_inner_steps(self) -> int:
        return max(self._flattened_codebooks) + 1

    def num_virtual_steps(self, timesteps: int) -> int:
        return timesteps * self._num_inner_steps + 1

    def get_pattern(self, timesteps: int) -> Pattern:
        # Each emitted step gets a sort key (its delayed time); a stable sort by (key, coords) orders them.
        total = timesteps + self.max_delay
        keyed: tp.List[tp.Tuple[int, tp.List[LayoutCoord]]] = [(-1, [])]
        for t in range(total):
            for step in range(self._num_inner_steps):
                flat = self._flattened_codebooks.get(step)
                if flat is None:
                    keyed.append((t, []))
                elif t + flat.delay < total:
                    keyed.append((t + flat.delay, [LayoutCoord(t, q) for q in flat.codebooks]))
        keyed.sort(key=lambda item: (item[0], [tuple(c) for c in item[1]]))
        return Pattern([coords for _, coords in keyed], timesteps=timesteps, n_q=self.n_q)


class CoarseFirstPattern(CodebooksPatternProvider):
    """All timesteps of codebook 0 first, then the other codebooks in parallel (with optional delays
    ``delays[q - 1]``). Generate the full training duration at test time with this pattern."""

    def __init__(self, n_q: int, delays: tp.Optional[tp.List[int]] = None) -> None:
        super().__init__(n_q)
        self.delays = [0] * (n_q - 1) if delays is None else list(delays)
        _check_sorted("delays", self.delays, n_q - 1)

    def get_pattern(self, timesteps: int) -> Pattern:
        layout: PatternLayout = [[]]
        layout.extend([LayoutCoord(t, 0)] for t in range(timesteps))
        for s in range(timesteps + max(self.delays, default=0)):
            layout.append([LayoutCoord(s - d, q + 1) for q, d in enumerate(self.delays) if s - d >= 0])
        return Pattern(layout, timesteps=timesteps, n_q=self.n_q)


class VALLEPattern(CoarseFirstPattern):
    """VALL-E style: codebook 0 autoregressively first, then the others in parallel (same layout as
    :class:`CoarseFirstPattern`)."""


class MusicLMPattern(CodebooksPatternProvider):
    """Full flattening by groups of ``group_by`` codebooks: all timesteps of group 0 (one codebook per step,
    interleaved within the group), then group 1, ..."""

    def __init__(self, n_q: int, group_by: int = 2) -> None:
        super().__init__(n_q)
        if group_by <= 0 or n_q % group_by != 0:
            raise ArgumentError(f"group_by={group_by} must be positive and divide n_q={n_q}.")
        self.group_by = group_by

    def get_pattern(self, timesteps: int) -> Pattern:
        layout: PatternLayout = [[]]
        for first in range(0, self.n_q, self.group_by):
            for t in range(timesteps):
                layout.extend([LayoutCoord(t, q)] for q in range(first, first + self.group_by))
        return Pattern(layout, timesteps=timesteps, n_q=self.n_q)
