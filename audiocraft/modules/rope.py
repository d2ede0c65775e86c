"""Rotary positional embedding (RoPE), optionally with the xPos decay.

The features of a head are read as ``D / 2`` complex numbers ``x[2i] + 1j * x[2i + 1]``; the one at time ``t``
is multiplied by ``exp(1j * t * f_i)`` with ``f_i = max_period ** (-2i / D)``. ``scale`` blends the rotation with
the identity (``scale * rotation + 1 - scale``). With xPos, queries are also multiplied by ``r_i ** (t / 512)`` and
keys divided by it (``r_i`` in ``((i / (D/2) + 0.4) / 1.4)``), which makes attention decay with distance.

Tables of rotations are computed once per length and reused (recomputed when a longer one is needed, or
when inference mode / device changes, so that a table made under ``torch.inference_mode`` never leaks into
autograd).
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn

from ..utils.validation import ArgumentError


def _table_ok(table: tp.Optional[torch.Tensor], end: int, device: torch.device) -> bool:
    return (table is not None and table.shape[0] >= end and table.device == device
            and table.is_inference() == torch.is_inference_mode_enabled())


class XPos(nn.Module):
    """xPos decay (Sun et al. 2022) applied on top of a rotary embedding.

    Args:
        dim: head dimension (even).
        smoothing: the ``0.4`` of the decay rates ``(i / (dim/2) + smoothing) / (1 + smoothing)``.
        base_scale: time scale of the decay (``rate ** (t / base_scale)``).
        device, dtype: where to build the (persistent) ``decay_rates`` buffer; float32 or float64.
    """

    def __init__(self, dim: int, smoothing: float = 0.4, base_scale: int = 512,
                 device: tp.Optional[tp.Union[torch.device, str]] = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dim % 2 != 0:
            raise ArgumentError(f"XPos needs an even dim, got {dim}.")
        if dtype not in (torch.float32, torch.float64):
            raise ArgumentError(f"XPos dtype must be torch.float32 or torch.float64, got {dtype}.")
        self.dtype = dtype
        self.base_scale = base_scale
        half_dim = dim // 2
        adim = torch.arange(half_dim, device=device, dtype=dtype)
        self.register_buffer("decay_rates", (adim / half_dim + smoothing) / (1.0 + smoothing))
        self.decay: tp.Optional[torch.Tensor] = None

    def get_decay(self, start: int, end: int) -> torch.Tensor:
        """Complex decay factors of times ``start .. end - 1``: ``[end - start, dim / 2]``."""
        rates = self.decay_rates
        assert isinstance(rates, torch.Tensor)
        if not _table_ok(self.decay, end, rates.device):
            idx = torch.arange(end, device=rates.device, dtype=self.dtype)
            scale = rates ** (idx / self.base_scale).unsqueeze(-1)
            self.decay = torch.polar(scale, torch.zeros_like(scale))
        assert self.decay is not None
        return self.decay[start:end]


class RotaryEmbedding(nn.Module):
    """Rotary positional embedding (Su et al. 2021).

    Args:
        dim: head dimension (even).
        max_period: the period base of the rotation frequencies.
        xpos: add the xPos decay.
        scale: blend between the rotation (1.0) and the identity (0.0).
        device, dtype: where to build the frequencies; float32 or float64 (the rotation is done in this dtype).
    """

    def __init__(self, dim: int, max_period: float = 10000.0, xpos: bool = False, scale: float = 1.0,
                 device: tp.Optional[tp.Union[torch.device, str]] = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dim % 2 != 0:
            raise ArgumentError(f"RotaryEmbedding needs an even dim, got {dim}.")
        if dtype not in (torch.float32, torch.float64):
            raise ArgumentError(f"RotaryEmbedding dtype must be torch.float32 or torch.float64, got {dtype}.")
        self.scale = scale
        self.dtype = dtype
        self.dim = dim
        self.max_period = max_period
        self.register_buffer("frequencies", self._frequencies(device), persistent=False)
        self.rotation: tp.Optional[torch.Tensor] = None
        self.xpos = XPos(dim, device=device, dtype=dtype) if xpos else None

    def _frequencies(self, device: tp.Optional[tp.Union[torch.device, str]]) -> torch.Tensor:
        adim = torch.arange(0, self.dim, 2, device=device, dtype=self.dtype)[: self.dim // 2]
        return 1.0 / (self.max_period ** (adim / self.dim))

    def _apply(self, fn: tp.Callable[[torch.Tensor], torch.Tensor], *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        # Built on the meta device (weights loaded later with assign=True): the frequencies are not in the
        # checkpoints, so compute them for real before moving them.
        freqs = self._buffers.get("frequencies")
        if freqs is not None and freqs.is_meta:
            self._buffers["frequencies"] = self._frequencies("cpu")
        return super()._apply(fn, *args, **kwargs)

    def get_rotation(self, start: int, end: int) -> torch.Tensor:
        """Complex rotations of times ``start .. end - 1``: ``[end - start, dim / 2]``."""
        freqs: torch.Tensor = self._buffers["frequencies"]  # type: ignore[assignment]
        if freqs.is_meta:
            freqs = self._buffers["frequencies"] = self._frequencies("cpu")
        if not _table_ok(self.rotation, end, freqs.device):
            idx = torch.arange(end, device=freqs.device, dtype=self.dtype)
            angles = torch.outer(idx, freqs)
            self.rotation = torch.polar(torch.ones_like(angles), angles)
        assert self.rotation is not None
        return self.rotation[start:end]

    def rotate(self, x: torch.Tensor, start: int = 0, time_dim: int = 1, invert_decay: bool = False) -> torch.Tensor:
        """Rotate ``x`` (``[..., T, ..., D]`` with time at ``time_dim``) as if its first step were time ``start``."""
        T = x.shape[time_dim]
        target_shape = [1] * x.dim()
        target_shape[time_dim] = T
        target_shape[-1] = -1
        rotation = self.get_rotation(start, start + T).view(target_shape)
        if self.xpos is not None:
            decay = self.xpos.get_decay(start, start + T).view(target_shape)
            if invert_decay:
                decay = decay ** -1
            rotation = rotation * decay
        x_complex = torch.view_as_complex(x.to(self.dtype).reshape(*x.shape[:-1], -1, 2))
        scaled_rotation = rotation * self.scale + (1.0 - self.scale)
        x_out = torch.view_as_real(x_complex * scaled_rotation).view_as(x)
        return x_out.type_as(x)

    def rotate_qk(self, query: torch.Tensor, key: torch.Tensor, start: int = 0,
                  time_dim: int = 1) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Rotate queries and keys; the keys start at time ``start`` and the queries are aligned on the keys'
        END (the last query is the last key's time), so ``query`` may be shorter than ``key``."""
        T = key.shape[time_dim]
        q_shift = T - query.shape[time_dim]
        if q_shift < 0:
            raise ArgumentError(f"rotate_qk: query is longer ({query.shape[time_dim]}) than key ({T}) along "
                                f"time_dim={time_dim}.")
        query_out = self.rotate(query, start + q_shift, time_dim)
        key_out = self.rotate(key, start, time_dim, invert_decay=True)
        return query_out, key_out
