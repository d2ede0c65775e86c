import pytest
import torch

from audiocraft.modules.codebooks_patterns import (CoarseFirstPattern, DelayedPatternProvider, LayoutCoord,
                                                   MusicLMPattern, ParallelPatternProvider, Pattern,
                                                   UnrolledPatternProvider, VALLEPattern)

S = -1  # special token in these tests

PROVIDERS = [
    lambda: DelayedPatternProvider(4),
    lambda: DelayedPatternProvider(4, delays=[0, 2, 2, 5]),
    lambda: DelayedPatternProvider(3, flatten_first=2, empty_initial=1),
    lambda: ParallelPatternProvider(4),
    lambda: ParallelPatternProvider(4, empty_initial=-1),
    lambda: UnrolledPatternProvider(4),
    lambda: UnrolledPatternProvider(4, flattening=[0, 1, 1, 2], delays=[0, 3, 3, 4]),
    lambda: CoarseFirstPattern(4, delays=[0, 1, 1]),
    lambda: VALLEPattern(3),
    lambda: MusicLMPattern(4, group_by=2),
]


@pytest.mark.parametrize("make", PROVIDERS)
@pytest.mark.parametrize("T", [1, 5, 12])
def test_build_then_revert_is_identity(make, T):
    provider = make()
    pattern = provider.get_pattern(T)
    codes = torch.randint(0, 100, (2, provider.n_q, T))
    seq, indexes, mask = pattern.build_pattern_sequence(codes, S)
    assert seq.shape == (2, provider.n_q, len(pattern.layout)) and mask.shape == indexes.shape == seq.shape[1:]
    assert ((seq == S) == ~mask[None]).all()  # codes exactly where the mask says
    back, _, back_mask = pattern.revert_pattern_sequence(seq, S)
    assert back_mask.all()
    assert torch.equal(back, codes)


@pytest.mark.parametrize("make", PROVIDERS)
def test_every_coordinate_appears_once(make):
    provider = make()
    pattern = provider.get_pattern(6)
    coords = [c for step in pattern.layout for c in step if c.t < 6]
    assert sorted(coords) == sorted(LayoutCoord(t, q) for t in range(6) for q in range(provider.n_q))


def test_delay_pattern_matches_the_drawing():
    pattern = DelayedPatternProvider(3).get_pattern(4)
    codes = torch.tensor([[[1, 2, 3, 4]] * 3])
    seq, _, _ = pattern.build_pattern_sequence(codes, 0)
    assert seq[0].tolist() == [[0, 1, 2, 3, 4, 0, 0],
                               [0, 0, 1, 2, 3, 4, 0],
                               [0, 0, 0, 1, 2, 3, 4]]
    assert pattern.max_delay == 2 and pattern.num_sequence_steps == 6
    assert len(pattern.valid_layout) == 5
    valid, _, _ = pattern.build_pattern_sequence(codes, 0, keep_only_valid_steps=True)
    assert valid[0].tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3], [0, 0, 0, 1, 2]]
    assert pattern.get_first_step_with_timesteps(0) == 1
    assert pattern.get_first_step_with_timesteps(2) == 3
    assert pattern.get_steps_with_timestep(1) == [2, 3, 4]
    assert pattern.get_first_step_with_timesteps(1, q=2) == 4
    assert pattern.get_first_step_with_timesteps(4) == 5  # the layout runs past T (written as special tokens)


def test_golden_pattern_sequence(golden):
    g = golden("lm_forward")
    pattern = DelayedPatternProvider(4).get_pattern(g["codes"].shape[-1])
    seq, _, mask = pattern.build_pattern_sequence(g["codes"], g["meta"]["special_token_id"],
                                                  keep_only_valid_steps=True)
    assert torch.equal(seq, g["pattern_sequence"])
    assert torch.equal(mask, g["pattern_mask"])


def test_revert_logits_takes_the_prediction_of_each_code():
    # Position s of the model output predicts layout step s + 1.
    pattern = DelayedPatternProvider(2).get_pattern(3)  # layout: [], [a0], [a1 b0], [a2 b1], [b2]
    S_ = len(pattern.layout)
    logits = torch.arange(2 * S_, dtype=torch.float).view(1, 1, 2, S_)  # [B, card, K, S], value = k * S + s
    out, _, mask = pattern.revert_pattern_logits(logits, float("nan"))
    assert out.shape == (1, 1, 2, 3) and mask.all()
    assert out[0, 0].tolist() == [[0.0, 1.0, 2.0], [S_ + 1.0, S_ + 2.0, S_ + 3.0]]
    valid, _, vmask = pattern.revert_pattern_logits(logits[..., :4], float("nan"), keep_only_valid_steps=True)
    assert vmask.tolist() == [[True, True, True], [True, True, False]]
    assert valid[0, 0, 1, 2].isnan() and valid[0, 0, 1, 1] == S_ + 2.0


