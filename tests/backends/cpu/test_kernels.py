"""The native matrix-vector kernels (audiocraft/backends/cpu/csrc/linear_kernels.cpp) against float64 references."""
import os
import subprocess
import sys

import pytest
import torch

from audiocraft.backends.cpu import kernels as native_kernels

pytestmark = pytest.mark.skipif(not native_kernels.available(), reason="no C++ compiler: native kernels off")


def _weight(dtype: torch.dtype, out: int, in_: int) -> torch.Tensor:
    w = torch.randn(out, in_)
    return (w * 40).round().clamp(-127, 127).to(torch.int8) if dtype == torch.int8 else w.to(dtype)


def _reference(x, weight, bias=None, scale=None) -> torch.Tensor:
    """float64: float weights as they are; int8 weights with x quantized per row to int16 (scale max|x| / 32767)."""
    if weight.dtype == torch.int8:  # the kernel's float32 arithmetic: q = round(x * (32767 / m)), scale m / 32767
        m = x.abs().amax(dim=-1, keepdim=True)
        q = torch.round(x * (32767.0 / m)).clamp(-32767, 32767)
        x = q.double() * (m / 32767.0).double()
    x = x.double()
    out = x @ weight.double().T
    if scale is not None:
        out = out * scale.double()
    return out if bias is None else out + bias.double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9, 17])
@pytest.mark.parametrize("out, in_", [(64, 128), (37, 45), (8, 16), (3, 5), (16, 5000)])
def test_linear_matches_float64(dtype, rows, out, in_):
    torch.manual_seed(rows * 1000 + out + in_)
    weight = _weight(dtype, out, in_)
    x, bias = torch.randn(rows, in_), torch.randn(out)
    scale = torch.rand(out) + 0.5 if dtype == torch.int8 else None
    y = native_kernels.linear(x, weight, bias, scale)
    expected = _reference(x, weight, bias, scale)
    assert y.dtype == torch.float32 and y.shape == (rows, out)
    tol = 2e-6 * max(1.0, float(expected.abs().max()))
    if scale is not None:  # a tie may round the other way: one int16 step of x times the largest weight, twice
        tol += 2 * 127 * float(scale.max()) * float(x.abs().max()) / 32767
    assert float((y.double() - expected).abs().max()) <= tol


def test_int8_sums_are_exact_at_the_largest_values():
    """Every product at its maximum (127 x 32767) over 5000 columns: the integer sums must not overflow."""
    weight = torch.full((8, 5000), 127, dtype=torch.int8)
    x = torch.ones(2, 5000)
    y = native_kernels.linear(x, weight, scale=torch.ones(8))
    assert torch.equal(y, torch.full((2, 8), 127.0 * 5000))
    x[1, 7] = float("nan")
    y = native_kernels.linear(x, weight, scale=torch.ones(8))
    assert bool(y[1].isnan().all()) and torch.equal(y[0], torch.full((8,), 127.0 * 5000))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("rows", [1, 2, 5, 8, 16])
def test_packed_layout_gives_the_plain_results(dtype, rows):
    block, chunk = native_kernels.layout(dtype)
    torch.manual_seed(rows)
    weight = _weight(dtype, 8 * block, 3 * chunk)
    x, bias = torch.randn(rows, 3 * chunk), torch.randn(8 * block)
    scale = torch.rand(8 * block) + 0.5 if dtype == torch.int8 else None
    packed = native_kernels.pack(weight)
    assert packed.shape == (8, 3, block, chunk) and packed.dtype == dtype
    assert torch.equal(native_kernels.unpack(packed), weight)
    assert native_kernels.can_pack((8 * block, 3 * chunk), dtype)
    assert not native_kernels.can_pack((8 * block + 1, 3 * chunk), dtype)
    plain = native_kernels.linear(x, weight, bias, scale)
    assert torch.equal(native_kernels.linear_packed(x, packed, bias, scale), plain)  # the same sums, same order


