import pytest
import torch
from torch.nn import functional as F

from audiocraft.modules.activations import CustomGLU, GeGLU, ReGLU, SwiGLU, get_activation_fn, is_gated


def test_plain_names_map_to_torch_functional():
    assert get_activation_fn("gelu") is F.gelu
    assert get_activation_fn("relu") is F.relu
    assert get_activation_fn("silu") is F.silu


def test_callable_passes_through():
    fn = torch.tanh
    assert get_activation_fn(fn) is fn


@pytest.mark.parametrize("name, cls, gate", [("swiglu", SwiGLU, F.silu), ("geglu", GeGLU, F.gelu),
                                             ("reglu", ReGLU, F.relu)])
def test_gated_halves_and_gates_the_second_half(name, cls, gate):
    act = get_activation_fn(name)
    assert isinstance(act, cls) and is_gated(act)
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0, 2.0]])  # a = [1, -2, 0.5], b = [3, -1, 2]
    out = act(x)
    assert out.shape == (1, 3)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 0.5]]) * gate(torch.tensor([[3.0, -1.0, 2.0]])))


def test_custom_glu_other_dim_and_odd_size():
    glu = CustomGLU(torch.sigmoid, dim=1)
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(glu(x), x[:, :2] * torch.sigmoid(x[:, 2:]))
    with pytest.raises(ValueError, match="even size along dim 1"):
        glu(torch.randn(2, 3, 3))


def test_unknown_name():
    with pytest.raises(ValueError, match="Unknown activation 'nope'"):
        get_activation_fn("nope")
    with pytest.raises(TypeError, match="name or a callable"):
        get_activation_fn(3)  # type: ignore[arg-type]
