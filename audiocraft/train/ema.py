"""Exponential moving average of the trained parameters."""
from __future__ import annotations

import typing as tp

import torch


class ModuleEMA:
    """EMA of named tensors (the trainable parameters), updated every ``every`` optimizer steps.

    With ``unbias`` (Audiocraft's default) the average is bias-corrected: after the first update it equals the
    parameters, then ``w = 1 / count`` with ``count <- decay * count + 1``, converging to ``1 - decay``.
    The shadow tensors live on ``device`` (default: the parameters' device) in float32, with the same layout
    as the parameters (sharded ones stay sharded).
    """

    def __init__(self, params: tp.Mapping[str, torch.Tensor], decay: float = 0.99, every: int = 1,
                 unbias: bool = True, device: tp.Optional[tp.Union[str, torch.device]] = None) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}.")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"EMA every must be a positive int, got {every!r}.")
        self.params = dict(params)
        self.decay = float(decay)
        self.every = every
        self.unbias = unbias
        self.device = device
        self.count = 0.0
        self.shadow: tp.Dict[str, torch.Tensor] = {
            name: p.detach().to(device=device or p.device, dtype=torch.float32, copy=True)
            for name, p in self.params.items()}

    @torch.no_grad()
    def step(self, optimizer_step: int) -> bool:
        """Update after optimizer step number ``optimizer_step`` (1-based) if it is a multiple of ``every``."""
        if optimizer_step % self.every != 0:
            return False
        if self.unbias:
            self.count = self.count * self.decay + 1.0
            weight = 1.0 / self.count
        else:
            weight = 1.0 - self.decay
        for name, p in self.params.items():
            shadow = self.shadow[name]
            shadow.mul_(1.0 - weight).add_(p.detach().to(shadow.device, torch.float32), alpha=weight)
        return True

    def state_dict(self) -> tp.Dict[str, tp.Any]:
        return {"count": self.count, "shadow": self.shadow}

    @torch.no_grad()
    def load_state_dict(self, state: tp.Mapping[str, tp.Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the trained parameters: {sorted(missing)[:5]}.")
        self.count = float(state["count"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
