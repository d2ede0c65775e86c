import json
from pathlib import Path

import pytest
import torch

from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder, SEANetResnetBlock

GOLDEN_DIR = Path(__file__).parents[1] / "reference" / "golden"

# the `seanet` section of the MusicGen 32 kHz EnCodec checkpoint (tiny sizes: n_filters 4, dimension 32)
MUSICGEN_SEANET = dict(dimension=32, channels=1, causal=False, n_filters=4, n_residual_layers=1, ratios=[8, 5, 4, 4],
                       activation="ELU", activation_params={"alpha": 1.0}, norm="weight_norm", norm_params={},
                       kernel_size=7, residual_kernel_size=3, last_kernel_size=7, dilation_base=2,
                       pad_mode="constant", true_skip=True, compress=2, lstm=2, disable_norm_outer_blocks=0)


def _stream_decode(decoder, z, chunk):
    with torch.no_grad(), decoder.streaming():
        outs = [decoder(z[..., i:i + chunk]) for i in range(0, z.shape[-1], chunk)]
        emitted = sum(o.shape[-1] for o in outs)
        rest = decoder.flush()
    return torch.cat(outs + ([rest] if rest is not None else []), dim=-1), emitted


def test_keys_and_shapes_match_checkpoint():
    shapes = json.loads((GOLDEN_DIR / "state_dict_shapes.json").read_text())["musicgen-small.compression"]
    enc, dec = SEANetEncoder(**MUSICGEN_SEANET), SEANetDecoder(**MUSICGEN_SEANET, trim_right_ratio=1.0)
    ours = [(f"encoder.{k}", list(v.shape)) for k, v in enc.state_dict().items()]
    ours += [(f"decoder.{k}", list(v.shape)) for k, v in dec.state_dict().items()]
    assert ours == [(k, s) for k, s, _ in shapes if not k.startswith("quantizer.")]
    assert enc.hop_length == dec.hop_length == 640 and enc.ratios == [4, 4, 5, 8] and dec.ratios == [8, 5, 4, 4]


def test_encoder_decoder_lengths():
    enc, dec = SEANetEncoder(**MUSICGEN_SEANET), SEANetDecoder(**MUSICGEN_SEANET)
    with torch.no_grad():
        for length in [1, 640, 641, 3000]:
            z = enc(torch.randn(2, 1, length))
            assert z.shape == (2, 32, -(-length // 640))
            assert dec(z).shape == (2, 1, z.shape[-1] * 640)


def test_non_causal_decoder_streams_exactly_with_documented_delay():
    torch.manual_seed(0)
    dec = SEANetDecoder(**MUSICGEN_SEANET).eval()
    # sum over layers of (lookahead or left trim) x upsampling after them: 3*640 + 4*80 + 1*80 + 3*16 + ...
    assert dec.streaming_delay == 2402
    z = torch.randn(2, 32, 12)
    with torch.no_grad():
        full = dec(z)
    for chunk in [1, 5, 12]:
        streamed, emitted = _stream_decode(dec, z, chunk)
        torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)
        assert emitted == 12 * 640 - 2402


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_causal_decoder_streams_without_delay(pad_mode):
    torch.manual_seed(0)
    kwargs = {**MUSICGEN_SEANET, "causal": True, "pad_mode": pad_mode, "ratios": [4, 2], "n_residual_layers": 2}
    dec = SEANetDecoder(**kwargs).eval()
    assert dec.streaming_delay == 0
    z = torch.randn(1, 32, 20)
    with torch.no_grad():
        full = dec(z)
    streamed, emitted = _stream_decode(dec, z, 1)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)
    if pad_mode == "constant":
        assert emitted == 20 * 8  # everything returned right away


def test_encoder_streaming_equals_one_shot():
    torch.manual_seed(0)
    enc = SEANetEncoder(**{**MUSICGEN_SEANET, "ratios": [4, 2]}).eval()
    x = torch.randn(1, 1, 203)
    with torch.no_grad():
        full = enc(x)
        with enc.streaming():
            parts = [enc(x[..., i:i + 17]) for i in range(0, 203, 17)]
            parts.append(enc.flush())
    torch.testing.assert_close(torch.cat(parts, dim=-1), full, atol=1e-5, rtol=1e-5)


def test_resnet_block_conv_shortcut_and_streaming():
    torch.manual_seed(0)
    block = SEANetResnetBlock(4, kernel_sizes=[3, 1], dilations=[2, 1], true_skip=False, pad_mode="constant")
    assert "shortcut.conv.conv.weight" in block.state_dict()
    x = torch.randn(1, 4, 15)
    with torch.no_grad():
        full = block(x)
        torch.testing.assert_close(full, block.shortcut(x) + block.block(x))
        with block.streaming():
            parts = [block(x[..., :4]), block(x[..., 4:]), block.flush()]
    torch.testing.assert_close(torch.cat(parts, dim=-1), full, atol=1e-6, rtol=1e-5)


def test_options_and_errors():
    dec = SEANetDecoder(n_filters=2, dimension=8, ratios=[2], final_activation="Tanh", lstm=0,
                        disable_norm_outer_blocks=3, norm="weight_norm")
    assert isinstance(dec.model[-1], torch.nn.Tanh)
    assert not any(k.endswith("weight_g") for k in dec.state_dict())  # norm disabled in all 3 blocks
    with pytest.raises(ValueError, match="disable_norm_outer_blocks=4"):
        SEANetEncoder(ratios=[2], disable_norm_outer_blocks=4)
    with pytest.raises(ValueError, match="activation='Nope'"):
        SEANetEncoder(ratios=[2], activation="Nope")
    with pytest.raises(ValueError, match="final_activation='Nope'"):
        SEANetDecoder(ratios=[2], final_activation="Nope")
