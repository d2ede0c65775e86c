"""The fused decoding step (audiocraft/backends/cpu/decoding.py, csrc/step_kernels.cpp) against the plain layers."""
import contextlib
import copy
import typing as tp

import pytest
import torch
from torch.nn import functional as F

from audiocraft.backends.cpu import decoding, kernels as native_kernels
from audiocraft.backends.cpu.decoding import FusedDecodingLayer, fuse_decoding_layers, unfuse_decoding_layers
from audiocraft.backends.cpu.packing import pack_linear_weights
from audiocraft.modules.transformer import StreamingTransformer, create_sin_embedding

pytestmark = pytest.mark.skipif(not native_kernels.available(), reason="no C++ compiler: native kernels off")

E = 64


def _transformer(**options: tp.Any) -> StreamingTransformer:
    torch.manual_seed(0)
    kwargs: tp.Dict[str, tp.Any] = dict(
        d_model=E, num_heads=4, num_layers=2, dim_feedforward=96, dropout=0.0, causal=True, custom=True,
        cross_attention=True, norm_first=True, activation="gelu", layer_scale=0.5)
    kwargs.update(options)
    model = StreamingTransformer(**kwargs).eval()
    with torch.no_grad():  # move biases, norms and gains away from their initial values: each of them matters
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
    return model


_STACKED = [0]  # whole-stack steps of the last _stream


def _stream(model: StreamingTransformer, x: torch.Tensor, source: tp.Optional[torch.Tensor], prefill: int = 3,
            stack: bool = True) -> tp.Tuple[torch.Tensor, int]:
    """Outputs of a stream: ``prefill`` steps in one call, then one step at a time; and how many layer steps ran
    on the fused kernel (a whole-stack step counts one per layer). ``stack=False``: one call per layer."""
    fused = 0
    step, stack_step = decoding._step, decoding._stack_step

    def counting(*args: tp.Any) -> tp.Any:
        nonlocal fused
        out = step(*args)
        fused += out is not None
        return out

    def counting_stack(*args: tp.Any) -> tp.Any:
        nonlocal fused
        out = stack_step(*args) if stack else None
        fused += 0 if out is None else len(model.layers)
        _STACKED[0] += out is not None
        return out

    kwargs = {} if source is None else {"cross_attention_src": source}
    outs = []
    _STACKED[0] = 0
    decoding._step, decoding._stack_step = counting, counting_stack
    try:
        with torch.no_grad(), model.streaming():
            outs.append(model(x[:, :prefill], **kwargs))
            for t in range(prefill, x.shape[1]):
                outs.append(model(x[:, t:t + 1], **kwargs))
    finally:
        decoding._step, decoding._stack_step = step, stack_step
    return torch.cat(outs, dim=1), fused


def _pair(kind: str, **options: tp.Any) -> tp.Tuple[StreamingTransformer, StreamingTransformer]:
    """(packed plain layers, the same packed and fused)."""
    plain = _transformer(**options)
    pack_linear_weights(plain, kind)
    fused = copy.deepcopy(plain)
    assert fuse_decoding_layers(fused) == len(fused.layers)
    return plain, fused


