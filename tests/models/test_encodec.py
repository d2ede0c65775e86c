import subprocess
import sys

import numpy as np
from omegaconf import OmegaConf
import pytest
import torch

from audiocraft.models.encodec import CompressionModel, EncodecModel, HFEncodecCompressionModel
from audiocraft.models.builders import get_compression_model, get_debug_compression_model
from audiocraft.models.loaders import load_compression_model, load_compression_model_ckpt
from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder
from audiocraft.quantization import QuantizedResult, ResidualVectorQuantizer

TOL = 1e-4


@pytest.fixture(scope="module")
def small():
    return load_compression_model("facebook/musicgen-small")


def _max_err(a, b):
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------------- goldens
def test_attributes(small):
    assert small.sample_rate == 32000 and small.channels == 1
    assert small.frame_rate == 50 and type(small.frame_rate) is int
    assert small.cardinality == 2048 and small.num_codebooks == small.total_codebooks == 4
    assert small.streaming_delay == 2402 and not small.training and not small.causal and not small.renormalize


def test_encode_decode_golden(small, golden):
    g = golden("compression")
    with torch.no_grad():
        codes, scale = small.encode(g["wav"])
        assert scale is None and codes.dtype == torch.int64
        assert torch.equal(codes, g["codes"])
        assert _max_err(small.encoder(g["wav"]), g["encoder_out"]) < TOL
        assert _max_err(small.decode_latent(g["codes"]), g["quantized_latent"]) < TOL
        decoded = small.decode(g["codes"])
    assert decoded.shape == g["decoded"].shape
    assert _max_err(decoded, g["decoded"]) < TOL


def test_batched_encode_and_decode_goldens(small, golden):
    cont, greedy = golden("generate_continuation"), golden("generate_greedy")
    with torch.no_grad():
        codes, _ = small.encode(cont["prompt_wav_32k"])
        assert torch.equal(codes, cont["prompt_tokens"])
        audio = small.decode(greedy["tokens"])
    assert audio.shape == greedy["audio"].shape
    assert _max_err(audio, greedy["audio"]) < TOL


def test_fewer_codebooks(golden):
    model = load_compression_model("facebook/musicgen-small")
    g = golden("compression")
    model.set_num_codebooks(2)
    assert model.num_codebooks == 2 and model.total_codebooks == 4
    with torch.no_grad():
        codes, _ = model.encode(g["wav"])
        assert torch.equal(codes, g["codes"][:, :2])  # residual quantization: a prefix of the full codes
        assert model.decode(codes).shape == (1, 1, 48000)
    with pytest.raises(ValueError, match="got 5"):
        model.set_num_codebooks(5)


# ---------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("chunk", [1, 4, 75])
def test_non_causal_streaming_decode_is_exact_with_delay(small, golden, chunk):
    codes = golden("compression")["codes"]
    with torch.no_grad():
        full = small.decode(codes)
        with small.streaming():
            parts = [small.decode(codes[..., i:i + chunk]) for i in range(0, 75, chunk)]
            emitted = sum(p.shape[-1] for p in parts)
            tail = small.flush_decoder()
    assert emitted == 75 * 640 - small.streaming_delay
    assert tail.shape == (1, 1, small.streaming_delay)
    assert _max_err(torch.cat(parts + [tail], dim=-1), full) < 1e-5


def test_streaming_decode_prefix_is_final(small, golden):
    """What streaming returns after F frames is already the final audio: equal to decoding more frames."""
    codes = golden("compression")["codes"]
    with torch.no_grad():
        full = small.decode(codes)
        with small.streaming():
            first = small.decode(codes[..., :10])
            assert small.decode(codes[..., 10:10]).shape == (1, 1, 0)  # no new frame, no new sample
    assert first.shape[-1] == 10 * 640 - 2402
    assert _max_err(first, full[..., :first.shape[-1]]) < 1e-5


def _causal_model(pad_mode):
    torch.manual_seed(0)
    kwargs = dict(n_filters=4, n_residual_layers=1, dimension=16, ratios=[4, 2], causal=True, lstm=1,
                  norm="weight_norm", pad_mode=pad_mode)
    quantizer = ResidualVectorQuantizer(dimension=16, n_q=3, bins=32, kmeans_iters=3)
    quantizer(torch.randn(4, 16, 64), 1)
    model = EncodecModel(SEANetEncoder(**kwargs), SEANetDecoder(**kwargs), quantizer, frame_rate=1000,
                         sample_rate=8000, channels=1, causal=True)
    return model.eval()


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_causal_streaming_decode_equals_full(pad_mode):
    model = _causal_model(pad_mode)
    assert model.streaming_delay == 0
    codes = torch.randint(0, 32, (2, 3, 30))
    with torch.no_grad():
        full = model.decode(codes)
        for sizes in ([1], [2, 5, 3]):
            parts, pos, i = [], 0, 0
            with model.streaming():
                while pos < 30:
                    n = sizes[i % len(sizes)]
                    parts.append(model.decode(codes[..., pos:pos + n]))
                    if pad_mode == "constant":
                        assert parts[-1].shape[-1] == codes[..., pos:pos + n].shape[-1] * 8  # no delay at all
                    pos, i = pos + n, i + 1
                tail = model.flush_decoder()
            if pad_mode == "constant":
                assert tail.shape[-1] == 0
            assert _max_err(torch.cat(parts + [tail], dim=-1), full) < 1e-5


