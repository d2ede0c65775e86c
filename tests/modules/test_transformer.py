import math

import pytest
import torch
from torch import nn

from audiocraft.modules.streaming import StreamingError
from audiocraft.modules.transformer import (KVCacheState, StreamingMultiheadAttention, StreamingTransformer,
                                            StreamingTransformerLayer, create_norm_fn, create_sin_embedding)


def _transformer(**kwargs):
    torch.manual_seed(0)
    args = dict(d_model=16, num_heads=4, num_layers=2, dim_feedforward=32, dropout=0.0, causal=True)
    args.update(kwargs)
    return StreamingTransformer(**args).eval()


def _stream(model, x, chunks, cross=None):
    outs, start = [], 0
    with model.streaming():
        for size in chunks:
            kwargs = {} if cross is None else {"cross_attention_src": cross}
            outs.append(model(x[:, start:start + size], **kwargs))
            start += size
    return torch.cat(outs, dim=1)


def test_sin_embedding_values():
    positions = torch.tensor([0, 1, 5]).view(1, 3, 1)
    out = create_sin_embedding(positions, 4, max_period=10000)
    p = torch.tensor([0.0, 1.0, 5.0])
    expected = torch.stack([p.cos(), (p / 10000).cos(), p.sin(), (p / 10000).sin()], dim=-1)[None]
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="even dim"):
        create_sin_embedding(positions, 3)


def test_create_norm_fn():
    norm = create_norm_fn("layer_norm", 8)
    assert isinstance(norm, nn.LayerNorm) and norm.eps == 1e-5
    assert isinstance(create_norm_fn("rms_norm", 8), nn.RMSNorm)
    with pytest.raises(ValueError, match="Unknown norm type 'batch_norm'"):
        create_norm_fn("batch_norm", 8)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_torch_multihead_attention(causal):
    torch.manual_seed(1)
    ours = StreamingMultiheadAttention(16, 4, bias=True, causal=causal)
    ref = nn.MultiheadAttention(16, 4, bias=True, batch_first=True)
    with torch.no_grad():
        nn.init.normal_(ours.in_proj_bias)
        ref.in_proj_weight.copy_(ours.in_proj_weight)
        ref.in_proj_bias.copy_(ours.in_proj_bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 7, 16)
    mask = torch.triu(torch.full((7, 7), float("-inf")), 1) if causal else None
    torch.testing.assert_close(ours(x, x, x)[0], ref(x, x, x, attn_mask=mask, need_weights=False)[0],
                               atol=1e-6, rtol=1e-5)


def test_cross_attention_equals_torch_multihead_attention():
    torch.manual_seed(2)
    ours = StreamingMultiheadAttention(16, 2, bias=False, cross_attention=True)
    ref = nn.MultiheadAttention(16, 2, bias=False, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj_weight)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
    x, src = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    torch.testing.assert_close(ours(x, src, src)[0], ref(x, src, src, need_weights=False)[0], atol=1e-6, rtol=1e-5)


CONFIGS = {
    "sin": dict(),
    "post_norm_cross": dict(cross_attention=True, norm_first=False),
    "pre_norm_cross_gelu": dict(cross_attention=True, norm_first=True, activation="gelu", bias_attn=False,
                                bias_ff=False),
    "rope": dict(positional_embedding="rope"),
    "sin_rope_xpos": dict(positional_embedding="sin_rope", xpos=True),
    "past_context": dict(past_context=3),
    "kv_repeat": dict(kv_repeat=2, positional_embedding="rope", custom=True),
    "qk_norm_layer_scale": dict(qk_layer_norm=True, qk_layer_norm_cross=True, cross_attention=True,
                                layer_scale=0.5, norm_first=True, custom=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 3, 1, 2]])
def test_streaming_equals_full_forward(name, chunks):
    model = _transformer(**CONFIGS[name])
    x = torch.randn(2, 12, 16)
    cross = torch.randn(2, 6, 16) if CONFIGS[name].get("cross_attention") else None
    kwargs = {} if cross is None else {"cross_attention_src": cross}
    with torch.no_grad():
        full = model(x, **kwargs)
        streamed = _stream(model, x, chunks, cross)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)


