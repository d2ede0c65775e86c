"""Determinism on CPU: the same seed gives the same tokens, different seeds give different tokens, both with
``torch.manual_seed`` before ``generate`` (Audiocraft's way) and with the per-call ``seed=`` argument."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import load_golden

TEXTS = ["80s pop track with bassy drums and synth", "A calm piano ballad, 90 BPM!"]


def _sampling(model, **kwargs):
    model.set_custom_progress_callback(None)
    model.set_generation_params(duration=0.2, use_sampling=True, top_k=250, **kwargs)


def _tokens(model, *args, method="generate", **kwargs):
    return getattr(model, method)(*args, return_tokens=True, **kwargs)[1]


def test_manual_seed_reproduces_the_golden_twice(small_model):
    g = load_golden("generate_sampling_topk")
    small_model.set_custom_progress_callback(None)
    small_model.set_generation_params(**g["meta"]["set_generation_params"])
    for _ in range(2):
        torch.manual_seed(g["meta"]["torch.manual_seed_right_before_call"])
        assert torch.equal(_tokens(small_model, g["meta"]["texts"]), g["tokens"])


@pytest.mark.parametrize("kwargs", [{}, {"top_p": 0.9}, {"temperature": 1.7}, {"two_step_cfg": True}])
def test_manual_seed(small_model, kwargs):
    _sampling(small_model, **kwargs)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(_tokens(small_model, TEXTS))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    assert (runs[0] != runs[2]).float().mean() > 0.5  # not a near-tie: most tokens differ


PROMPT = 0.5 * torch.sin(torch.arange(3200.0) / 7.0).expand(2, 1, 3200)


# Both items get the same input, so that item i with seed s + i can be compared with item j with the same seed.
@pytest.mark.parametrize("method, args", [
    ("generate", ([TEXTS[0]] * 2,)),
    ("generate_unconditional", (2,)),
    ("generate_continuation", (PROMPT, 32000, [TEXTS[1]] * 2)),
])
def test_seed_argument(small_model, method, args):
    _sampling(small_model)
    first = _tokens(small_model, *args, method=method, seed=11)
    torch.manual_seed(123)  # the global RNG does not matter with seed=
    torch.rand(5)
    again = _tokens(small_model, *args, method=method, seed=11)
    other = _tokens(small_model, *args, method=method, seed=12)
    swapped = _tokens(small_model, *args, method=method, seed=[12, 11])
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(other[0], first[1])  # seed s gives item i the seed s + i
    assert torch.equal(swapped[0], other[0]) and torch.equal(swapped[1], first[0])


def test_seed_argument_leaves_the_global_rng_alone(small_model):
    _sampling(small_model)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    small_model.generate(TEXTS, seed=3)
    assert torch.equal(torch.rand(3), expected)


def test_seeded_item_does_not_depend_on_the_batch(small_model):
    """With per-item seeds, a take regenerates alone from its seed (the other texts' padding is masked)."""
    _sampling(small_model)
    batch = _tokens(small_model, ["x", TEXTS[0], "a much longer description of some other music"], seed=[4, 9, 2])
    alone = _tokens(small_model, [TEXTS[0]], seed=9)
    assert torch.equal(batch[1:2], alone)


def test_generators_are_accepted_and_advance(small_model):
    _sampling(small_model)
    gen = torch.Generator().manual_seed(3)
    first = _tokens(small_model, ["x"], seed=[gen])
    second = _tokens(small_model, ["x"], seed=[gen])  # the generator moved on: a new take
    assert not torch.equal(first, second)
    assert torch.equal(first, _tokens(small_model, ["x"], seed=[torch.Generator().manual_seed(3)]))


def test_thread_count_does_not_change_tokens(small_model):
    _sampling(small_model)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(_tokens(small_model, TEXTS, seed=8))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(runs[0], runs[1])