def test_causal_streaming_encode_equals_full():
    model = _causal_model("constant")
    x = torch.randn(1, 1, 237)
    with torch.no_grad():
        full, _ = model.encode(x)
        with model.streaming():
            parts = [model.encode(x[..., i:i + 40])[0] for i in range(0, 237, 40)]
            parts.append(model.flush_encoder())
    assert torch.equal(torch.cat(parts, dim=-1), full)


def test_flush_without_input_and_misuse():
    model = _causal_model("constant")
    with model.streaming():
        assert model.flush_decoder() is None
        with pytest.raises(NotImplementedError, match="flush_decoder"):
            model.flush()


# ---------------------------------------------------------------------------------------------- input validation
def test_encode_rejects_bad_inputs(small):
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        small.encode(np.zeros((1, 1, 100), dtype=np.float32))
    with pytest.raises(ValueError, match=r"x must be a 3D tensor \[B, C, T\], got shape \[1, 100\]"):
        small.encode(torch.zeros(1, 100))
    with pytest.raises(ValueError, match=r"x has 2 channel\(s\).*expects 1"):
        small.encode(torch.zeros(1, 2, 100))
    with pytest.raises(TypeError, match="x must be a floating point tensor, got dtype torch.int64"):
        small.encode(torch.zeros(1, 1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one sample"):
        small.encode(torch.zeros(1, 1, 0))


def test_decode_rejects_bad_codes(small):
    good = torch.zeros(1, 4, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="codes must be an integer tensor.*torch.float32"):
        small.decode(good.float())
    with pytest.raises(TypeError, match="codes must be a torch.Tensor"):
        small.decode([[0, 1]])
    with pytest.raises(ValueError, match=r"codes must be a 3D tensor \[B, K, T\], got shape \[4, 3\]"):
        small.decode(good[0])
    with pytest.raises(ValueError, match=r"K=5 codebooks.*allowed: 1 to 4"):
        small.decode(torch.zeros(1, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"values must be in \[0, 2047\].*got values in \[0, 2048\]"):
        small.decode(good + torch.tensor([0, 0, 2048])[None, None])
    with pytest.raises(ValueError, match=r"got values in \[-1, 0\]"):
        small.decode_latent(good - torch.tensor([0, 1, 0])[None, None])
    with pytest.raises(ValueError, match="at least one frame"):
        small.decode(good[..., :0])
    with pytest.raises(ValueError, match="scale must be None"):
        small.decode(good, torch.ones(1, 1))
    assert small.decode(good.int()).shape == (1, 1, 3 * 640)  # any integer dtype is accepted


# ---------------------------------------------------------------------------------------------- other behaviour
def test_renormalize_scale_round_trip():
    torch.manual_seed(0)
    kwargs = dict(n_filters=2, n_residual_layers=1, dimension=8, ratios=[2, 2])
    quantizer = ResidualVectorQuantizer(dimension=8, n_q=2, bins=16, kmeans_iters=2)
    quantizer(torch.randn(2, 8, 32), 1)
    model = EncodecModel(SEANetEncoder(**kwargs), SEANetDecoder(**kwargs), quantizer, frame_rate=100,
                         sample_rate=400, channels=1, renormalize=True).eval()
    x = torch.randn(2, 1, 40) * torch.tensor([0.1, 3.0])[:, None, None]
    with torch.no_grad():
        codes, scale = model.encode(x)
        assert scale.shape == (2, 1)
        torch.testing.assert_close(scale[:, 0], x.pow(2).mean(dim=(1, 2)).sqrt() + 1e-8)
        torch.testing.assert_close(model.decode(codes, scale), model.decode(codes) * scale[:, :, None])
        with model.streaming(), pytest.raises(ValueError, match="renormalize"):
            model.encode(x)
    with pytest.raises(ValueError, match="renormalize=True is not supported for a causal model"):
        EncodecModel(model.encoder, model.decoder, quantizer, 100, 400, 1, causal=True, renormalize=True)


def test_training_forward():
    model = get_debug_compression_model().train()
    x = torch.randn(2, 1, 3000)  # not a multiple of the hop length (1280)
    res = model(x)
    assert isinstance(res, QuantizedResult)
    assert res.x.shape == x.shape and res.codes.shape == (2, 4, 3)
    res.x.sum().backward()
    assert model.encoder.model[0].conv.conv.weight.grad is not None


def test_debug_model_and_get_pretrained(tmp_path, hf_cache_dir):
    debug = CompressionModel.get_pretrained("debug_compression_model")
    assert isinstance(debug, EncodecModel) and not debug.training
    assert (debug.frame_rate, debug.cardinality, debug.num_codebooks) == (25, 400, 4)
    assert get_debug_compression_model(sample_rate=16000).encoder.hop_length == 640
    with pytest.raises(ValueError, match="sample_rate=44100"):
        get_debug_compression_model(sample_rate=44100)
    with pytest.raises(NotImplementedError, match="DAC"):
        CompressionModel.get_pretrained("dac_44khz")
    local = next((hf_cache_dir / "models--facebook--musicgen-small" / "snapshots").iterdir())
    model = CompressionModel.get_pretrained(str(local / "compression_state_dict.bin"))
    assert isinstance(model, EncodecModel) and model.cardinality == 2048


# ---------------------------------------------------------------------------------------------- builder
def _checkpoint_cfg():
    return OmegaConf.create(load_compression_model_ckpt("facebook/musicgen-small")["xp.cfg"])


def test_builder_resolves_only_what_it_needs(monkeypatch):
    monkeypatch.delenv("USER", raising=False)  # dora.dir: /checkpoint/${oc.env:USER}/... must stay unresolved
    cfg = _checkpoint_cfg()
    cfg.device = "cpu"
    model = get_compression_model(cfg)
    assert isinstance(model, EncodecModel) and model.frame_rate == 50 and model.sample_rate == 32000
    assert model.decoder.ratios == [8, 5, 4, 4] and model.quantizer.kmeans_iters == 50


@pytest.mark.parametrize("key,value,message", [
    ("compression_model", "dac", "compression_model='dac' is not supported"),
    ("encodec.quantizer", "fsq", "encodec.quantizer='fsq' is not supported"),
    ("encodec.autoencoder", "dac", "encodec.autoencoder='dac' is not supported"),
    ("seanet.bogus", 1, r"unknown option\(s\) \['bogus'\] in config section 'seanet"),
    ("rvq.bogus", 1, r"unknown option\(s\) \['bogus'\] in config section 'rvq'"),
])
def test_builder_rejects_unknown_names(key, value, message):
    cfg = _checkpoint_cfg()
    cfg.device = "cpu"
    OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ValueError, match=message):
        get_compression_model(cfg)


# ---------------------------------------------------------------------------------------------- transformers
def test_import_stays_light():
    code = ("import sys, audiocraft.models.encodec, audiocraft.models.loaders; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def _tiny_hf_model():
    from transformers import EncodecConfig, EncodecModel as HFModel
    torch.manual_seed(0)
    config = EncodecConfig(sampling_rate=8000, upsampling_ratios=[2, 2], hidden_size=8, num_filters=2,
                           num_lstm_layers=1, codebook_size=1024, target_bandwidths=[20.0, 40.0],
                           use_causal_conv=False, pad_mode="constant", normalize=False)
    return HFModel(config).eval()


def test_hf_wrapper_matches_transformers():
    import transformers
    from audiocraft.models.encodec import HFEncodecModel  # lazy alias, as in Audiocraft
    assert HFEncodecModel is transformers.EncodecModel
    hf = _tiny_hf_model()
    model = HFEncodecCompressionModel(hf)
    assert model.possible_num_codebooks == [1, 2] and model.num_codebooks == model.total_codebooks == 2
    assert (model.sample_rate, model.frame_rate, model.channels, model.cardinality) == (8000, 2000, 1, 1024)
    x = torch.randn(2, 1, 80)
    with torch.no_grad():
        codes, scale = model.encode(x)
        assert codes.shape == (2, 2, 20) and scale is None
        assert torch.equal(codes, hf.encode(x, bandwidth=40.0).audio_codes[0])
        torch.testing.assert_close(model.decode(codes), hf.decode(codes[None], [None]).audio_values)
        assert model.decode_latent(codes).shape == (2, 8, 20)
        model.set_num_codebooks(1)
        assert model.encode(x)[0].shape == (2, 1, 20)
    with pytest.raises(ValueError, match=r"Allowed values for num codebooks: \[1, 2\]"):
        model.set_num_codebooks(3)
    with pytest.raises(NotImplementedError):
        model(x)


def test_get_pretrained_hub_id_uses_transformers(monkeypatch):
    import transformers
    seen = []

    def fake_from_pretrained(name, *args, **kwargs):
        seen.append(name)
        return _tiny_hf_model()
    monkeypatch.setattr(transformers.EncodecModel, "from_pretrained", staticmethod(fake_from_pretrained))
    model = CompressionModel.get_pretrained("facebook/encodec_32khz")
    assert seen == ["facebook/encodec_32khz"]
    assert isinstance(model, HFEncodecCompressionModel) and not model.training
