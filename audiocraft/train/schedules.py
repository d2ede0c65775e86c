"""Learning-rate schedules (multipliers of the base learning rate) for `torch.optim.lr_scheduler.LambdaLR`."""
from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "linear", "linear_warmup", "constant")


class LRSchedule:
    """Multiplier of the base learning rate at each optimizer step.

    Every kind first warms up linearly over ``warmup_steps`` (``(step + 1) / warmup_steps``), then:

    - ``cosine``: half a cosine from 1 down to ``lr_min_ratio`` at ``total_steps``;
    - ``linear``: a straight line from 1 down to ``lr_min_ratio`` at ``total_steps``;
    - ``linear_warmup`` / ``constant``: stays at 1 (``constant`` is ``linear_warmup`` without warmup).
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, lr_min_ratio: float = 0.0) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {kind!r}.")
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}.")
        if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be an int in [0, total_steps={total_steps}], got {warmup_steps!r}.")
        if not 0.0 <= lr_min_ratio <= 1.0:
            raise ValueError(f"lr_min_ratio must be in [0, 1], got {lr_min_ratio!r}.")
        self.kind = kind
        self.total_steps = total_steps
        self.warmup_steps = 0 if kind == "constant" else warmup_steps
        self.lr_min_ratio = float(lr_min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind in ("linear_warmup", "constant"):
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.kind == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.lr_min_ratio + (1.0 - self.lr_min_ratio) * shape


def build_lr_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_steps: int = 0,
                       lr_min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` following :class:`LRSchedule` (its ``state_dict`` resumes it exactly)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRSchedule(kind, total_steps, warmup_steps, lr_min_ratio))
