"""MAGNeT end to end against the official goldens (tiny reference checkpoints, offline), and its codec."""
import pytest
import torch

from audiocraft.backends.cpu import kernels as native_kernels
from audiocraft.models import MAGNeT, CompressionModel, MusicGen, get_pretrained
from audiocraft.models.encodec import HFEncodecCompressionModel
from audiocraft.models.pretrained import facade_for
from audiocraft.utils.cancel import CancelToken
from tests.conftest import load_golden

MAGNET = "facebook/magnet-small-10secs"
ATOL = 1e-4


@pytest.fixture(scope="module")
def magnet():
    return MAGNeT.get_pretrained(MAGNET, device="cpu")


def _check_audio(g, audio, tokens):
    assert audio.shape == (tokens.shape[0], 1, tokens.shape[-1] * 640)
    assert (audio.double().pow(2).mean(dim=(1, 2)).sqrt() - g["audio_rms_per_item"]).abs().max() < ATOL
    n = audio.shape[-1]
    assert (audio.double().sum(dim=(1, 2)) / n - g["audio_sum_per_item"] / n).abs().max() < ATOL


# ---------------------------------------------------------------------------------------------- codec
def test_hf_encodec_matches_golden():
    g = load_golden("magnet_hf_encodec")
    cm = CompressionModel.get_pretrained("facebook/encodec_32khz", device="cpu")
    assert isinstance(cm, HFEncodecCompressionModel) and not cm.training
    for key in ("sample_rate", "frame_rate", "num_codebooks", "cardinality", "channels"):
        assert getattr(cm, key) == g["meta"][key], key
    assert type(cm.frame_rate) is float  # Audiocraft's sample_rate / hop (transformers' own rounds to an int)
    with torch.no_grad():
        codes, scale = cm.encode(g["wav"])
        assert torch.equal(codes, g["codes"]) and scale is None
        assert (cm.decode(g["codes"], None) - g["decoded"]).abs().max() < ATOL
        assert (cm.decode_latent(g["codes"]) - g["latent"]).abs().max() < ATOL


# ---------------------------------------------------------------------------------------------- generation goldens
def test_attributes(magnet):
    g = load_golden("magnet_generate_sampling")
    for key in ("sample_rate", "frame_rate", "max_duration", "duration"):
        assert getattr(magnet, key) == g["meta"][key], key
    assert isinstance(magnet.compression_model, HFEncodecCompressionModel)
    assert magnet.generation_params == {"use_sampling": True, "temp": 3.0, "top_k": 0, "top_p": 0.9,
                                        "max_cfg_coef": 10.0, "min_cfg_coef": 1.0,
                                        "decoding_steps": [20, 10, 10, 10], "span_arrangement": "nonoverlap"}


@pytest.mark.parametrize("name", ["magnet_generate_sampling", "magnet_generate_stride1", "magnet_generate_greedy"])
def test_generate_matches_golden(magnet, name):
    g = load_golden(name)
    magnet.set_generation_params(**g["meta"]["set_generation_params"])
    seed = g["meta"]["torch.manual_seed_right_before_call"]
    if seed is not None:
        torch.manual_seed(seed)
    calls = []
    magnet.set_custom_progress_callback(lambda i, n: calls.append((i, n)))
    try:
        audio, tokens = magnet.generate(g["meta"]["texts"], return_tokens=True)
    finally:
        magnet.set_custom_progress_callback(None)
    assert torch.equal(tokens, g["tokens"])
    _check_audio(g, audio, tokens)
    assert calls == [(i, 50) for i in range(1, 51)]


def _continue(model, g):
    model.set_generation_params(**g["meta"]["set_generation_params"])
    torch.manual_seed(g["meta"]["torch.manual_seed_right_before_call"])
    return model.generate_continuation(g["prompt_wav"], g["meta"]["prompt_sr"], g["meta"]["descriptions"],
                                       return_tokens=True)