def test_cache_is_allocated_once_and_written_in_place():
    model = _transformer(cross_attention=True)
    x, cross = torch.randn(3, 10, 16), torch.randn(3, 4, 16)
    with torch.no_grad():
        full = model(x, cross_attention_src=cross)
        outs = []
        with model.streaming():
            model.allocate_kv_caches(batch_size=3, capacity=10)
            attn = model.layers[0].self_attn
            keys = attn._streaming_state.keys
            assert keys.shape == (3, 4, 10, 4)
            for t in range(10):
                outs.append(model(x[:, t:t + 1], cross_attention_src=cross))
                assert attn._streaming_state.keys is keys and attn._streaming_state.length == t + 1
            cross_state = model.layers[0].cross_attention._streaming_state
            assert cross_state.keys.shape == (3, 4, 4, 4)  # projected once, [B, H, S, D]
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_cache_grows_geometrically_beyond_capacity():
    model = _transformer()
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        full = model(x)
        outs = []
        with model.streaming():
            model.allocate_kv_caches(1, capacity=2)
            for t in range(9):
                outs.append(model(x[:, t:t + 1]))
            assert model.layers[1].self_attn._streaming_state.keys.shape[2] == 16  # 2 -> 4 -> 8 -> 16
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


def test_past_context_window_slides_in_place():
    model = _transformer(past_context=2, positional_embedding="rope")
    x = torch.randn(1, 20, 16)
    with torch.no_grad():
        full = model(x)
        outs = []
        with model.streaming():
            model.allocate_kv_caches(1, capacity=4)
            keys = model.layers[0].self_attn._streaming_state.keys
            for t in range(20):
                outs.append(model(x[:, t:t + 1]))
            state = model.layers[0].self_attn._streaming_state
            assert state.keys is keys and state.offset > 0 and state.length <= 4
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("past_context", [None, 2])
def test_causality_and_receptive_field_via_gradients(past_context):
    model = _transformer(num_layers=1, past_context=past_context)
    x = torch.randn(1, 8, 16, requires_grad=True)
    (model(x)[0, 5] * torch.randn(16)).sum().backward()  # (a plain sum of a LayerNorm output is constant)
    assert x.grad is not None
    touched = x.grad[0].abs().sum(-1) > 0
    first = 0 if past_context is None else 5 - past_context
    assert touched.tolist() == [first <= t <= 5 for t in range(8)]


def test_state_get_set_roundtrip_gives_identical_continuations():
    model = _transformer(cross_attention=True)
    x, cross = torch.randn(2, 6, 16), torch.randn(2, 3, 16)
    with torch.no_grad(), model.streaming():
        model(x[:, :3], cross_attention_src=cross)
        saved = {k: v.clone() for k, v in model.get_streaming_state().items()}  # a flat dict of tensors
        assert saved["layers.0.self_attn.length"].item() == 3 and saved["offset"].item() == 3
        a = model(x[:, 3:], cross_attention_src=cross)
        model.set_streaming_state(saved)
        assert isinstance(model.layers[0].self_attn._streaming_state.length, int)
        # the cache tensors were written in place by the first continuation, at positions >= 3 only
        b = model(x[:, 3:], cross_attention_src=cross)
    torch.testing.assert_close(a, b)


def test_state_is_typed_and_dropped_after_streaming():
    model = _transformer()
    with model.streaming():
        model(torch.randn(1, 2, 16))
        assert isinstance(model.layers[0].self_attn._streaming_state, KVCacheState)
    assert model.layers[0].self_attn._streaming_state is None and not model.is_streaming


def test_checkpointing_matches_plain_forward_and_gradients():
    plain = _transformer(checkpointing="none").train()
    ckpt = _transformer(checkpointing="torch").train()
    x = torch.randn(2, 5, 16)
    a, b = plain(x), ckpt(x)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    b.sum().backward()
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)


def test_gated_activation_halves_linear2_input():
    layer = StreamingTransformerLayer(16, 4, dim_feedforward=32, activation="swiglu", dropout=0.0)
    assert layer.linear1.out_features == 32 and layer.linear2.in_features == 16
    assert layer(torch.randn(1, 3, 16)).shape == (1, 3, 16)


