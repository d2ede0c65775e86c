import pytest
import torch
from torch import nn
from torch.nn import functional as F

from audiocraft.modules.transformer import StreamingMultiheadAttention
from audiocraft.backends.cpu import kernels as native_kernels
from audiocraft.backends.cpu.packing import (PackedLinear, pack_linear_weights, packed_weight_bytes,
                                             packing_available, unpack_linear_weights)

# (kind, implementation): the native kernels where they build, PyTorch's oneDNN / fbgemm kernels otherwise.
IMPLS = [(k, "native") for k in ("native", "bf16", "int8") if native_kernels.available()] + [
    (k, "torch") for k in ("onednn", "bf16", "int8")]
IDS = [f"{k}-{impl}" for k, impl in IMPLS]


@pytest.fixture
def impl(request, monkeypatch):
    """Parametrized with (kind, implementation); turns the native kernels off for the 'torch' ones."""
    kind, which = request.param
    if which == "torch":
        monkeypatch.setattr(native_kernels, "available", lambda: False)
    if not packing_available(kind):
        pytest.skip(f"this PyTorch build lacks the kernels of {kind!r}")
    return kind, which


def _linear(bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(48, 80, bias=bias).eval()


def _reference(kind: str, which: str, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """What each kind promises to compute, in float64."""
    x, weight = x.double(), weight.double()
    if kind == "bf16":
        weight = weight.to(torch.bfloat16).double()
    elif kind == "int8":  # int8 weights per row
        scales = weight.abs().amax(dim=1, keepdim=True) / 127
        weight = torch.round(weight / scales).clamp(-127, 127) * scales
        if which == "native":  # activations on 16 bits per row (dynamic, symmetric)
            xs = x.abs().amax(dim=-1, keepdim=True) / 32767
            x = torch.round(x / xs).clamp(-32767, 32767) * xs
        else:  # fbgemm: activations on 7 bits per tensor (dynamic, asymmetric)
            low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
            step = (high - low) / 127
            zero = round(-low / step)
            x = (torch.round(x / step) + zero).clamp(0, 127).sub(zero) * step
    return F.linear(x, weight, None if bias is None else bias.double())


@pytest.mark.parametrize("impl", IMPLS, ids=IDS, indirect=True)
@pytest.mark.parametrize("shape", [(1, 48), (2, 48), (8, 48), (2, 5, 48)])
def test_packed_linear_computes_what_its_kind_promises(impl, shape):
    kind, which = impl
    lin = _linear()
    weight, bias = lin.weight.detach().clone(), lin.bias.detach().clone()
    x = torch.randn(*shape)
    pack_linear_weights(lin, kind)
    assert type(lin) is PackedLinear and lin.packed_kind == kind
    with torch.no_grad():
        out = lin(x)
    expected = _reference(kind, which, x, weight, bias)
    tol = 1e-4 if kind == "int8" else 1e-5  # int8: a rounding tie of x may go the other way
    assert out.dtype == torch.float32 and out.shape == (*shape[:-1], 80)
    assert float((out.double() - expected).abs().max()) < tol


def test_onednn_packing_is_exact_float32_math():
    lin = _linear(bias=False)
    x = torch.randn(3, 48)
    with torch.no_grad():
        before = lin(x)
        pack_linear_weights(lin, "onednn")
        torch.testing.assert_close(lin(x), before, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(lin(x[:, ::1].t().contiguous().t()), before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS, indirect=True)
def test_one_copy_state_dict_and_unpack(impl):
    kind, which = impl
    lin = _linear()
    param = lin.weight
    dense = lin.weight.detach().clone()
    pack_linear_weights(lin, kind)
    assert lin.weight is param and param.numel() == 0  # one copy of the weight: the packed one
    int8_bytes = 80 * 48 + (4 if which == "native" else 12) * 80
    assert packed_weight_bytes(lin) == {"native": 4 * 80 * 48, "onednn": 4 * 80 * 48, "bf16": 2 * 80 * 48,
                                        "int8": int8_bytes}[kind]
    state = lin.state_dict()
    assert state["weight"].shape == (80, 48) and torch.equal(state["bias"], lin.bias.detach())
    exact = {"native": dense, "onednn": dense, "bf16": dense.to(torch.bfloat16).float()}.get(kind)
    if exact is not None:
        assert torch.equal(state["weight"], exact)
    else:
        assert float((state["weight"] - dense).abs().max()) <= float(dense.abs().max()) / 254 + 1e-7
    assert unpack_linear_weights(lin) == 1
    assert type(lin) is nn.Linear and lin.weight is param and torch.equal(param.detach(), state["weight"])


@pytest.mark.skipif(not native_kernels.available(), reason="no native kernels here")
def test_native_uses_an_unpackable_weight_in_place():
    """A shape the packed layout cannot hold (rows not a multiple of the block) is read where it is."""
    torch.manual_seed(0)
    lin = nn.Linear(45, 37).eval()
    param, dense = lin.weight, lin.weight.detach().clone()
    x = torch.randn(3, 45)
    pack_linear_weights(lin, "native")
    assert lin.weight is param and torch.equal(param.detach(), dense)  # not emptied: the only copy
    with torch.no_grad():
        torch.testing.assert_close(lin(x), F.linear(x, dense, lin.bias), rtol=1e-5, atol=1e-5)
        lin.weight.mul_(2)  # in-place changes are seen
        torch.testing.assert_close(lin(x), F.linear(x, 2 * dense, lin.bias), rtol=1e-5, atol=1e-5)
    assert torch.equal(lin.state_dict()["weight"], 2 * dense)
    assert unpack_linear_weights(lin) == 1 and torch.equal(lin.weight.detach(), 2 * dense)


@pytest.mark.parametrize("kind", ["onednn", "native"])
def test_load_state_dict_repacks_and_apply_unpacks(kind):
    if not packing_available(kind):
        pytest.skip(f"no {kind!r} kernels here")
    lin = _linear()
    pack_linear_weights(lin, kind)
    new = {"weight": torch.randn(80, 48), "bias": torch.randn(80)}
    lin.load_state_dict(new)
    assert lin.packed_kind == kind and lin.weight.numel() == 0
    x = torch.randn(2, 48)
    with torch.no_grad():
        torch.testing.assert_close(lin(x), F.linear(x, new["weight"], new["bias"]), rtol=1e-5, atol=1e-5)
    lin.double()
    assert lin.packed_kind is None and lin.weight.dtype == torch.float64
    torch.testing.assert_close(lin.weight.float(), new["weight"])


@pytest.mark.parametrize("kind", ["onednn", "native"])
def test_gradients_unpack_with_a_warning(kind):
    if not packing_available(kind):
        pytest.skip(f"no {kind!r} kernels here")
    lin = _linear()
    pack_linear_weights(lin, kind)
    x = torch.randn(2, 48)
    with pytest.warns(UserWarning, match="needs gradients; unpacking"):
        lin(x).sum().backward()
    assert lin.packed_kind is None and lin.weight.grad is not None and lin.weight.grad.shape == (80, 48)


def test_pack_errors():
    lin = _linear()
    with pytest.raises(ValueError, match="Unknown packing kind 'fp8'"):
        pack_linear_weights(lin, "fp8")
    with pytest.raises(ValueError, match="rows_hint must be a positive int, got 0"):
        pack_linear_weights(lin, "onednn", rows_hint=0)
    meta = nn.Linear(4, 4, device="meta")
    with pytest.raises(ValueError, match="floating point CPU weights; Linear.weight is torch.float32 on meta"):
        pack_linear_weights(meta, "onednn")
    assert type(meta) is nn.Linear
    with pytest.raises(ValueError, match="Unknown packing kind"):
        packing_available("fp8")


@pytest.mark.parametrize("cross", [False, True])
def test_attention_projections_pack(cross):
    torch.manual_seed(0)
    attn = StreamingMultiheadAttention(32, 4, causal=not cross, cross_attention=cross, custom=True).eval()
    nn.init.normal_(attn.in_proj_bias)
    x, src = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    key = src if cross else x
    with torch.no_grad():
        expected = attn(x, key, key)[0]
        pieces = pack_linear_weights(attn, "onednn")
        assert pieces == (3 if cross else 2) and attn.in_proj_weight.numel() == 0  # in_proj (q / kv) + out_proj
        torch.testing.assert_close(attn(x, key, key)[0], expected, rtol=1e-5, atol=1e-5)
        if not cross:
            with attn.streaming():
                steps = [attn(x[:, t:t + 1], x[:, t:t + 1], x[:, t:t + 1])[0] for t in range(5)]
            torch.testing.assert_close(torch.cat(steps, dim=1), expected, rtol=1e-5, atol=1e-5)
    assert attn.state_dict()["in_proj_weight"].shape == (96, 32)
