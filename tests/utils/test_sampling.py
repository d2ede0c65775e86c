import pytest
import torch

from audiocraft.utils import utils
from audiocraft.utils.sampling import multinomial, sample_top_k, sample_top_p


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_reexported_from_utils():
    assert utils.multinomial is multinomial
    assert utils.sample_top_k is sample_top_k and utils.sample_top_p is sample_top_p


def test_multinomial_is_one_call_over_flattened_rows():
    probs = torch.rand(2, 4, 50)
    out = multinomial(probs, 1, generator=_gen(3))
    assert out.shape == (2, 4, 1)
    ref = torch.multinomial(probs.reshape(8, 50), 1, generator=_gen(3)).reshape(2, 4, 1)
    assert torch.equal(out, ref)
    # Same draw from the global RNG (what Audiocraft's seeded goldens rely on).
    torch.manual_seed(5)
    a = multinomial(probs, 1)
    torch.manual_seed(5)
    assert torch.equal(a, torch.multinomial(probs.reshape(8, 50), 1).reshape(2, 4, 1))


def test_top_k_keeps_ties_and_renormalises():
    probs = torch.tensor([[0.1, 0.3, 0.2, 0.2, 0.15, 0.05]])
    # k = 2: the 2nd largest is 0.2, both 0.2 entries are kept (ties): {0.3, 0.2, 0.2} / 0.7
    kept = torch.tensor([[0.0, 0.3, 0.2, 0.2, 0.0, 0.0]]) / 0.7
    out = sample_top_k(probs, 2, generator=_gen(1))
    assert torch.equal(out, torch.multinomial(kept, 1, generator=_gen(1)))
    draws = sample_top_k(probs.expand(4000, -1), 2, generator=_gen(2))
    counts = torch.bincount(draws.view(-1), minlength=6).float() / 4000
    assert counts[[0, 4, 5]].sum() == 0
    torch.testing.assert_close(counts[[1, 2, 3]], kept[0, [1, 2, 3]], atol=0.03, rtol=0)
    assert torch.equal(probs, torch.tensor([[0.1, 0.3, 0.2, 0.2, 0.15, 0.05]]))  # input untouched


def test_top_k_one_is_argmax():
    probs = torch.softmax(torch.randn(3, 4, 30), -1)
    assert torch.equal(sample_top_k(probs, 1, generator=_gen()), probs.argmax(-1, keepdim=True))


def test_top_p_hand_checked():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    # sorted: 0.5, 0.3, 0.15, 0.05; cumsum - p = 0, 0.5, 0.8, 0.95 -> with p = 0.6 keep 0.5 and 0.3.
    out = sample_top_p(probs, 0.6, generator=_gen(4))
    sorted_kept = torch.tensor([[0.5, 0.3, 0.0, 0.0]]) / 0.8
    choice = torch.multinomial(sorted_kept, 1, generator=_gen(4))
    assert out.item() == [1, 3][choice.item()]
    draws = sample_top_p(probs.expand(4000, -1), 0.6, generator=_gen(5)).view(-1)
    counts = torch.bincount(draws, minlength=4).float() / 4000
    assert counts[0] == 0 and counts[2] == 0
    torch.testing.assert_close(counts[[1, 3]], torch.tensor([0.625, 0.375]), atol=0.03, rtol=0)
    # p = 0: only the most likely entry survives.
    assert sample_top_p(probs, 0.0, generator=_gen()).item() == 1


def test_shapes_and_errors():
    probs = torch.softmax(torch.randn(2, 3, 10), -1)
    assert sample_top_p(probs, 0.9, generator=_gen()).shape == (2, 3, 1)
    assert sample_top_k(probs, 50, generator=_gen()).shape == (2, 3, 1)  # k > card keeps everything
    with pytest.raises(ValueError, match="top_k must be >= 1, got 0"):
        sample_top_k(probs, 0)
    with pytest.raises(ValueError, match=r"top_p must be in \[0, 1\], got 1.5"):
        sample_top_p(probs, 1.5)


def test_length_to_mask_and_collate():
    mask = utils.length_to_mask(torch.tensor([2, 0, 3]))
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    assert utils.length_to_mask(torch.tensor([1]), max_len=3).tolist() == [[True, False, False]]
    padded, lengths = utils.collate([torch.ones(2, 3), torch.ones(2, 1)], dim=1)
    assert padded.shape == (2, 2, 3) and lengths.tolist() == [3, 1]
    assert padded[1, :, 1:].abs().sum() == 0


def test_dict_from_config_resolves_against_root():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"sample_rate": 32000, "sub": {"sr": "${sample_rate}", "xs": [1, 2]}})
    assert utils.dict_from_config(cfg.sub) == {"sr": 32000, "xs": [1, 2]}
