"""Condition dropout for training and classifier-free guidance.

Both modules return deep copies with some attributes nullified (text -> None, wav -> ``nullify_wav``) and draw
their decisions from their own seeded ``torch.Generator``, leaving the global RNG untouched.
"""
from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
import typing as tp

import torch
from torch import nn

from .attributes import CONDITION_KINDS, ConditioningAttributes, dropout_condition
from ...utils.validation import ArgumentError, ArgumentTypeError


def _check_samples(samples: tp.Any) -> tp.Any:
    if not isinstance(samples, (list, tuple)):
        raise ArgumentTypeError(f"samples must be a list of ConditioningAttributes, got {type(samples).__name__}.")
    for i, sample in enumerate(samples):
        if not isinstance(sample, ConditioningAttributes):
            raise ArgumentTypeError(f"samples[{i}] must be a ConditioningAttributes, got {type(sample).__name__}.")
    return samples


def _check_probability(name: str, p: tp.Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ArgumentError(f"{name} must be a probability in [0, 1], got {p!r}.")
    return float(p)


class DropoutModule(nn.Module):
    """Base of the condition dropouts: owns ``rng``, a CPU ``torch.Generator`` seeded with ``seed``."""

    def __init__(self, seed: int = 1234) -> None:
        super().__init__()
        self.rng = torch.Generator()
        self.rng.manual_seed(seed)

    def _draw(self) -> float:
        return float(torch.rand(1, generator=self.rng).item())


class AttributeDropout(DropoutModule):
    """Drop each listed attribute with its own probability, for the whole batch at once.

    Args:
        p: ``{kind: {attribute: probability}}`` with kind in 'text', 'wav', 'joint_embed'.
        active_on_eval: also drop in eval mode (by default eval mode returns the samples unchanged).
        seed: seed of the module's generator.

    One draw per listed attribute per call, in the order of ``p``; a dropped attribute is nullified in every
    sample (all samples must have it).
    """

    def __init__(self, p: tp.Dict[str, tp.Dict[str, float]], active_on_eval: bool = False, seed: int = 1234) -> None:
        super().__init__(seed=seed)
        if not isinstance(p, Mapping):
            raise ArgumentTypeError(f"p must be a dict {{kind: {{attribute: probability}}}}, got {type(p).__name__}.")
        self.active_on_eval = active_on_eval
        self.p: tp.Dict[str, tp.Dict[str, float]] = {}
        for kind, probs in p.items():
            if kind not in CONDITION_KINDS:
                raise ArgumentError(f"AttributeDropout kinds must be in {list(CONDITION_KINDS)}, got {kind!r}.")
            self.p[kind] = {name: _check_probability(f"p[{kind!r}][{name!r}]", value)
                            for name, value in dict(probs).items()}

    def forward(self, samples: tp.List[ConditioningAttributes]) -> tp.List[ConditioningAttributes]:
        """samples -> copies with the drawn attributes nullified (the same list when inactive)."""
        samples = _check_samples(samples)
        if not self.training and not self.active_on_eval:
            return samples
        samples = deepcopy(samples)
        for kind, probs in self.p.items():
            for name, p in probs.items():
                if self._draw() < p:
                    for sample in samples:
                        dropout_condition(sample, kind, name)
        return samples

    def __repr__(self) -> str:
        return f"AttributeDropout({self.p})"


class ClassifierFreeGuidanceDropout(DropoutModule):
    """With probability ``p`` (one draw per call), nullify EVERY attribute of every sample.

    In eval mode samples are returned unchanged; a freshly built module is in training mode, which is how
    generation gets its null conditions: ``ClassifierFreeGuidanceDropout(p=1.0)(conditions)``.
    """

    def __init__(self, p: float, seed: int = 1234) -> None:
        super().__init__(seed=seed)
        self.p = _check_probability("p", p)

    def forward(self, samples: tp.List[ConditioningAttributes]) -> tp.List[ConditioningAttributes]:
        """samples -> deep copies, all attributes nullified, or the same list when nothing is dropped."""
        samples = _check_samples(samples)
        if not self.training:
            return samples
        if not self._draw() < self.p:
            return samples
        samples = deepcopy(samples)
        for kind in ("wav", "text", "joint_embed"):
            for sample in samples:
                for name in list(sample[kind]):
                    dropout_condition(sample, kind, name)
        return samples

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidanceDropout(p={self.p})"
