"""Activation functions of the transformer feed-forward block, by the names used in configs.

``get_activation_fn('gelu')`` returns ``torch.nn.functional.gelu``; the gated variants (``swiglu``, ``geglu``,
``reglu``) return a :class:`CustomGLU` module that splits its input in two halves along ``dim`` and returns
``a * act(b)``, so its output has HALF the features of its input.
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import ArgumentError, ArgumentTypeError

Activation = tp.Union[str, tp.Callable[[torch.Tensor], torch.Tensor]]


class CustomGLU(nn.Module):
    """Gated linear unit with a custom activation: ``[*, 2N] -> [*, N]``, ``a * activation(b)``.

    Args:
        activation: the gate's activation (a module or function).
        dim: the dimension split in two halves ``a`` (first) and ``b`` (second).
    """

    def __init__(self, activation: tp.Callable[[torch.Tensor], torch.Tensor], dim: int = -1) -> None:
        super().__init__()
        self.dim = dim
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[self.dim]
        if size % 2 != 0:
            raise ArgumentError(f"{type(self).__name__} needs an even size along dim {self.dim}, got {size}.")
        a, b = torch.chunk(x, 2, dim=self.dim)
        return a * self.activation(b)


class SwiGLU(CustomGLU):
    """GLU gated by SiLU (Swish)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__(nn.SiLU(), dim)


class GeGLU(CustomGLU):
    """GLU gated by GELU."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__(nn.GELU(), dim)


class ReGLU(CustomGLU):
    """GLU gated by ReLU."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__(nn.ReLU(), dim)


_GATED: tp.Dict[str, tp.Callable[[], CustomGLU]] = {"swiglu": SwiGLU, "geglu": GeGLU, "reglu": ReGLU}


def get_activation_fn(activation: Activation) -> tp.Callable[[torch.Tensor], torch.Tensor]:
    """Activation by name: ``'reglu' | 'geglu' | 'swiglu'`` or any function of ``torch.nn.functional``
    (``'gelu'``, ``'relu'``, ``'silu'``, ...). A callable is returned unchanged."""
    if not isinstance(activation, str):
        if not callable(activation):
            raise ArgumentTypeError(f"activation must be a name or a callable, got {type(activation).__name__}.")
        return activation
    if activation in _GATED:
        return _GATED[activation]()
    fn = getattr(F, activation, None)
    if fn is None or not callable(fn) or activation.startswith("_"):
        raise ArgumentError(f"Unknown activation {activation!r}; use one of {sorted(_GATED)} or a function name of "
                            "torch.nn.functional such as 'gelu', 'relu' or 'silu'.")
    return fn


def is_gated(activation: tp.Any) -> bool:
    """Whether ``activation`` halves its input's last dimension (a :class:`CustomGLU`)."""
    return isinstance(activation, CustomGLU)