def test_state_dict_names_and_legacy_mha_prefix():
    for custom, prefix in ((True, ""), (False, "mha.")):  # Audiocraft's two layouts
        layer = StreamingTransformerLayer(16, 4, dim_feedforward=32, bias_attn=False, bias_ff=False,
                                          cross_attention=True, norm_first=True, custom=custom)
        assert sorted(layer.state_dict()) == sorted([
            f"self_attn.{prefix}in_proj_weight", f"self_attn.{prefix}out_proj.weight", "linear1.weight",
            "linear2.weight", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
            f"cross_attention.{prefix}in_proj_weight", f"cross_attention.{prefix}out_proj.weight",
            "norm_cross.weight", "norm_cross.bias"])
        assert layer.self_attn.in_proj_weight.shape == (48, 16)
    # either spelling loads into either layout
    flat = StreamingMultiheadAttention(16, 4, bias=True, custom=True)
    mha = StreamingMultiheadAttention(16, 4, bias=True, custom=False)
    assert isinstance(mha.mha, nn.MultiheadAttention) and mha.in_proj_weight is mha.mha.in_proj_weight
    legacy = {"mha." + k: torch.randn_like(v) for k, v in flat.state_dict().items()}
    flat.load_state_dict(legacy)
    torch.testing.assert_close(flat.in_proj_weight, legacy["mha.in_proj_weight"])
    mha.load_state_dict(flat.state_dict())
    torch.testing.assert_close(mha.mha.out_proj.weight, flat.out_proj.weight)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(mha(x, x, x)[0], flat(x, x, x)[0])
    torch.testing.assert_close(mha(x, x, x)[0], mha.mha(x, x, x, need_weights=False)[0], atol=1e-6, rtol=1e-5)
    with pytest.raises(AssertionError, match="need custom=True"):  # refused as Audiocraft refuses it
        StreamingMultiheadAttention(16, 4, custom=False, qk_layer_norm=True)


def test_kv_repeat_projection_shape():
    attn = StreamingMultiheadAttention(16, 4, kv_repeat=2, causal=True, custom=True)
    assert attn.in_proj_weight.shape == (16 + 2 * 8, 16)
    x = torch.randn(1, 3, 16)
    assert attn(x, x, x)[0].shape == (1, 3, 16)


def test_errors():
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        StreamingMultiheadAttention(16, 3)
    with pytest.raises(ValueError, match="past_context=4 needs causal=True"):
        StreamingMultiheadAttention(16, 4, past_context=4)
    with pytest.raises(ValueError, match="cross_attention=True cannot be combined"):
        StreamingMultiheadAttention(16, 4, cross_attention=True, causal=True)
    with pytest.raises(ValueError, match="Unknown attention_backend 'flash'"):
        StreamingMultiheadAttention(16, 4, attention_backend="flash")
    with pytest.raises(ValueError, match="Unknown positional_embedding 'alibi'"):
        _transformer(positional_embedding="alibi")
    with pytest.raises(ValueError, match="Unknown checkpointing 'full'"):
        _transformer(checkpointing="full")
    model = _transformer(cross_attention=True)
    with pytest.raises(ValueError, match="cross_attention_src must be given exactly"):
        model(torch.randn(1, 2, 16))
    non_causal = _transformer(causal=False)
    with pytest.raises(StreamingError, match="causal self-attention"), non_causal.streaming():
        non_causal(torch.randn(1, 2, 16))
    attn = StreamingMultiheadAttention(16, 4, causal=True)
    x = torch.randn(1, 2, 16)
    with pytest.raises(ValueError, match="need_weights"):
        attn(x, x, x, need_weights=True)
    with pytest.raises(StreamingError, match="allocate_cache needs streaming mode"):
        attn.allocate_cache(1, 4)


def test_custom_attention_mask_is_combined_with_causal_mask():
    torch.manual_seed(3)
    attn = StreamingMultiheadAttention(8, 2, causal=True)
    x = torch.randn(1, 4, 8, requires_grad=True)
    keep = torch.tensor([[True, False, True, True]]).expand(4, 4)  # never attend to key 1
    out = attn(x, x, x, attn_mask=keep)[0]
    out[0, 3].sum().backward()
    touched = (x.grad[0].abs().sum(-1) > 0).tolist()
    assert touched == [True, False, True, True]
    assert math.isfinite(float(out.detach().sum()))
