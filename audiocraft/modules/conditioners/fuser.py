"""ConditionFuser: merges the condition embeddings into the LM input (sum, prepend, interpolate) or hands them
to the cross-attention."""
from __future__ import annotations

from dataclasses import dataclass
import typing as tp

import torch
from torch.nn import functional as F

from ..streaming import StreamingModule, StreamingState
from .attributes import ConditionType
from ...utils.validation import ArgumentError, ArgumentTypeError


@dataclass
class _FuserState(StreamingState):
    """Number of LM steps already fused per batch item [B] int64; its presence means the prefix was prepended."""

    offsets: torch.Tensor


class ConditionFuser(StreamingModule[_FuserState]):
    """Fuse conditions into the LM input, per attribute, with one of :attr:`FUSING_METHODS`:

    - ``sum``: ``input + cond`` (same [B, T, D] shape);
    - ``input_interpolate``: cond resampled (nearest) to the input length along time, then summed;
    - ``prepend``: ``cat([cond, input], dim=1)``; conditions are prepended one after another in the iteration
      order of ``conditions``, so the LAST one ends up first. While streaming, only on the first call;
    - ``cross``: concatenated along time into the cross-attention input (plus a sinusoidal position embedding
      times ``cross_attention_pos_emb_scale`` when ``cross_attention_pos_emb``).

    Args:
        fuse2cond: ``{method: [attribute, ...]}``.
        cross_attention_pos_emb: add a position embedding to the cross-attention input.
        cross_attention_pos_emb_scale: scale of that embedding.
    """

    FUSING_METHODS = ["sum", "prepend", "cross", "input_interpolate"]
    state_cls = _FuserState

    def __init__(self, fuse2cond: tp.Dict[str, tp.List[str]], cross_attention_pos_emb: bool = False,
                 cross_attention_pos_emb_scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(fuse2cond, dict):
            raise ArgumentTypeError("fuse2cond must be a dict {method: [attribute, ...]}, got "
                                    f"{type(fuse2cond).__name__}.")
        bad = [k for k in fuse2cond if k not in self.FUSING_METHODS]
        if bad:
            raise ArgumentError(f"Unknown fusing methods {bad}; allowed: {self.FUSING_METHODS}.")
        self.cross_attention_pos_emb = cross_attention_pos_emb
        self.cross_attention_pos_emb_scale = cross_attention_pos_emb_scale
        self.fuse2cond: tp.Dict[str, tp.List[str]] = {k: list(v) for k, v in fuse2cond.items()}
        self.cond2fuse: tp.Dict[str, str] = {}
        for method, conditions in self.fuse2cond.items():
            for condition in conditions:
                if condition in self.cond2fuse:
                    raise ArgumentError(f"Condition {condition!r} is given two fusing methods: "
                                        f"{self.cond2fuse[condition]!r} and {method!r}.")
                self.cond2fuse[condition] = method

    def _init_streaming_state(self, batch_size: int, device: torch.device) -> _FuserState:
        return _FuserState(offsets=torch.zeros(batch_size, dtype=torch.long, device=device))

    def forward(self, input: torch.Tensor, conditions: tp.Dict[str, ConditionType]
                ) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]:
        """input [B, T, D], conditions {attribute: (embeds [B, S, D], mask)} ->
        (fused input [B, T', D] (T' = T + prepended lengths), cross-attention input [B, S', D] or None)."""
        B, T, _ = input.shape
        unknown = [name for name in conditions if name not in self.cond2fuse]
        if unknown:
            raise ArgumentError(f"Conditions {unknown} have no fusing method; this fuser knows "
                                f"{list(self.cond2fuse)}.")
        first_step = True
        if self._is_streaming:
            first_step = self._streaming_state is None
            state = self._get_or_init_state(B, input.device)

        cross: tp.Optional[torch.Tensor] = None
        for name, (cond, _mask) in conditions.items():
            method = self.cond2fuse[name]
            if method == "sum":
                if cond.shape != input.shape:
                    raise ArgumentError(f"Condition {name!r} is fused by 'sum' and must have the input's shape "
                                        f"{list(input.shape)}, got {list(cond.shape)}.")
                input = input + cond
            elif method == "input_interpolate":
                resampled = F.interpolate(cond.transpose(1, 2), size=input.shape[1])  # [B, D, T]
                input = input + resampled.transpose(1, 2)
            elif method == "prepend":
                if first_step:
                    input = torch.cat([cond, input], dim=1)
            else:  # cross
                cross = cond if cross is None else torch.cat([cross, cond], dim=1)

        if self.cross_attention_pos_emb and cross is not None:
            positions = torch.arange(cross.shape[1], device=cross.device).view(1, -1, 1)
            from ..transformer import create_sin_embedding  # the LM's own positional embedding

            pos_emb = create_sin_embedding(positions, cross.shape[-1]).to(cross.dtype)
            cross = cross + self.cross_attention_pos_emb_scale * pos_emb

        if self._is_streaming:
            state.offsets = state.offsets + T
        return input, cross