def test_batched_and_strided_inputs():
    torch.manual_seed(0)
    weight = torch.randn(48, 64)
    x = torch.randn(2, 3, 80)[..., :64]  # rows with a stride of 80
    y = native_kernels.linear(x, weight)
    assert y.shape == (2, 3, 48)
    torch.testing.assert_close(y, x @ weight.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native_kernels.linear(x.transpose(0, 1), weight), (x @ weight.T).transpose(0, 1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
def test_results_do_not_depend_on_the_thread_count_or_the_rows(dtype):
    torch.manual_seed(0)
    weight, x = _weight(dtype, 256, 512), torch.randn(7, 512)
    scale = torch.rand(256) if dtype == torch.int8 else None
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native_kernels.linear(x, weight, scale=scale)
        torch.set_num_threads(2)
        two = native_kernels.linear(x, weight, scale=scale)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    rows = torch.cat([native_kernels.linear(x[i:i + 1], weight, scale=scale) for i in range(7)])
    assert torch.equal(rows, one)  # batch-invariant: row i alone gives the same numbers


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
    with pytest.raises(ValueError, match="scale is required for int8 weights, and only for them"):
        native_kernels.linear(torch.randn(2, 16), weight.to(torch.int8))
    with pytest.raises(ValueError, match="scale is required for int8 weights, and only for them"):
        native_kernels.linear(torch.randn(2, 16), weight, scale=torch.ones(8))
    with pytest.raises(ValueError, match=r"Cannot pack a \[7, 16\] weight in blocks of"):
        native_kernels.pack(torch.randn(7, 16))


def test_build_cache_and_switch_off(tmp_path):
    """A fresh cache folder gets one library named by the build's hash; AUDIOCRAFT_NATIVE_KERNELS=0 turns them off."""
    code = ("from audiocraft.backends.cpu import kernels as nk; import torch; "
            "print(nk.available(), nk.linear(torch.ones(1, 4), torch.ones(2, 4)).tolist() if nk.available() else '')")
    env = dict(os.environ, AUDIOCRAFT_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "True" and "[[4.0, 4.0]]" in out
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].name.startswith("linear_kernels-") and built[0].suffix == ".so"
    env["AUDIOCRAFT_NATIVE_KERNELS"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"


def test_prepacking_serves_whole_weights_and_block_slices():
    torch.manual_seed(0)
    block, chunk = native_kernels.layout(torch.float32)
    weights = [torch.randn(4 * block, 2 * chunk), torch.randn(2 * block, chunk)]
    expected = [native_kernels.pack(w) for w in weights]
    with native_kernels.Prepacking(weights) as job:
        job.wait()
        first = native_kernels.pack(weights[0])
        assert torch.equal(first, expected[0])
        part = native_kernels.pack(weights[0][block:3 * block])  # whole blocks of rows: a slice of the packed one
        assert torch.equal(part, expected[0][1:3]) and part.data_ptr() == first[1:3].data_ptr()
        assert torch.equal(native_kernels.pack(weights[1]), expected[1])
        odd = native_kernels.pack(weights[0][1:block + 1])  # not on a block boundary: packed afresh
        assert torch.equal(odd, native_kernels.pack(weights[0][1:block + 1].clone()))
    assert native_kernels.pack(weights[0]).data_ptr() != first.data_ptr()  # the shortcut ends with the context


def test_file_pages_released_from_a_memory_mapped_checkpoint(tmp_path):
    from audiocraft.utils.checkpoint_io import FilePages, safe_torch_load
    torch.manual_seed(0)
    original = torch.randn(512, 1024)
    torch.save({"w": original}, tmp_path / "ckpt.bin")
    loaded = safe_torch_load(tmp_path / "ckpt.bin")["w"]
    assert torch.equal(loaded, original)  # pages now mapped
    pages = FilePages()
    assert pages.is_file_mapped(loaded) and not pages.is_file_mapped(original)
    assert pages.release([original]) == 0  # anonymous memory is never touched
    assert pages.release([loaded]) >= loaded.numel() * 4 - 2 * 4096
    assert torch.equal(loaded, original)  # read from the file again
    assert torch.equal(original, original.clone()) and float(original.abs().sum()) > 0


@pytest.mark.parametrize("B, H, S, D", [(1, 1, 1, 16), (2, 4, 7, 64), (3, 2, 33, 24), (2, 16, 250, 64), (1, 3, 5, 72)])
def test_attend_matches_sdpa_on_cache_views(B, H, S, D):
    torch.manual_seed(S * 100 + D)
    cache_k, cache_v = torch.randn(B, H, S + 9, D) * 3, torch.randn(B, H, S + 9, D)
    k, v = cache_k[:, :, :S], cache_v[:, :, :S]  # views with the cache's strides, as in a decoding step
    q = torch.randn(B, 1, H, D).transpose(1, 2)  # [B, H, 1, D], heads not contiguous
    out = native_kernels.attend(q, k, v)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert out.shape == (B, H, 1, D)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_attend_errors():
    q, k = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match=r"attend needs q \[B, H, 1, D\]"):
        native_kernels.attend(torch.randn(1, 2, 2, 8), k, k)
    with pytest.raises(ValueError, match=r"attend needs q \[B, H, 1, D\]"):
        native_kernels.attend(q, k, torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="k must be a float32 CPU tensor"):
        native_kernels.attend(q, k.double(), k)
