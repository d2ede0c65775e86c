import dataclasses

import pytest
import torch

from audiocraft.modules.streaming import StreamingError, StreamingModule, StreamingState


@dataclasses.dataclass
class _SumState(StreamingState):
    total: torch.Tensor


class CumSum(StreamingModule[_SumState]):
    """Running sum over time: [B, T] -> [B, T]."""
    state_cls = _SumState

    def _init_streaming_state(self, batch_size: int) -> _SumState:
        return _SumState(total=torch.zeros(batch_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming:
            return x.cumsum(1)
        state = self._get_or_init_state(x.shape[0])
        out = x.cumsum(1) + state.total
        state.total = out[:, -1:]
        return out


class Pair(StreamingModule):
    def __init__(self):
        super().__init__()
        self.a = CumSum()
        self.b = CumSum()

    def forward(self, x):
        return self.b(self.a(x))


def test_streaming_equals_batch():
    m = Pair()
    x = torch.randn(3, 10)
    ref = m(x)
    with m.streaming():
        out = torch.cat([m(x[:, i:i + 3]) for i in range(0, 10, 3)], dim=1)
    torch.testing.assert_close(out, ref)
    assert not m.a.is_streaming and m.a._streaming_state is None


def test_state_get_set_roundtrip_and_reset():
    m = Pair()
    x = torch.randn(2, 4)
    with m.streaming():
        m(x)
        state = m.get_streaming_state()
        assert set(state) == {"a.total", "b.total"}
        y1 = m(x)
        m.set_streaming_state(state)
        y2 = m(x)
        torch.testing.assert_close(y1, y2)
        m.reset_streaming()
        assert m.get_streaming_state() == {}
        torch.testing.assert_close(m(x), Pair()(x))


def test_misuse_raises():
    m = Pair()
    with m.streaming():
        with pytest.raises(StreamingError, match="already streaming"):
            with m.a.streaming():
                pass
        with pytest.raises(StreamingError, match="Unknown streaming state keys"):
            m.set_streaming_state({"c.total": torch.zeros(1)})
    with pytest.raises(StreamingError, match="not in streaming mode"):
        m.a._get_or_init_state(1)
