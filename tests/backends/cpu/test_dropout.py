"""The exact dropout kernel (audiocraft/backends/cpu/csrc/dropout_kernels.cpp): the same output and the same
generator state afterwards as torch's CPU dropout, for any dense layout and any position in the generator."""
import pytest
import torch
from torch.nn import functional as F

from audiocraft.backends.cpu import dropout as exact

pytestmark = pytest.mark.skipif(exact.library() is None,
                                reason="no C++ compiler, or another bernoulli: torch's dropout is used")


def _both(x: torch.Tensor, p: float, seed: int, skip: int):
    """(torch's output, ours), each followed by 4 draws of torch.rand to compare the generator states."""
    results = []
    for fn in (F.dropout, exact.dropout):
        torch.manual_seed(seed)
        torch.rand(skip)
        out = fn(x, p, True)
        results.append((out, torch.rand(4)))
    return results


@pytest.mark.parametrize("shape, permute", [((1000,), None), ((2, 8, 63, 63), None), ((63, 2, 8), (1, 0, 2)),
                                            ((3, 5, 7), (2, 0, 1)), ((1,), None), ((312,), None), ((313,), None),
                                            ((1, 625, 96), None)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("skip", [0, 1, 623, 311])  # where in the 624-word block the draws start
def test_same_output_and_generator_state(shape, permute, p, skip):
    x = torch.randn(*shape)
    if permute is not None:
        x = x.permute(*permute)
    (ref, ref_after), (out, out_after) = _both(x, p, seed=len(shape) * 100 + skip, skip=skip)
    assert torch.equal(out, ref)
    assert torch.equal(out_after, ref_after)


def test_falls_back_where_the_kernel_does_not_apply():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    for case in (x[:, ::2], x.double(), x.clone().requires_grad_()):  # not dense, float64, needs gradients
        torch.manual_seed(1)
        ref = F.dropout(case, 0.1, True)
        torch.manual_seed(1)
        assert torch.equal(exact.dropout(case, 0.1, True), ref)
    assert exact.dropout(x, 0.1, False) is x  # eval: identity, no draw
    assert torch.equal(exact.dropout(x, 1.0, True), torch.zeros_like(x))
