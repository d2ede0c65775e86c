"""MusicGen end to end against the official goldens (tiny reference checkpoints, offline)."""
import warnings

import pytest
import torch

from audiocraft.models import MusicGen
from audiocraft.backends.cpu import kernels as native_kernels
from tests.conftest import load_golden

ATOL_AUDIO = 1e-4


@pytest.fixture(scope="module")
def small():
    return MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")


@pytest.fixture(scope="module")
def melody(fake_demucs_module):
    return MusicGen.get_pretrained("facebook/musicgen-melody", device="cpu")


def _params(g):
    return dict(g["meta"]["set_generation_params"])


def _check_audio_checksums(g, audio):
    torch.testing.assert_close(audio.pow(2).mean(dim=(1, 2)).sqrt(), g["audio_rms_per_item"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(audio.double().sum(dim=(1, 2)), g["audio_sum_per_item"], atol=1e-2, rtol=1e-4)


def test_attributes(small):
    g = load_golden("generate_greedy")
    assert small.frame_rate == g["meta"]["frame_rate"]
    assert small.sample_rate == g["meta"]["sample_rate"]
    assert small.max_duration == g["meta"]["max_duration"]
    assert small.audio_channels == 1
    assert small.duration == 15  # Audiocraft's default


def test_generate_greedy(small):
    g = load_golden("generate_greedy")
    small.set_generation_params(**_params(g))
    audio, tokens = small.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    assert audio.shape == g["audio"].shape
    assert (audio - g["audio"]).abs().max() < ATOL_AUDIO
    # generate_audio turns returned tokens into the same audio
    assert (small.generate_audio(tokens) - audio).abs().max() == 0


def test_generate_unconditional(small):
    g = load_golden("generate_unconditional")
    small.set_generation_params(**_params(g))
    audio, tokens = small.generate_unconditional(g["tokens"].shape[0], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    _check_audio_checksums(g, audio)


def test_generate_continuation(small):
    g = load_golden("generate_continuation")
    small.set_generation_params(**_params(g))
    audio, tokens = small.generate_continuation(g["prompt_wav"], g["meta"]["prompt_sr"], g["meta"]["descriptions"],
                                                return_tokens=True)
    assert torch.equal(tokens[..., :25], g["prompt_tokens"])
    assert torch.equal(tokens, g["tokens"])
    _check_audio_checksums(g, audio)


@pytest.mark.parametrize("name", ["generate_sampling_topk", "generate_sampling_topp"])
def test_generate_sampling_seeded(small, name):
    g = load_golden(name)
    small.set_generation_params(**_params(g))
    torch.manual_seed(g["meta"]["torch.manual_seed_right_before_call"])
    audio, tokens = small.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    _check_audio_checksums(g, audio)


def test_two_step_cfg(small):
    g = load_golden("generate_two_step_cfg")
    params = _params(g)
    # Official two-step CFG ignores cfg_coef and uses lm.cfg_coef (3.0); ours honours the argument.
    params["cfg_coef"] = g["meta"]["lm.cfg_coef"]
    small.set_generation_params(**params)
    _, tokens = small.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    params["cfg_coef"] = 5.0
    small.set_generation_params(**params)
    _, tokens5 = small.generate(g["meta"]["texts"], return_tokens=True)
    assert not torch.equal(tokens5, g["tokens"])
    # and two-step with 5.0 equals one-step with 5.0
    params["two_step_cfg"] = False
    small.set_generation_params(**params)
    _, tokens5_one = small.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens5, tokens5_one)


def test_generate_extend(small):
    g = load_golden("generate_extend")
    old = small.max_duration
    small.max_duration = g["meta"]["max_duration_override"]
    try:
        small.set_generation_params(**_params(g))
        calls = []
        small.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
        audio, tokens = small.generate(g["meta"]["texts"], return_tokens=True)
    finally:
        small.set_custom_progress_callback(None)
        small.max_duration = old
    assert torch.equal(tokens, g["tokens"])
    _check_audio_checksums(g, audio)
    # progress is exact across windows: one total, counting up by one to it
    totals = {t for _, t in calls}
    assert len(totals) == 1
    assert [d for d, _ in calls] == list(range(1, calls[-1][1] + 1))


def test_progress_callback_semantics(small):
    small.set_generation_params(use_sampling=False, duration=0.2)
    calls = []
    small.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    try:
        small.generate(["x"])
    finally:
        small.set_custom_progress_callback(None)
    n_steps = 10 + 3  # 10 frames + 3 steps of codebook delay
    assert calls == [(i, n_steps) for i in range(1, n_steps + 1)]


def test_generate_with_chroma(melody):
    g = load_golden("generate_with_chroma")
    c = load_golden("chroma")
    melody.set_generation_params(**_params(g))
    audio, tokens = melody.generate_with_chroma(g["meta"]["texts"], c["melody_wav"], g["meta"]["melody_sr"],
                                                return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    assert (audio - g["audio"]).abs().max() < ATOL_AUDIO


def test_melody_text_only(melody):
    g = load_golden("generate_melody_text_only")
    melody.set_generation_params(**_params(g))
    audio, tokens = melody.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    _check_audio_checksums(g, audio)


def test_short_names_deprecated(monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MusicGen.get_pretrained("small", device="cpu")
    assert model.name == "facebook/musicgen-small"
    assert any("deprecated" in str(w.message) for w in caught)


def test_debug_model():
    model = MusicGen.get_pretrained("debug", device="cpu")
    model.set_generation_params(duration=0.1)
    wav = model.generate(["a", None])
    frames = int(0.1 * model.frame_rate)
    assert wav.shape[:2] == (2, 1) and wav.shape[-1] == frames * model.sample_rate // model.frame_rate


# ---- bad input ---------------------------------------------------------------------------------
def test_bad_descriptions(small):
    with pytest.raises(TypeError, match="descriptions must be a list"):
        small.generate("just a string")
    with pytest.raises(TypeError, match=r"descriptions\[1\] must be a str or None"):
        small.generate(["ok", 3])
    with pytest.raises(ValueError, match="at least one item"):
        small.generate([])


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"duration": 0}, ValueError, "duration must be > 0"),
    ({"duration": -1.0}, ValueError, "duration must be > 0"),
    ({"temperature": 0}, ValueError, "temperature must be >= 0.001"),
    ({"top_k": -1}, ValueError, "top_k must be >= 0"),
    ({"top_k": 2.5}, TypeError, "top_k must be an integer"),
    ({"top_p": 1.5}, ValueError, "top_p must be <= 1"),
    ({"cfg_coef": float("nan")}, ValueError, "cfg_coef must be finite"),
    ({"use_sampling": "yes"}, TypeError, "use_sampling must be a bool"),
    ({"extend_stride": 40}, ValueError, "extend_stride must be < max_duration"),
])
def test_bad_generation_params(small, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        small.set_generation_params(**kwargs)


def test_bad_prompt_and_melody(small):
    small.set_generation_params(duration=0.2)
    with pytest.raises(ValueError, match="prompt must have shape"):
        small.generate_continuation(torch.zeros(8000), 16000)
    with pytest.raises(ValueError, match="prompt_sample_rate must be > 0"):
        small.generate_continuation(torch.zeros(1, 1, 8000), 0)
    with pytest.raises(ValueError, match="longer than the audio to generate"):
        small.generate_continuation(torch.zeros(1, 1, 32000), 32000)
    with pytest.raises(ValueError, match="NaN"):
        small.generate_continuation(torch.full((1, 1, 800), float("nan")), 32000)
    with pytest.raises(ValueError, match="no melody"):
        small.generate_with_chroma(["x"], torch.zeros(1, 1, 32000), 32000)


def test_bad_melody_shapes(melody):
    melody.set_generation_params(duration=0.2)
    with pytest.raises(ValueError, match="melody_wavs must have shape"):
        melody.generate_with_chroma(["x"], torch.zeros(32000), 32000)
    with pytest.raises(ValueError, match="at least 1 samples"):
        melody.generate_with_chroma(["x"], [torch.zeros(1, 0)], 32000)
    with pytest.raises(ValueError, match="must match"):
        melody.generate_with_chroma(["x", "y"], torch.zeros(1, 1, 3200), 32000)
    with pytest.raises(ValueError, match="melody_sample_rate must be > 0"):
        melody.generate_with_chroma(["x"], torch.zeros(1, 1, 3200), -5)


def test_bad_tokens(small):
    with pytest.raises(ValueError, match="must have 4 codebooks"):
        small.generate_audio(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"values must be in \[0, 2048\)"):
        small.generate_audio(torch.full((1, 4, 5), 2048, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor"):
        small.generate_audio(torch.zeros(1, 4, 5))


# ---- weight formats of get_pretrained ----------------------------------------------------------------
FP32_KIND = "native" if native_kernels.available() else "onednn"


def test_get_pretrained_packs_fp32_by_default_and_keeps_the_goldens():
    model = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")
    assert model.lm.linears[0].packed_kind == FP32_KIND
    assert model.lm.transformer.layers[0].self_attn.packed_kind == FP32_KIND
    state = model.lm.state_dict()  # plain dense weights, official names and shapes
    assert state["linears.0.weight"].shape == (2048, 64) and state["linears.0.weight"].dtype == torch.float32
    g = load_golden("generate_greedy")
    p = g["meta"]["set_generation_params"]
    model.set_generation_params(**p)
    _, tokens = model.generate(g["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, g["tokens"])
    plain = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu", pack=False)
    assert type(plain.lm.linears[0]) is torch.nn.Linear
    assert not native_kernels._prepacking  # the background packing of the load is over and forgotten


@pytest.mark.parametrize("kwargs, kind", [(dict(dtype=torch.bfloat16), "bf16"), (dict(quantize="int8"), "int8"),
                                          (dict(dtype=torch.float32), FP32_KIND)])
def test_get_pretrained_weight_options(kwargs, kind):
    model = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu", **kwargs)
    assert model.lm.linears[0].packed_kind == kind
    g = load_golden("generate_greedy")
    model.set_generation_params(**g["meta"]["set_generation_params"])
    _, tokens = model.generate(g["meta"]["texts"], return_tokens=True)
    assert tokens.shape == g["tokens"].shape  # lossy formats: accuracy is tested in test_quantize.py


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(dtype="bf16"), TypeError, "dtype must be None or a torch.dtype.*got 'bf16'"),
    (dict(dtype=torch.float16), ValueError, "dtype must be None, torch.float32 or torch.bfloat16 on CPU"),
    (dict(quantize="int4"), ValueError, "quantize must be None or one of \\('int8',\\), got 'int4'"),
    (dict(quantize="int8", dtype=torch.bfloat16), ValueError, "cannot be combined"),
    (dict(quantize="int8", device="cuda"), ValueError, "quantize='int8' is only implemented for CPU inference"),
    (dict(pack=1), TypeError, "pack"),
])
def test_get_pretrained_weight_option_errors(kwargs, exc, match):
    kwargs = {"device": "cpu", **kwargs}
    with pytest.raises(exc, match=match):
        MusicGen.get_pretrained("facebook/musicgen-small", **kwargs)
