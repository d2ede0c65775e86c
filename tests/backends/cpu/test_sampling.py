"""Native sampling (audiocraft/backends/cpu/sampling.py): the same tokens and generator state as PyTorch's calls."""
import pytest
import torch

from audiocraft.backends.cpu import kernels as native_kernels, sampling
from audiocraft.utils.sampling import multinomial, sample_top_k

pytestmark = pytest.mark.skipif(not native_kernels.available(), reason="no C++ compiler: native kernels off")


def _probs(rows: int, n: int, keep: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(rows, n, generator=g) ** 4
    p[torch.rand(rows, n, generator=g) > keep] = 0.0
    p[:, n // 2] += 1e-3  # no empty row
    return p / p.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("rows, n, keep", [(1, 1, 1.0), (1, 5, 1.0), (4, 2048, 0.12), (16, 2048, 0.5),
                                           (3, 1000, 0.01), (2, 700, 1.0)])
def test_multinomial_draws_and_state_are_pytorchs(rows, n, keep):
    probs = _probs(rows, n, keep, seed=rows * n)
    for seed in (0, 7):
        ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for _ in range(40):  # many draws: the engine's 624-word blocks are crossed at every offset
            got = sampling.multinomial_one(probs, ours)
            assert got is not None and torch.equal(got, torch.multinomial(probs, 1, generator=theirs))
        assert torch.equal(ours.get_state(), theirs.get_state())


def test_multinomial_on_the_global_generator_and_edge_values():
    probs = _probs(4, 300, 0.3, seed=1)
    probs[0] = 0.0
    probs[0, 5] = probs[0, 9] = 1e-45  # quotients that underflow to 0: index 0 wins, as in PyTorch
    probs[1] = 0.0
    probs[1, 17] = 1.0  # a single candidate
    probs[2, :50] = 0.01  # ties
    torch.manual_seed(3)
    expected = torch.cat([torch.multinomial(probs, 1) for _ in range(20)])
    state = torch.get_rng_state()
    torch.manual_seed(3)
    got = torch.cat([sampling.multinomial_one(probs) for _ in range(20)])
    assert torch.equal(got, expected) and torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("bad", ["negative", "inf", "nan", "zero row"])
def test_refused_inputs_leave_the_generator_to_pytorch(bad):
    probs = _probs(2, 64, 1.0, seed=2)
    if bad == "zero row":
        probs[1] = 0.0
    else:
        probs[1, 3] = {"negative": -0.1, "inf": float("inf"), "nan": float("nan")}[bad]
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert sampling.multinomial_one(probs, g) is None
    assert torch.equal(g.get_state(), state)
    with pytest.raises(RuntimeError):
        multinomial(probs, 1, generator=g)  # PyTorch's own error


def test_not_applicable_cases_fall_back():
    probs = _probs(2, 64, 1.0, seed=3)
    assert sampling.multinomial_one(probs.double()) is None
    assert sampling.multinomial_one(probs.t().contiguous().t()) is None  # not contiguous
    assert sampling.kth_largest(probs, 0) is None and sampling.kth_largest(probs, 65) is None


def test_a_failed_self_check_turns_the_kernel_off(monkeypatch):
    monkeypatch.setitem(sampling._verified, "multinomial", False)
    assert sampling.multinomial_one(_probs(1, 8, 1.0, seed=4)) is None


@pytest.mark.parametrize("k", [1, 2, 250, 2048])
def test_kth_largest_is_topks(k):
    g = torch.Generator().manual_seed(k)
    probs = torch.softmax(torch.randn(8, 2048, generator=g) * 3, dim=-1)
    probs[1, :600] = probs[1, 0]  # duplicates
    probs[2] = torch.randn(2048, generator=g)  # negatives, zeros
    probs[2, :100] = 0.0
    probs[2, 100:200] = -0.0
    expected = torch.topk(probs, k, dim=-1)[0][..., -1:]
    assert torch.equal(sampling.kth_largest(probs, k), expected)
    probs[3, 7] = float("nan")
    assert sampling.kth_largest(probs, k) is None


def test_sample_top_k_with_and_without_kernels(monkeypatch):
    probs = torch.softmax(torch.randn(2, 4, 2048, generator=torch.Generator().manual_seed(5)) * 2, dim=-1)
    torch.manual_seed(11)
    native = torch.cat([sample_top_k(probs, 250) for _ in range(10)], dim=-1)
    monkeypatch.setattr(native_kernels, "available", lambda: False)
    torch.manual_seed(11)
    plain = torch.cat([sample_top_k(probs, 250) for _ in range(10)], dim=-1)
    assert native.shape == (2, 4, 10) and torch.equal(native, plain)