@pytest.mark.parametrize("kind", ["native", "bf16", "int8"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("options", [
    {},
    {"layer_scale": None, "bias_ff": False, "bias_attn": False},
    {"norm": "rms_norm", "cross_attention": False, "activation": "relu"},
    {"past_context": 4},
], ids=["musicgen", "no-bias-no-scale", "rms-relu-no-cross", "past-context"])
def test_fused_step_matches_the_plain_layers(kind, batch, options):
    plain, fused = _pair(kind, **options)
    torch.manual_seed(1)
    x = torch.randn(batch, 12, E)
    source = torch.randn(batch, 5, E) if plain.layers[0].cross_attention is not None else None
    expected, none = _stream(plain, x, source)
    got, count = _stream(fused, x, source)
    assert none == 0 and count == 2 * (12 - 3) and _STACKED[0] == 12 - 3  # every one-step call: one native call
    # same weights, same linear kernels; norms, GELU and attention are the kernel's own (~1e-7 relative), which
    # int8 may see through the rounding of an activation to int16 (one step: max |x| / 32767); bf16 / int8 steps
    # cache keys and values in float16 (relative rounding 2^-11)
    tol = {"native": 1e-5, "bf16": 1e-3, "int8": 2e-3}[kind]
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    by_layer, count = _stream(fused, x, source, stack=False)  # the same kernels layer by layer (float32 caches)
    assert count == 2 * (12 - 3)
    if kind == "native":
        assert torch.equal(by_layer, got)
    else:
        torch.testing.assert_close(by_layer, expected, rtol=1e-4 if kind == "int8" else 1e-5, atol=1e-4)


def test_fused_float32_matches_pytorch_and_is_independent_of_threads():
    reference = _transformer()
    torch.manual_seed(1)
    x, source = torch.randn(2, 10, E), torch.randn(2, 5, E)
    expected, _ = _stream(reference, x, source)
    _, fused = _pair("native")
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            outs.append(_stream(fused, x, source)[0])
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(outs[0], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("options", [
    {"norm_first": False},
    {"positional_embedding": "rope"},
    {"kv_repeat": 2},
    {"activation": "silu"},
    {"norm": "rms_norm"},  # RMSNorm beside the cross-attention's LayerNorm
    {"qk_layer_norm": True},
], ids=["post-norm", "rope", "kv-repeat", "silu", "mixed-norms", "qk-norm"])
def test_layers_it_does_not_cover_run_the_plain_forward(options):
    plain, fused = _pair("native", **options)
    torch.manual_seed(1)
    x, source = torch.randn(2, 8, E), torch.randn(2, 5, E)
    expected, _ = _stream(plain, x, source)
    got, count = _stream(fused, x, source)
    assert count == 0
    assert torch.equal(got, expected)


def test_unpacked_gradients_and_training_run_the_plain_forward():
    model = _transformer()
    assert fuse_decoding_layers(model) == 2  # unpacked: the step finds no packed weights and remembers
    torch.manual_seed(1)
    x, source = torch.randn(1, 6, E), torch.randn(1, 5, E)
    assert _stream(model, x, source)[1] == 0
    pack_linear_weights(model, "native")  # packed later: the plan is built then
    assert _stream(model, x, source)[1] == 2 * 3
    with torch.enable_grad():
        model.train()
        out = model(x, cross_attention_src=source)
    assert out.requires_grad


@pytest.mark.parametrize("kind", ["native", "int8"])
def test_cache_dtype_follows_the_weights_also_through_the_plain_forward(kind):
    plain, fused = _pair(kind)
    torch.manual_seed(1)
    x, source = torch.randn(2, 6, E), torch.randn(2, 5, E)
    half = torch.float16 if kind == "int8" else torch.float32
    with torch.no_grad(), fused.streaming(), plain.streaming():
        for model in (plain, fused):
            model(x[:, :2], cross_attention_src=source)
            model(x[:, 2:3], cross_attention_src=source)
        state = fused.layers[1].self_attn._streaming_state
        assert state.keys.dtype == half and state.values.dtype == half and state.length == 3
        cached = state.keys[:, :, :3].clone()
        # two steps: the plain forward, which keeps the cache's dtype (rounds what it writes, widens what it reads)
        got = fused(x[:, 3:5], cross_attention_src=source)
        expected = plain(x[:, 3:5], cross_attention_src=source)
        assert state.keys.dtype == half and state.length == 5
        assert torch.equal(state.keys[:, :, :3], cached)
        plain_keys = plain.layers[1].self_attn._streaming_state.keys
        assert plain_keys.dtype == torch.float32  # never fused: the weights' dtype
        torch.testing.assert_close(state.keys[:, :, 3:5].float(), plain_keys[:, :, 3:5].to(half).float(),
                                   rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)


def test_a_finished_stream_leaves_no_cache_behind():
    """The plan of the native step points at the caches of the current stream only through weak references."""
    import gc
    import weakref as weakref_
    _, fused = _pair("int8")
    torch.manual_seed(1)
    x, source = torch.randn(2, 5, E), torch.randn(2, 5, E)
    with torch.no_grad(), fused.streaming():
        fused.allocate_kv_caches(2, 16)
        for t in range(5):
            fused(x[:, t:t + 1], cross_attention_src=source)
        keys = weakref_.ref(fused.layers[0].self_attn._streaming_state.keys)
    gc.collect()
    assert keys() is None


@pytest.mark.parametrize("kind", ["native", "bf16", "int8"])
def test_presized_caches_are_made_in_the_native_steps_dtype(kind):
    """allocate_kv_caches makes the float16 cache of bf16 / int8 weights at once (no full-size float32 first)."""
    _, fused = _pair(kind)
    half = torch.float32 if kind == "native" else torch.float16
    with torch.no_grad(), fused.streaming():
        fused.allocate_kv_caches(3, 40)
        states = [layer.self_attn._streaming_state for layer in fused.layers]
        assert all(s.keys.dtype == half and s.values.dtype == half and s.keys.shape[2] == 40 for s in states)
        fused.allocate_kv_caches(3, 40, dtype=torch.float32)  # an explicit dtype wins
        assert fused.layers[0].self_attn._streaming_state.keys.dtype == torch.float32


def test_half_conversion_is_ieee_round_to_nearest_even():
    values = torch.cat([torch.randn(10000) * 10, torch.randn(1000) * 1e-5, torch.tensor([0.0, -0.0, 65504.0,
                        65519.0, -65519.0, 6.1035156e-05, 6.097e-05, 2.98e-08, 5.96e-08, float("nan")])])
    got = native_kernels.to_half(values)
    expected = values.half()
    assert got.dtype == torch.float16
    assert torch.equal(got.view(torch.int16)[:-1], expected.view(torch.int16)[:-1]) and bool(got[-1].isnan())
    assert float(native_kernels.to_half(torch.tensor([1e6, -70000.0])).abs().max()) == 65504.0  # saturating


def test_stack_positions_are_the_plain_embedding():
    model = _transformer(positional_scale=0.7, max_period=5000)
    fuse_decoding_layers(model)
    stack = decoding._StackPlan(model, [])
    for t in (0, 1, 255, 256, 3000):
        expected = model.positional_scale * create_sin_embedding(torch.full((1, 1, 1), t), E, 5000)
        assert torch.equal(stack.positions(model, t, E), expected[0, 0])


def test_stack_falls_back_and_recovers():
    """A cache that grows past its capacity, a source of another length, a batch change: the stack steps again
    where it can, the plain forward runs (and raises) where it must."""
    plain, fused = _pair("native")
    torch.manual_seed(1)
    x, source = torch.randn(2, 40, E), torch.randn(2, 5, E)
    expected, _ = _stream(plain, x, source, prefill=1)  # a first cache of 32 steps grows on the way
    got, count = _stream(fused, x, source, prefill=1)
    assert count == 2 * 39
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), fused.streaming():
        fused(x[:, :2], cross_attention_src=source)
        with pytest.raises(Exception, match="source changed shape"):
            fused(x[:, 2:3], cross_attention_src=source[:, :4])
        with pytest.raises(Exception, match="[Bb]atch"):
            fused(x[:1, 2:3], cross_attention_src=source[:1])
        with pytest.raises(Exception, match="cross_attention_src"):
            fused(x[:, 2:3])


def test_unfuse_restores_the_plain_class_and_state_dict_keys():
    plain, fused = _pair("native")
    assert isinstance(fused.layers[0], FusedDecodingLayer)
    assert list(fused.state_dict()) == list(plain.state_dict())
    assert unfuse_decoding_layers(fused) == 2
    assert type(fused.layers[0]) is type(plain.layers[0]) and type(fused) is type(plain)
    assert fuse_decoding_layers(fused) == 2 and fuse_decoding_layers(fused) == 2  # idempotent


def test_no_kernels_no_fusion(monkeypatch):
    monkeypatch.setattr(native_kernels, "available", lambda: False)
    assert fuse_decoding_layers(_transformer()) == 0


@pytest.mark.parametrize("rms", [False, True])
def test_normalize_matches_torch(rms):
    torch.manual_seed(0)
    x, w, b = torch.randn(5, 77) * 3 + 1, torch.randn(77), torch.randn(77)
    if rms:
        expected = F.rms_norm(x, (77,), w, eps=1e-5)
        got = native_kernels.normalize(x, w, eps=1e-5, rms=True)
    else:
        expected = F.layer_norm(x, (77,), w, b, eps=1e-5)
        got = native_kernels.normalize(x, w, b, eps=1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="weight must be"):
        native_kernels.normalize(x, torch.randn(76))


def test_activate_matches_torch():
    x = torch.cat([torch.linspace(-12, 12, 4001), torch.tensor([-30.0, 30.0, 0.0])])
    expected = 0.5 * x.double() * torch.special.erfc(-x.double() / 2 ** 0.5)  # exact in the far negative tail too
    error = (native_kernels.activate(x, "gelu").double() - expected).abs()
    assert bool((error <= 3e-7 * x.abs().clamp_min(1)).all())  # torch's own float32 GELU: ~1e-6
    tail = expected.abs() > 1e-30
    assert float((error[tail] / expected[tail].abs()).max()) < 2e-5  # relative, down the negative tail
    assert torch.equal(native_kernels.activate(x, "relu"), F.relu(x))
    with pytest.raises(ValueError, match="activation must be one of"):
        native_kernels.activate(x, "silu")


def test_forward_hooks_see_every_layer_call():
    """A hook on a layer or one of its modules sees each decoding step: the native step (which skips the modules'
    calls) gives way to the plain forward while a hook is registered, with the same tokens."""
    from audiocraft.models import MusicGen

    model = MusicGen.get_pretrained("debug", device="cpu")
    model.set_generation_params(duration=0.2, use_sampling=False)
    ref = model.generate(["a song"], return_tokens=True)[1]
    frames = ref.shape[-1]
    for target in (model.lm.transformer.layers[1], model.lm.transformer.layers[0].linear1):
        calls = []
        handle = target.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
        try:
            tokens = model.generate(["a song"], return_tokens=True)[1]
        finally:
            handle.remove()
        assert torch.equal(tokens, ref)
        assert len(calls) >= frames  # one call per decoding step (a prompt pass may add one)


@contextlib.contextmanager
def _native_steps() -> tp.Iterator[tp.List[int]]:
    """Counts the steps that run as one native call, in ``[count]``, while the block runs."""
    calls = [0]
    stack_step = decoding._stack_step

    def counting(*args: tp.Any) -> tp.Any:
        out = stack_step(*args)
        calls[0] += out is not None
        return out

    decoding._stack_step = counting
    try:
        yield calls
    finally:
        decoding._stack_step = stack_step


def _masked_stream(model: StreamingTransformer, x: torch.Tensor, source: torch.Tensor, cross: torch.Tensor,
                   prefill: int = 3) -> tp.Tuple[torch.Tensor, int]:
    """A stream fed as generation does with padded conditions (ConditionPadding): per-row positions, a key mask
    and a cross-attention mask on every call; and how many steps ran as one native call."""
    B, T = x.shape[0], x.shape[1]
    outs = []
    with _native_steps() as calls:
        with torch.no_grad(), model.streaming():
            for t0, t1 in [(0, prefill)] + [(t, t + 1) for t in range(prefill, T)]:
                positions = torch.arange(t0, t1).expand(B, -1)
                src_mask = torch.ones(B, 1, 1, t1, dtype=torch.bool)
                outs.append(model(x[:, t0:t1], positions=positions, src_mask=src_mask, cross_attention_src=source,
                                  cross_attention_mask=cross))
    return torch.cat(outs, dim=1), calls[0]


@pytest.mark.parametrize("kind", ["native", "int8"])
def test_padded_conditions_run_on_the_native_step(kind):
    """Rows whose conditions are padded at the end attend to their own first source steps, natively."""
    plain, fused = _pair(kind)
    torch.manual_seed(1)
    B, S = 3, 5
    x, source = torch.randn(B, 9, E), torch.randn(B, S, E)
    cross = (torch.arange(S) < torch.tensor([5, 2, 1])[:, None]).view(B, 1, 1, S)
    expected, none = _masked_stream(plain, x, source, cross)
    got, native = _masked_stream(fused, x, source, cross)
    assert none == 0 and native == 9 - 3
    tol = {"native": 1e-5, "int8": 2e-3}[kind]
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    unmasked, _ = _masked_stream(fused, x, source, torch.ones(B, 1, 1, S, dtype=torch.bool))
    assert not torch.allclose(unmasked[1:], got[1:], atol=1e-3)  # the mask matters for the padded rows
    torch.testing.assert_close(unmasked[:1], got[:1], rtol=tol, atol=tol)


def test_masks_it_does_not_cover_run_the_plain_forward():
    plain, fused = _pair("native")
    torch.manual_seed(1)
    B, S = 2, 5
    x, source = torch.randn(B, 7, E), torch.randn(B, S, E)
    holes = torch.tensor([[True, False, True, True, True], [True, True, True, True, True]]).view(B, 1, 1, S)
    expected, _ = _masked_stream(plain, x, source, holes)
    got, native = _masked_stream(fused, x, source, holes)
    assert native == 0  # a key missing inside a row: the plain forward
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_per_item_seeds_with_padded_texts_decode_natively():
    """LMModel.generate with per-item generators masks the padding of the texts; on a prepared LM every step after
    the first still runs as one native call, and an item is still independent of its neighbours."""
    from audiocraft.backends import prepare
    from audiocraft.models.builders import get_debug_condition_fuser, get_debug_conditioner_provider
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
    from audiocraft.modules.conditioners import ConditioningAttributes

    torch.manual_seed(0)
    lm = LMModel(DelayedPatternProvider(n_q=4), get_debug_conditioner_provider(E), get_debug_condition_fuser(),
                 n_q=4, card=50, dim=E, num_heads=4, num_layers=2, custom=True, cross_attention=True, causal=True,
                 norm_first=True)
    lm = prepare(lm.eval())
    assert decoding._stack_plan(lm.transformer) is not None

    def first_item(texts: tp.List[str], seeds: tp.List[int]) -> torch.Tensor:
        attrs = [ConditioningAttributes(text={"description": t}) for t in texts]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        with _native_steps() as calls:
            out = lm.generate(None, attrs, max_gen_len=10, top_k=20, generator=generators,
                              mask_condition_padding=True)
        assert calls[0] == 10 + 3 - 1  # the delay pattern's 13 steps, all but the first
        return out[0]

    alone = first_item(["rock"], [7])
    assert torch.equal(alone, first_item(["rock", "drums and bass heavy synth"], [7, 8]))