@pytest.mark.skipif(not native_kernels.available(), reason="native CPU kernels not built")
def test_generate_continuation(magnet):
    """Token-exact continuation; the prompt is encoded exactly and kept. This golden holds a near-tie: at one top-p
    draw two tokens' probabilities differ by ~1e-6 relative, so the draw follows float round-off. With 16-lane
    vectors (AVX-512, as the golden's machine) the packed kernels reproduce it exactly. With 8-lane vectors (AVX2)
    every summation order (ours, and PyTorch's own GEMM) lands on the other side of the tie; there the tokens must
    equal those of PyTorch's GEMM path token for token."""
    g = load_golden("magnet_generate_continuation")
    audio, tokens = _continue(magnet, g)
    P = g["prompt_tokens"].shape[-1]
    assert torch.equal(tokens[..., :P], g["prompt_tokens"])
    assert (magnet.generate_audio(tokens) - audio).abs().max() == 0
    vector_width = native_kernels.layout(torch.float32)[1]
    if vector_width >= 16:
        assert torch.equal(tokens, g["tokens"])
        _check_audio(g, audio, tokens)
    elif not torch.equal(tokens, g["tokens"]):
        unpacked = MAGNeT.get_pretrained(MAGNET, device="cpu", pack=False)
        assert torch.equal(tokens, _continue(unpacked, g)[1])


def test_generate_continuation_unpacked():
    """pack=False (PyTorch's GEMM): the same decoding; at the golden's near-tie MKL's round-off may fall on the
    other side, so the prompt, shapes and the audio of the tokens are checked."""
    g = load_golden("magnet_generate_continuation")
    model = MAGNeT.get_pretrained(MAGNET, device="cpu", pack=False)
    assert model.lm.transformer.layers[0].self_attn.__class__.__name__ == "StreamingMultiheadAttention"
    audio, tokens = _continue(model, g)
    P = g["prompt_tokens"].shape[-1]
    assert torch.equal(tokens[..., :P], g["prompt_tokens"]) and tokens.shape == g["tokens"].shape
    assert bool((tokens >= 0).all() and (tokens < 2048).all())
    assert (model.generate_audio(tokens) - audio).abs().max() == 0


# ---------------------------------------------------------------------------------------------- beyond the goldens
def test_unconditional_seeds_and_cancel(magnet):
    magnet.set_generation_params(decoding_steps=[2, 1, 1, 1])
    audio, tokens = magnet.generate_unconditional(2, return_tokens=True, seed=7)
    assert tokens.shape == (2, 4, 48) and audio.shape == (2, 1, 48 * 640)
    again = magnet.generate([None], return_tokens=True, seed=[8])[1]  # item 1 alone, same seed
    assert torch.equal(again, tokens[1:])
    token = CancelToken()
    token.cancel()
    audio, tokens = magnet.generate(["x"], return_tokens=True, cancel=token)
    assert tokens.shape == (1, 4, 0) and audio.shape == (1, 1, 0)
    magnet.set_generation_params()


def test_not_supported(magnet):
    with pytest.raises(NotImplementedError, match="streaming output"):
        magnet.generate_stream(["x"])
    with pytest.raises(NotImplementedError, match="long-form generation"):
        magnet.generate_long([(0.0, "x")])
    with pytest.raises(ValueError, match=r"prompt \(1.00 s, 50 frames\) must be shorter than the segment"):
        magnet.generate_continuation(torch.zeros(1, 32000), 32000)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"decoding_steps": [20, 10, 10]}, ValueError, r"one entry per codebook \(4\), got 3"),
    ({"decoding_steps": [20, 10, 10, 1.5]}, ValueError, r"decoding_steps\[3\] must be a positive int, got 1.5"),
    ({"span_arrangement": "overlap"}, ValueError, "span_arrangement must be one of"),
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"max_cfg_coef": float("nan")}, ValueError, "max_cfg_coef"),
    ({"min_cfg_coef": 1e9}, ValueError, "min_cfg_coef"),
    ({"top_p": 1.5}, ValueError, "top_p"),
    ({"top_k": -1}, ValueError, "top_k"),
    ({"use_sampling": 1}, TypeError, "use_sampling must be a bool"),
])
def test_set_generation_params_errors(magnet, kwargs, error, message):
    with pytest.raises(error, match=message):
        magnet.set_generation_params(**kwargs)


def test_facade_dispatch():
    assert facade_for(MAGNET) is MAGNeT
    assert facade_for("facebook/musicgen-small") is MusicGen
    assert facade_for("debug") is MusicGen
    with pytest.raises(FileNotFoundError, match="no/such-repo"):
        facade_for("no/such-repo")
    assert isinstance(get_pretrained(MAGNET, device="cpu"), MAGNeT)
    with pytest.raises(TypeError, match="lm must be a MagnetLMModel"):
        MAGNeT("x", CompressionModel.get_pretrained("debug_compression_model"),
               MusicGen.get_pretrained("debug", device="cpu").lm, max_duration=1.0)
