"""MagnetLMModel: restricted attention on every backend, logits against the official golden, span masking."""
import importlib.util

import pytest
import torch

from audiocraft import backends
from audiocraft.backends.attention import AttentionBackend
from audiocraft.backends.cpu import kernels as native_kernels
from audiocraft.models import builders
from audiocraft.models._magnet_spans import least_probable_span_mask, spans_union
from audiocraft.models.lm_magnet import MagnetLMModel, check_decoding_steps
from audiocraft.models.loaders import load_lm_model_magnet
from audiocraft.modules.codebooks_patterns import ParallelPatternProvider
from audiocraft.modules.conditioners import ConditioningAttributes
from audiocraft.utils.checkpoint_io import CheckpointError
from tests.conftest import load_golden

MAGNET = "facebook/magnet-small-10secs"


def _tiny_lm(subcodes_context=2, **kwargs):
    torch.manual_seed(0)
    options = dict(n_q=3, card=32, dim=16, num_heads=2, num_layers=2, cross_attention=True, causal=False,
                   subcodes_context=subcodes_context, compression_model_framerate=5, segment_duration=2, span_len=3)
    lm = MagnetLMModel(pattern_provider=ParallelPatternProvider(3, empty_initial=-1),
                       condition_provider=builders.get_debug_conditioner_provider(16),
                       fuser=builders.get_debug_condition_fuser(), **{**options, **kwargs})
    return lm.eval()


def _attributes(texts):
    return [ConditioningAttributes(text={"description": t}) for t in texts]


@pytest.fixture(scope="module")
def lm():
    return load_lm_model_magnet(MAGNET, compression_model_frame_rate=50)


# ---------------------------------------------------------------------------------------------- official golden
def test_compute_predictions_matches_golden(lm):
    g = load_golden("magnet_lm_forward")
    assert isinstance(lm, MagnetLMModel)
    assert (lm.subcodes_context, lm.span_len, lm.segment_length) == (5, 3, 50)
    for s in g["meta"]["stages"]:
        with torch.no_grad():
            out = lm.compute_predictions(g[f"codes_stage{s}"], _attributes(g["meta"]["texts"]), stage=s)
        assert torch.equal(out.mask, g[f"mask_stage{s}"])
        assert (out.logits[:, s:s + 1] - g[f"logits_stage{s}"]).abs().max() < 1e-4
        rms = out.logits.double().pow(2).mean(dim=(2, 3)).sqrt()
        assert (rms - g[f"logits_rms_stage{s}"]).abs().max() < 1e-4


def test_stage_changes_the_logits(lm):
    """Stage 1 restricts attention: its logits differ from unrestricted ones (stage 0 / -1 agree)."""
    g = load_golden("magnet_lm_forward")
    codes, attrs = g["codes_stage1"], _attributes(g["meta"]["texts"])
    with torch.no_grad():
        full = lm.compute_predictions(codes, attrs, stage=0).logits
        none = lm.compute_predictions(codes, attrs, stage=-1).logits
        restricted = lm.compute_predictions(codes, attrs, stage=1).logits
    assert torch.equal(full, none)
    assert (full - restricted).abs().max() > 1e-2


# ---------------------------------------------------------------------------------------------- restricted attention
def test_masks():
    lm = _tiny_lm(subcodes_context=2)
    assert lm.stage_attention_mask(0, 6) is None
    allowed = lm.stage_attention_mask(1, 6)
    assert allowed.dtype == torch.bool and allowed.shape == (6, 6)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(allowed, (i - j).abs() <= 2)
    additive = lm.restricted_context_attn_mask(6)
    assert torch.equal(additive == 0, allowed) and bool(torch.isinf(additive[~allowed]).all())
    per_stage = lm.attn_mask_per_stage  # Audiocraft's layout: segment 10 frames, padded to 16, one copy per head
    assert per_stage[0] is None and per_stage[1].shape == (1, 2, 16, 16)
    assert torch.equal(per_stage[2][0, 1, :10, :10], lm.restricted_context_attn_mask(10))
    assert not per_stage[2][..., 10:, :].any()
    assert _tiny_lm(subcodes_context=-1).stage_attention_mask(2, 6) is None


