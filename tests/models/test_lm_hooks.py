"""LMModel.generate hooks: per-item generators, cancel through the callback, on_frames, mask_condition_padding."""
import pytest
import torch

from audiocraft.models.builders import get_debug_lm_model
from audiocraft.models._generation import ConditionPadding, FrameTracker
from audiocraft.models.lm import LMModel
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider, UnrolledPatternProvider
from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider, LUTConditioner
from tests.models.test_lm import _attrs


@pytest.fixture(scope="module")
def cross_lm() -> LMModel:
    """Text through cross-attention (LUT conditioner), like MusicGen small/medium/large."""
    torch.manual_seed(0)
    return get_debug_lm_model()


@pytest.fixture(scope="module")
def prepend_lm() -> LMModel:
    """Text prepended to the sequence, like MusicGen melody's conditions."""
    torch.manual_seed(0)
    provider = ConditioningProvider({"description": LUTConditioner(n_bins=128, dim=16, output_dim=16,
                                                                   tokenizer="whitespace")})
    fuser = ConditionFuser({"cross": [], "prepend": ["description"], "sum": [], "input_interpolate": []})
    return LMModel(DelayedPatternProvider(n_q=4), provider, fuser, n_q=4, card=50, dim=16, num_heads=4,
                   num_layers=2, causal=True, norm_first=True, weight_init="gaussian").eval()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clean(lm: LMModel) -> bool:
    return all(not m.is_streaming and m._streaming_state is None for _, m in lm._streaming_modules())


# ------------------------------------------------------------------------------------------------ generators
def test_per_item_generators_make_items_independent(cross_lm):
    texts = _attrs(["rock", "calm piano"])
    a = cross_lm.generate(None, texts, max_gen_len=10, top_k=50, generator=[_gen(1), _gen(2)])
    b = cross_lm.generate(None, texts, max_gen_len=10, top_k=50, generator=[_gen(1), _gen(3)])
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    swapped = cross_lm.generate(None, texts[::-1], max_gen_len=10, top_k=50, generator=[_gen(2), _gen(1)])
    assert torch.equal(swapped[1], a[0]) and torch.equal(swapped[0], a[1])


@pytest.mark.parametrize("sampling", [dict(top_k=50), dict(top_k=0, top_p=0.8), dict(top_k=0)])
def test_one_item_list_equals_single_generator(cross_lm, sampling):
    one = cross_lm.generate(None, _attrs(["rock"]), max_gen_len=8, generator=_gen(5), **sampling)
    listed = cross_lm.generate(None, _attrs(["rock"]), max_gen_len=8, generator=(_gen(5),), **sampling)
    assert torch.equal(one, listed)


def test_generator_errors(cross_lm):
    with pytest.raises(ValueError, match="a list of 2 torch.Generator"):
        cross_lm.generate(None, _attrs(["a", "b"]), max_gen_len=3, generator=[_gen(1)])
    with pytest.raises(ValueError, match=r"\['int'\]"):
        cross_lm.generate(None, _attrs(["a"]), max_gen_len=3, generator=[1])
    with pytest.raises(TypeError, match="got int"):
        cross_lm.generate(None, _attrs(["a"]), max_gen_len=3, generator=1)


# ------------------------------------------------------------------------------------------------ cancel
def test_callback_false_stops_and_returns_complete_frames(cross_lm):
    full = cross_lm.generate(None, _attrs(["rock", "jazz"]), max_gen_len=10, use_sampling=False)
    seen = []

    def stop_at_six(done, total):
        seen.append(done)
        return done != 6
    part = cross_lm.generate(None, _attrs(["rock", "jazz"]), max_gen_len=10, use_sampling=False,
                             callback=stop_at_six)
    assert seen == [1, 2, 3, 4, 5, 6]
    # delay pattern [0, 1, 2, 3]: frame t is complete once step t + 4 is written; 6 steps from step 1 -> 3 frames
    assert part.shape == (2, 4, 3) and torch.equal(part, full[..., :3])
    assert _clean(cross_lm)
    early = cross_lm.generate(None, _attrs(["rock"]), max_gen_len=10, callback=lambda done, total: False)
    assert early.shape == (1, 4, 0)


def test_only_exactly_false_cancels(cross_lm):
    for value in (None, 0, [], True):
        out = cross_lm.generate(None, _attrs(["rock"]), max_gen_len=5, callback=lambda d, t, v=value: v)
        assert out.shape == (1, 4, 5)


def test_cancel_with_prompt_keeps_or_removes_it(cross_lm):
    prompt = torch.randint(0, 400, (1, 4, 3))
    # the first step writes sequence position 4 (frame 3 of codebook 0); after 5 steps position 8: 5 frames
    kept = cross_lm.generate(prompt, _attrs(["rock"]), max_gen_len=9, callback=lambda d, t: d < 5)
    assert kept.shape == (1, 4, 5) and torch.equal(kept[..., :3], prompt)
    removed = cross_lm.generate(prompt, _attrs(["rock"]), max_gen_len=9, callback=lambda d, t: d < 5,
                                remove_prompts=True, use_sampling=False)
    assert removed.shape == (1, 4, 2)
    assert _clean(cross_lm)


