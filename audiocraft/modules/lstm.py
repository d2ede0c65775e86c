"""A unidirectional LSTM over ``[B, C, T]`` sequences with a skip connection; streams with its (h, c) state."""
from __future__ import annotations

import dataclasses
import typing as tp

import torch
from torch import nn

from .streaming import StreamingModule, StreamingState


@dataclasses.dataclass
class _LSTMState(StreamingState):
    hidden: torch.Tensor  # [num_layers, B, C]
    cell: torch.Tensor  # [num_layers, B, C]


class StreamableLSTM(StreamingModule[_LSTMState]):
    """``nn.LSTM(dimension, dimension, num_layers)`` (attribute ``lstm``) applied along time.

    Input ``[B, C, T]`` -> ``[B, C, T]``; with ``skip`` the input is added to the LSTM output. The LSTM is
    causal, so streaming (one chunk after the other inside ``streaming()``) equals the one-shot result.
    """

    state_cls = _LSTMState

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def _init_streaming_state(self, x: torch.Tensor) -> _LSTMState:
        shape = (self.lstm.num_layers, x.shape[0], self.lstm.hidden_size)
        return _LSTMState(hidden=x.new_zeros(shape), cell=x.new_zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)  # [T, B, C]
        if not self.is_streaming:
            y, _ = self.lstm(seq)
        else:
            state = self._get_or_init_state(x)
            if x.shape[-1] == 0:
                return x
            y, (state.hidden, state.cell) = self.lstm(seq, (state.hidden, state.cell))
        if self.skip:
            y = y + seq
        return y.permute(1, 2, 0)

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End the stream (nothing is held back): process ``x`` if given, then reset the state."""
        out = None if x is None else self(x)
        self._streaming_state = None
        return out