class _Spy(AttentionBackend):
    """Records the masks the attention receives, then computes like the wrapped backend."""

    def __init__(self, inner):
        self.inner, self.name, self.masks = inner, inner.name, []

    def attend(self, q, k, v, mask=None, is_causal=False, dropout_p=0.0):
        if q.shape[2] == k.shape[2]:  # self-attention (the cross-attention keys are the text)
            self.masks.append(mask)
        return self.inner.attend(q, k, v, mask, is_causal, dropout_p)


def _attention_paths():
    paths = ["sdpa", "cpu"]
    if importlib.util.find_spec("xformers") is not None:
        paths.append("xformers")
    return paths


@pytest.mark.parametrize("path", _attention_paths())
def test_restriction_holds_on_every_attention_path(path):
    """A change at position 0 must not reach positions > subcodes_context at stages >= 1 (it does at stage 0),
    on SDPA, the CPU backend (packed weights + native attention) and xformers when installed."""
    lm = _tiny_lm(subcodes_context=2)
    if path == "cpu":
        if not native_kernels.available():
            pytest.skip("native CPU kernels not built")
        backends.prepare(lm)
        assert type(lm.transformer.layers[0].self_attn.backend).__name__ == "NativeAttention"
    elif path == "xformers":
        for layer in lm.transformer.layers:
            layer.self_attn.set_attention_backend("xformers")
    spies = []
    for layer in lm.transformer.layers:
        spies.append(_Spy(layer.self_attn.backend))
        layer.self_attn.set_attention_backend(spies[-1])
    codes = torch.randint(0, 32, (1, 3, 9))
    changed = codes.clone()
    changed[:, :, 0] = (codes[:, :, 0] + 1) % 32
    attrs = _attributes(["a b"])
    with torch.no_grad():
        for stage, reach in ((0, 9), (1, 2), (2, 2)):
            a = lm(codes, attrs, stage=stage)
            b = lm(changed, attrs, stage=stage)
            moved = (a - b).abs().amax(dim=(0, 1, 3)) > 0  # [T]
            # two layers: position 0 reaches 2 * subcodes_context = 4 steps when restricted
            limit = 9 if stage == 0 else 2 * reach
            assert bool(moved[:limit + 1].all()) and not bool(moved[limit + 1:].any()), (stage, moved)
    assert any(m is not None and m.shape[-1] == 9 for m in spies[0].masks)


def test_forward_errors():
    lm = _tiny_lm()
    with pytest.raises(ValueError, match=r"stage must be an int in \[-1, 3\), got 3"):
        lm(torch.zeros(1, 3, 4, dtype=torch.long), _attributes(["a"]), stage=3)
    with pytest.raises(ValueError, match="span_len must be an int >= 1"):
        _tiny_lm(span_len=0)


# ---------------------------------------------------------------------------------------------- generation
def test_generate_shapes_and_prompt():
    lm = _tiny_lm()
    steps = []
    prompt = torch.randint(0, 32, (2, 3, 4))
    torch.manual_seed(1)
    out = lm.generate(prompt, _attributes(["a", None]), max_gen_len=10, decoding_steps=[3, 2, 2],
                      callback=lambda i, n: steps.append((i, n)))
    assert out.shape == (2, 3, 9) and out.dtype == torch.long  # cut to a multiple of span_len = 3
    assert torch.equal(out[..., :4], prompt) and bool((out < 32).all())
    assert steps == [(i, 7) for i in range(1, 8)]
    stride1 = lm.generate(None, _attributes(["a"]), max_gen_len=10, decoding_steps=[3, 2, 2],
                          span_arrangement="stride1", use_sampling=False)
    assert stride1.shape == (1, 3, 10) and bool((stride1 < 32).all())


