"""The prepared SEANet decoder (audiocraft/backends/cpu/codec.py) against the plain modules and the goldens."""
import copy
import pickle

import pytest
import torch

from audiocraft import backends
from audiocraft.backends.cpu.codec import DecoderPlan, FastSEANetDecoder, prepare_decoder
from audiocraft.models.loaders import load_compression_model
from audiocraft.modules.seanet import SEANetDecoder

TOL = 1e-5  # float round-off of a different order of the sums (seen: ~1e-7)

# the `seanet` section of the MusicGen 32 kHz EnCodec checkpoint (tiny sizes: n_filters 4, dimension 32)
MUSICGEN_SEANET = dict(dimension=32, channels=1, causal=False, n_filters=4, n_residual_layers=1, ratios=[8, 5, 4, 4],
                       activation="ELU", activation_params={"alpha": 1.0}, norm="weight_norm", norm_params={},
                       kernel_size=7, residual_kernel_size=3, last_kernel_size=7, dilation_base=2,
                       pad_mode="constant", true_skip=True, compress=2, lstm=2, disable_norm_outer_blocks=0)
VARIANTS = {
    "musicgen": {},
    "causal": dict(causal=True, trim_right_ratio=0.5, ratios=[4, 3]),
    "conv_shortcut_dilated": dict(true_skip=False, n_residual_layers=2, ratios=[5, 2], compress=1),
    "stereo_tanh_no_norm": dict(channels=2, final_activation="Tanh", norm="none", lstm=0, ratios=[3, 2]),
    "relu_kernel_5": dict(activation="ReLU", activation_params={}, residual_kernel_size=5, kernel_size=5,
                          last_kernel_size=3, ratios=[4, 4], lstm=1, disable_norm_outer_blocks=2),
    "odd_kernel": dict(ratios=[2, 3], n_filters=6),
}


@pytest.fixture(scope="module")
def small():
    return load_compression_model("facebook/musicgen-small")


@pytest.fixture(scope="module")
def fast_small(small):
    model = copy.deepcopy(small)
    assert backends.prepare_codec(model)
    return model


def _decoder(variant: str, seed: int = 0) -> SEANetDecoder:
    torch.manual_seed(seed)
    decoder = SEANetDecoder(**{**MUSICGEN_SEANET, **VARIANTS[variant]}).eval()
    with torch.no_grad():  # random biases and gains, so that every term of the maths is exercised
        for name, p in decoder.named_parameters():
            if name.endswith(("bias", "weight_g")):
                p.add_(torch.randn_like(p) * 0.1)
    return decoder


def _stream(model, z, chunk, flush):
    outs = []
    with torch.no_grad(), model.streaming():
        for i in range(0, z.shape[-1], chunk):
            outs.append(model(z[..., i:i + chunk]))
        tail = getattr(model, flush)()
    return outs, tail


def test_prepared_musicgen_codec_matches_goldens(fast_small, golden):
    assert type(fast_small.decoder) is FastSEANetDecoder
    g, greedy = golden("compression"), golden("generate_greedy")
    with torch.no_grad():
        decoded = fast_small.decode(g["codes"])
        batch = fast_small.decode(greedy["tokens"])
    assert decoded.shape == g["decoded"].shape and (decoded - g["decoded"]).abs().max() < 1e-4
    assert batch.shape == greedy["audio"].shape and (batch - greedy["audio"]).abs().max() < 1e-4


