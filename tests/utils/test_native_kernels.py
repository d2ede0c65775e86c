"""The native matrix-vector kernels (audiocraft/csrc/linear_kernels.cpp) against float64 references."""
import os
import subprocess
import sys

import pytest
import torch

from audiocraft.utils import native_kernels

pytestmark = pytest.mark.skipif(not native_kernels.available(), reason="no C++ compiler: native kernels off")


def _weight(dtype: torch.dtype, out: int, in_: int) -> torch.Tensor:
    w = torch.randn(out, in_)
    return (w * 40).round().clamp(-127, 127).to(torch.int8) if dtype == torch.int8 else w.to(dtype)


def _reference(x, weight, bias=None, scale=None) -> torch.Tensor:
    out = x.double() @ weight.double().T
    if scale is not None:
        out = out * scale.double()
    return out if bias is None else out + bias.double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9, 17])
@pytest.mark.parametrize("out, in_", [(64, 128), (37, 45), (8, 16), (3, 5)])
def test_linear_matches_float64(dtype, rows, out, in_):
    torch.manual_seed(rows * 1000 + out + in_)
    weight = _weight(dtype, out, in_)
    x, bias = torch.randn(rows, in_), torch.randn(out)
    scale = torch.rand(out) + 0.5 if dtype == torch.int8 else None
    y = native_kernels.linear(x, weight, bias, scale)
    expected = _reference(x, weight, bias, scale)
    assert y.dtype == torch.float32 and y.shape == (rows, out)
    assert float((y.double() - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("block", [1, 2, 4, 8])
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 16])
def test_packed_layout_matches_plain(dtype, block, rows):
    vw = native_kernels.vector_width()
    torch.manual_seed(block * 100 + rows)
    weight = _weight(dtype, 8 * block, 3 * vw)
    x, bias = torch.randn(rows, 3 * vw), torch.randn(8 * block)
    packed = native_kernels.pack(weight, block)
    assert packed.shape == (8, 3, block, vw) and packed.dtype == dtype
    expected = native_kernels.linear(x, weight, bias)
    torch.testing.assert_close(native_kernels.linear_packed(x, packed, bias), expected, rtol=1e-6, atol=1e-5)


def test_batched_and_strided_inputs():
    torch.manual_seed(0)
    weight = torch.randn(48, 64)
    x = torch.randn(2, 3, 80)[..., :64]  # rows with a stride of 80
    y = native_kernels.linear(x, weight)
    assert y.shape == (2, 3, 48)
    torch.testing.assert_close(y, x @ weight.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native_kernels.linear(x.transpose(0, 1), weight), (x @ weight.T).transpose(0, 1),
                               rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_the_thread_count():
    torch.manual_seed(0)
    weight, x = torch.randn(256, 512), torch.randn(4, 512)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native_kernels.linear(x, weight)
        torch.set_num_threads(2)
        two = native_kernels.linear(x, weight)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_input_errors():
    weight = torch.randn(8, 16)
    with pytest.raises(ValueError, match=r"x must be a CPU tensor \[..., 16\], got \(2, 15\)"):
        native_kernels.linear(torch.randn(2, 15), weight)
    with pytest.raises(ValueError, match="weight must be a contiguous 2-D CPU tensor"):
        native_kernels.linear(torch.randn(2, 8), weight.T)
    with pytest.raises(ValueError, match="weight must be a contiguous 2-D CPU tensor"):
        native_kernels.linear(torch.randn(2, 16), weight.double())
    with pytest.raises(ValueError, match=r"bias must be a contiguous float32 CPU tensor \[8\], got torch.float32 "
                                         r"\(7,\)"):
        native_kernels.linear(torch.randn(2, 16), weight, torch.randn(7))
    with pytest.raises(ValueError, match=r"Cannot pack a \[7, 16\] weight in blocks of 2 rows"):
        native_kernels.pack(torch.randn(7, 16), 2)


def test_build_cache_and_switch_off(tmp_path):
    """A fresh cache folder gets one library named by the build's hash; AUDIOCRAFT_NATIVE_KERNELS=0 turns them off."""
    code = ("from audiocraft.utils import native_kernels as nk; import torch; "
            "print(nk.available(), nk.linear(torch.ones(1, 4), torch.ones(2, 4)).tolist() if nk.available() else '')")
    env = dict(os.environ, AUDIOCRAFT_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "True" and "[[4.0, 4.0]]" in out
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].name.startswith("linear_kernels-") and built[0].suffix == ".so"
    env["AUDIOCRAFT_NATIVE_KERNELS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"