def test_golden_logits_mask(golden):
    g = golden("lm_forward")
    B, K, T = g["codes"].shape
    pattern = DelayedPatternProvider(K).get_pattern(T)
    _, _, mask = pattern.revert_pattern_logits(torch.zeros(B, 1, K, T + 1), float("nan"), keep_only_valid_steps=True)
    assert torch.equal(mask[None].expand(B, -1, -1), g["logits_mask"])


def test_index_tensors_are_cached_and_usable_outside_inference_mode():
    provider = DelayedPatternProvider(4)
    assert provider.get_pattern(7) is provider.get_pattern(7)
    pattern = provider.get_pattern(7)
    with torch.inference_mode():
        first = pattern.build_pattern_sequence(torch.zeros(1, 4, 7, dtype=torch.long), 9)[1]
    again = pattern.build_pattern_sequence(torch.zeros(1, 4, 7, dtype=torch.long), 9)[1]
    assert first is again and not again.is_inference()
    logits = torch.randn(1, 3, 4, 8, requires_grad=True)
    pattern.revert_pattern_logits(logits, 0.0)[0].sum().backward()  # the cached indexes can be saved for backward
    assert logits.grad is not None


def test_unrolled_layouts():
    full = UnrolledPatternProvider(3).get_pattern(2)
    assert full.layout == [[], [LayoutCoord(0, 0)], [LayoutCoord(0, 1)], [LayoutCoord(0, 2)],
                           [LayoutCoord(1, 0)], [LayoutCoord(1, 1)], [LayoutCoord(1, 2)]]
    partial = UnrolledPatternProvider(3, flattening=[0, 1, 1]).get_pattern(2)
    assert partial.layout == [[], [LayoutCoord(0, 0)], [LayoutCoord(0, 1), LayoutCoord(0, 2)],
                              [LayoutCoord(1, 0)], [LayoutCoord(1, 1), LayoutCoord(1, 2)]]
    assert UnrolledPatternProvider(3).num_virtual_steps(2) == 7


def test_musiclm_and_coarse_first_layouts():
    m = MusicLMPattern(4, group_by=2).get_pattern(2)
    assert [c[0] for c in m.layout[1:]] == [LayoutCoord(0, 0), LayoutCoord(0, 1), LayoutCoord(1, 0),
                                            LayoutCoord(1, 1), LayoutCoord(0, 2), LayoutCoord(0, 3),
                                            LayoutCoord(1, 2), LayoutCoord(1, 3)]
    c = CoarseFirstPattern(3).get_pattern(2)
    assert c.layout == [[], [LayoutCoord(0, 0)], [LayoutCoord(1, 0)], [LayoutCoord(0, 1), LayoutCoord(0, 2)],
                        [LayoutCoord(1, 1), LayoutCoord(1, 2)]]


def test_errors():
    with pytest.raises(ValueError, match="at least one step"):
        Pattern([], timesteps=1, n_q=1)
    with pytest.raises(ValueError, match="several coordinates of the same codebook"):
        Pattern([[], [LayoutCoord(0, 0), LayoutCoord(1, 0)]], timesteps=2, n_q=1)
    with pytest.raises(ValueError, match="goes back in time for codebook 0"):
        Pattern([[], [LayoutCoord(1, 0)], [LayoutCoord(0, 0)]], timesteps=2, n_q=1)
    with pytest.raises(ValueError, match="delays must be non-decreasing"):
        DelayedPatternProvider(3, delays=[0, 2, 1])
    with pytest.raises(ValueError, match="delays must have 3 entries"):
        DelayedPatternProvider(3, delays=[0, 1])
    with pytest.raises(ValueError, match="different delays"):
        UnrolledPatternProvider(2, flattening=[0, 0], delays=[0, 1])
    with pytest.raises(ValueError, match="n_q must be positive"):
        ParallelPatternProvider(0)
    pattern = DelayedPatternProvider(2).get_pattern(3)
    with pytest.raises(ValueError, match="3 codebooks but the pattern has 2"):
        pattern.build_pattern_sequence(torch.zeros(1, 3, 3, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="more than the pattern's 3"):
        pattern.build_pattern_sequence(torch.zeros(1, 2, 4, dtype=torch.long), 0)


def test_parallel_without_special_step_aligns_outputs_with_inputs():
    """MAGNeT's pattern (empty_initial=-1): step t holds timestep t, and the model output at t predicts t."""
    pattern = ParallelPatternProvider(2, empty_initial=-1).get_pattern(3)
    assert pattern.layout == [[LayoutCoord(t, 0), LayoutCoord(t, 1)] for t in range(3)]
    assert not pattern.starts_with_special_token()
    codes = torch.arange(6).view(1, 2, 3)
    seq, _, mask = pattern.build_pattern_sequence(codes, S, keep_only_valid_steps=True)
    assert torch.equal(seq, codes) and mask.all()
    logits = torch.arange(6, dtype=torch.float).view(1, 1, 2, 3)  # [B, card, K, S]
    out, _, out_mask = pattern.revert_pattern_logits(logits, float("nan"), keep_only_valid_steps=True)
    assert torch.equal(out, logits) and out_mask.all()