def test_generate_stops_when_the_callback_says_so():
    lm = _tiny_lm()
    prompt = torch.randint(0, 32, (1, 3, 4))
    out = lm.generate(prompt, _attributes(["a"]), max_gen_len=9, decoding_steps=[2, 2, 2],
                      callback=lambda i, n: i < 3)
    assert torch.equal(out, prompt)


def test_per_item_generators_make_items_independent():
    lm = _tiny_lm()
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    kwargs = dict(max_gen_len=9, decoding_steps=[2, 2, 2], mask_condition_padding=True)
    both = lm.generate(None, _attributes(["a b c d e", "x"]), generator=gens([3, 4]), **kwargs)
    alone = lm.generate(None, _attributes(["x"]), generator=gens([4]), **kwargs)
    assert torch.equal(both[1:], alone)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"decoding_steps": [2, 2]}, ValueError, "one entry per codebook"),
    ({"decoding_steps": [2, 0, 2]}, ValueError, r"decoding_steps\[1\] must be a positive int"),
    ({"decoding_steps": "222"}, TypeError, "decoding_steps must be a list"),
    ({"span_arrangement": "random"}, ValueError, "span_arrangement must be one of"),
    ({"span_scoring": "min"}, ValueError, "span_scoring must be one of"),
    ({"cfg_coef": 3.0}, ValueError, "cfg_coef=3.0 is not supported by MAGNeT"),
    ({"two_step_cfg": True}, ValueError, "two_step_cfg=True is not supported"),
    ({"max_gen_len": 2}, ValueError, "shorter than one span"),
    ({"prompt": torch.zeros(1, 3, 10, dtype=torch.long)}, ValueError, r"prompt \(10 frames\) must be shorter"),
])
def test_generate_errors(kwargs, error, message):
    lm = _tiny_lm()
    call = {"conditions": _attributes(["a"]), "max_gen_len": 10, "decoding_steps": [2, 2, 2], **kwargs}
    with pytest.raises(error, match=message):
        lm.generate(**call)


def test_check_decoding_steps():
    assert check_decoding_steps((20, 10, 10, 10), 4) == [20, 10, 10, 10]
    with pytest.raises(ValueError, match=r"decoding_steps\[0\] must be a positive int, got True"):
        check_decoding_steps([True, 1], 2)


# ---------------------------------------------------------------------------------------------- span masking
def test_spans_union():
    assert spans_union(torch.tensor([0, 5]), 8, 3).view(-1).tolist() == [1, 1, 1, 0, 0, 1, 1, 1]


def test_least_probable_spans_follow_the_binary_search():
    scores = torch.tensor([0.1, 5.0, 4.0, 0.2, 0.3, 3.0, 0.1, 0.1, 2.0, 0.0]).view(1, 1, -1)
    mask = least_probable_span_mask(scores, 4, 3)
    # target 4: u in [1, 2], midpoint round(1.5) = 2: the two best spans [0..2] (9.1) and [1..3] (9.2)
    assert mask.view(-1).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    # target 6: u in [2, 4], midpoint 3 -> union of spans 1, 0, 2 = 5 tokens <= 6 -> low = 3, stop
    assert int(least_probable_span_mask(scores, 6, 3).sum()) == 5
    assert int(least_probable_span_mask(scores, 1, 3).sum()) == 3  # at least one span


# ---------------------------------------------------------------------------------------------- loading
def test_loader_refuses_other_checkpoints():
    with pytest.raises(CheckpointError, match="not a MAGNeT checkpoint: lm_model='transformer_lm'"):
        load_lm_model_magnet("facebook/musicgen-small", compression_model_frame_rate=50)
    with pytest.raises(ValueError, match="compression_model_frame_rate must be a positive int"):
        load_lm_model_magnet(MAGNET, compression_model_frame_rate=50.0)