@pytest.mark.parametrize("frames,batch", [(1, 1), (2, 3), (7, 1), (37, 2)])
def test_prepared_musicgen_codec_equals_plain(small, fast_small, frames, batch):
    codes = torch.randint(0, 2048, (batch, 4, frames), generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        plain, fast = small.decode(codes), fast_small.decode(codes)
    assert fast.shape == plain.shape == (batch, 1, frames * 640)
    assert (fast - plain).abs().max() <= TOL


@pytest.mark.parametrize("chunk", [1, 3, 12, 40])
def test_prepared_musicgen_codec_streams_like_plain(small, fast_small, chunk):
    """Each streamed call returns the samples the plain streaming decoder returns; together the one-shot audio."""
    codes = torch.randint(0, 2048, (2, 4, 40), generator=torch.Generator().manual_seed(chunk))
    with torch.no_grad():
        full = small.decode(codes)
        plain_parts, plain_tail = [], None
        with small.streaming():
            plain_parts = [small.decode(codes[..., i:i + chunk]) for i in range(0, 40, chunk)]
            plain_tail = small.flush_decoder()
        with fast_small.streaming():
            parts = [fast_small.decode(codes[..., i:i + chunk]) for i in range(0, 40, chunk)]
            tail = fast_small.flush_decoder()
    assert [p.shape for p in parts] == [p.shape for p in plain_parts] and tail.shape == plain_tail.shape
    assert (torch.cat(parts + [tail], dim=-1) - full).abs().max() <= TOL
    with torch.no_grad(), fast_small.streaming():  # a stream without frames: nothing to flush
        assert fast_small.decode(codes[..., :0]).shape == (2, 1, 0)
        assert fast_small.flush_decoder() is None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_plan_equals_plain_decoder(variant):
    decoder = _decoder(variant)
    fast = copy.deepcopy(decoder)
    assert prepare_decoder(fast)
    z = torch.randn(2, 32, 9)
    with torch.no_grad():
        plain = decoder(z)
        assert (fast(z) - plain).abs().max() <= TOL
        for blocks in [(1, 1), (2, 3), (4, 1000)]:  # every way of cutting the work into blocks
            assert (DecoderPlan(decoder, *blocks).decode(z) - plain).abs().max() <= TOL
    for chunk in [1, 4]:
        plain_parts, plain_tail = _stream(decoder, z, chunk, "flush")
        parts, tail = _stream(fast, z, chunk, "flush")
        assert [p.shape for p in parts] == [p.shape for p in plain_parts]
        assert (tail is None) == (plain_tail is None)
        streamed = torch.cat(parts + ([] if tail is None else [tail]), dim=-1)
        assert (streamed - plain).abs().max() <= TOL


def test_streaming_state_round_trip():
    """get_streaming_state / set_streaming_state replay the rest of a stream exactly."""
    fast = _decoder("musicgen")
    prepare_decoder(fast)
    z = torch.randn(1, 32, 10)
    with torch.no_grad(), fast.streaming():
        fast(z[..., :4])
        saved = {k: v.clone() for k, v in fast.get_streaming_state().items()}
        assert saved and all(isinstance(v, torch.Tensor) for v in saved.values())
        first = torch.cat([fast(z[..., 4:]), fast.flush()], dim=-1)
        fast.set_streaming_state(saved)
        again = torch.cat([fast(z[..., 4:]), fast.flush()], dim=-1)
    assert torch.equal(first, again)


def test_training_and_gradients_use_the_plain_modules():
    decoder = _decoder("musicgen")
    fast = copy.deepcopy(decoder)
    prepare_decoder(fast)
    z = torch.randn(1, 32, 3, requires_grad=True)
    out = fast(z)  # gradients enabled, parameters require them: the plain modules, differentiable
    out.square().sum().backward()
    assert z.grad is not None and fast.model[0].conv.conv.weight_v.grad is not None
    assert (out - decoder(z)).abs().max() == 0
    fast.train()
    with torch.no_grad():
        assert fast.fast_plan(z.detach()) is None
    fast.eval()
    with torch.no_grad():
        assert fast.fast_plan(z.detach()) is not None


def test_plan_follows_parameter_changes():
    fast, other = _decoder("musicgen"), _decoder("musicgen", seed=1)
    prepare_decoder(fast)
    z = torch.randn(1, 32, 4)
    with torch.no_grad():
        before = fast(z)
        fast.load_state_dict(other.state_dict())
        after = fast(z)
        assert (after - other(z)).abs().max() <= TOL and (after - before).abs().max() > 1e-3


def test_prepared_decoder_keeps_keys_and_pickles():
    decoder = _decoder("musicgen")
    fast = copy.deepcopy(decoder)
    prepare_decoder(fast)
    assert list(fast.state_dict()) == list(decoder.state_dict())
    clone = pickle.loads(pickle.dumps(fast))
    z = torch.randn(1, 32, 2)
    with torch.no_grad():
        assert type(clone) is FastSEANetDecoder and torch.equal(clone(z), fast(z))


def test_unsupported_decoders_stay_plain():
    reflect = SEANetDecoder(**{**MUSICGEN_SEANET, "pad_mode": "reflect"})
    assert not prepare_decoder(reflect) and type(reflect) is SEANetDecoder
    group_norm = SEANetDecoder(**{**MUSICGEN_SEANET, "norm": "time_group_norm"})
    assert not prepare_decoder(group_norm)
    assert not prepare_decoder(torch.nn.Linear(2, 2))


def test_get_pretrained_prepares_the_codec():
    from audiocraft.models import MusicGen
    from audiocraft.models.encodec import CompressionModel
    model = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")
    assert type(model.compression_model.decoder) is FastSEANetDecoder
    # the debug codec pads by reflection, which the plan leaves to the plain modules
    assert type(CompressionModel.get_pretrained("debug_compression_model").decoder) is SEANetDecoder