# ------------------------------------------------------------------------------------------------ on_frames
@pytest.mark.parametrize("prompt_len", [0, 2])
def test_on_frames_blocks_concatenate_to_the_output(cross_lm, prompt_len):
    prompt = torch.randint(0, 400, (2, 4, prompt_len)) if prompt_len else None
    blocks, events = [], []
    out = cross_lm.generate(prompt, _attrs(["rock", "jazz"]), max_gen_len=9, generator=_gen(0),
                            on_frames=lambda b: (blocks.append(b.clone()), events.append("frames")),
                            callback=lambda d, t: events.append(d))
    assert all(b.shape[:2] == (2, 4) for b in blocks)
    assert torch.equal(torch.cat(blocks, dim=-1), out[..., prompt_len:])
    # with the delay pattern one frame completes per step once the 3 delays are filled, before the callback
    assert [b.shape[-1] for b in blocks] == [1] * (9 - prompt_len)
    first = events.index("frames")
    assert events[first + 1] == events[first - 1] + 1 and events[-2:] == ["frames", events[-1]]


def test_on_frames_with_cancel_and_two_step(cross_lm):
    blocks = []
    out = cross_lm.generate(None, _attrs(["rock"]), max_gen_len=12, use_sampling=False, two_step_cfg=True,
                            on_frames=blocks.append, callback=lambda d, t: d < 7)
    assert out.shape == (1, 4, 4) and torch.equal(torch.cat(blocks, dim=-1), out)


def test_frame_tracker_on_an_unrolled_pattern():
    pattern = UnrolledPatternProvider(n_q=3, flattening=[0, 1, 1], delays=[0, 0, 0]).get_pattern(4)
    codes = torch.arange(12).view(1, 3, 4)
    sequence, _, _ = pattern.build_pattern_sequence(codes, special_token=-1)
    tracker = FrameTracker(pattern, sequence.shape[-1], torch.device("cpu"))
    readies = [tracker.ready_after(s) for s in range(sequence.shape[-1])]
    assert readies == sorted(readies) and readies[-1] == 4
    for s, ready in enumerate(readies):  # every code of the ready frames sits at a step <= s
        written = torch.where(torch.arange(sequence.shape[-1]) <= s, sequence, -2)
        assert bool((tracker.gather(written, 0, ready) >= 0).all())
    assert torch.equal(tracker.gather(sequence, 0, 4), codes)


# ------------------------------------------------------------------------------------------------ padding masks
@pytest.mark.parametrize("lm_name", ["cross_lm", "prepend_lm"])
@pytest.mark.parametrize("two_step", [False, True])
def test_masked_padding_makes_an_item_independent_of_its_neighbours(lm_name, two_step, request):
    lm = request.getfixturevalue(lm_name)
    kwargs = dict(max_gen_len=12, top_k=20, two_step_cfg=two_step)

    def first_item(texts, seeds, mask):
        return lm.generate(None, _attrs(texts), generator=[_gen(s) for s in seeds],
                           mask_condition_padding=mask, **kwargs)[0]
    alone = first_item(["rock"], [7], True)
    assert torch.equal(alone, first_item(["rock", "drums and bass heavy synth"], [7, 8], True))
    assert torch.equal(alone, first_item(["rock", None, "a very long description of many words"], [7, 8, 9], True))
    # Without the masks (Audiocraft's behaviour) the neighbour's length changes the result.
    assert not torch.equal(first_item(["rock"], [7], False),
                           first_item(["rock", "drums and bass heavy synth"], [7, 8], False))


def test_masked_padding_changes_nothing_without_padding(cross_lm):
    """One item, a text filling its row: the conditional branch is unpadded and the null branch's zero
    embeddings give the same attention output whether all or only the first are attended to."""
    for text in ("rock", "drums and bass"):
        plain = cross_lm.generate(None, _attrs([text]), max_gen_len=8, use_sampling=False)
        masked = cross_lm.generate(None, _attrs([text]), max_gen_len=8, use_sampling=False,
                                   mask_condition_padding=True)
        assert torch.equal(plain, masked)


def test_condition_padding_layout():
    fuse2cond = {"prepend": ["a", "b"], "cross": ["c", "d"]}
    ones, zeros = torch.ones(2, 2), torch.zeros(2, 2)
    ct = {"a": (torch.zeros(2, 2, 4), torch.tensor([[1, 0], [0, 0]])),
          "b": (torch.zeros(2, 3, 4), torch.tensor([[1, 1, 0], [1, 0, 0]])),
          "c": (torch.zeros(2, 2, 4), ones), "d": (torch.zeros(2, 2, 4), zeros)}
    pad = ConditionPadding.build(ct, fuse2cond, batch=2, capacity=9, device=torch.device("cpu"))
    # prepend: the last condition ends up first -> [b, a]; an all-padding row keeps its first position
    assert pad.keys[:, 0, 0].tolist() == [[True, True, False, True, False, True, True, True, True],
                                          [True, False, False, True, False, True, True, True, True]]
    assert pad.prefix_positions.tolist() == [[0, 1, 1, 2, 2], [0, 0, 0, 1, 1]]
    assert pad.first_music_position.tolist() == [[3], [2]]
    assert pad.cross is not None and pad.cross[:, 0, 0].tolist() == [[True, True, True, False]] * 2
    first = pad.step_kwargs(1)
    assert first["positions"].tolist() == [[0, 1, 1, 2, 2, 3], [0, 0, 0, 1, 1, 2]]
    assert first["src_mask"].shape == (2, 1, 1, 6)
    assert pad.step_kwargs(1)["positions"].tolist() == [[4], [3]] and pad.fed == 7


def test_transformer_positions_errors(cross_lm):
    x = torch.zeros(1, 3, 16)
    with pytest.raises(ValueError, match=r"positions must be \[B, T\] = \[1, 3\]"):
        cross_lm.transformer(x, cross_attention_src=torch.zeros(1, 2, 16), positions=torch.zeros(1, 2).long())
