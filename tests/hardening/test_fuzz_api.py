"""Property-based tests: generated inputs thrown at the public entry points. Each call either succeeds with a
result of the promised shape or raises one of the documented exceptions (TypeError, ValueError and its
subclasses, FileNotFoundError) with a message; anything else fails the test.

Each example draws valid arguments (odd but legal values included: empty texts, unusual rates, extreme but
finite samples) and then breaks at most one of them with a wrong type or value, so both the accepting and the
refusing paths are exercised. Budgets are small per test (the tiny models generate a few frames in a fraction
of a second) and add up to thousands of examples; ``conftest.py`` prints how many ran and how many were
accepted. Sizes are bounded where a legal input really costs memory or time (long audio, upsampling from 1 Hz);
huge sizes the library refuses (sample rates above 1 MHz, more than 1024 channels) stay in. Run with
``HARDENING_RANDOM=1`` to explore new inputs instead of the fixed derandomized ones.
"""
from __future__ import annotations

import math
import typing as tp

from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
import numpy as np
import pytest
import torch

from audiocraft.data.audio import audio_info, audio_read, audio_write
from audiocraft.data.audio_utils import convert_audio, normalize_audio
from audiocraft.utils.validation import check_descriptions, check_number, check_tokens, check_waveform

from .conftest import FUZZ, counted, note_accepted

DOCUMENTED = (TypeError, ValueError, FileNotFoundError)


def documented(fn: tp.Callable[[], tp.Any]) -> tp.Tuple[bool, tp.Any]:
    """(True, result) or (False, the documented exception); any other exception propagates."""
    try:
        result = fn()
    except DOCUMENTED as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return False, exc
    note_accepted()
    return True, result


def arguments(data: tp.Any, valid: tp.Dict[str, tp.Any], invalid: tp.Dict[str, tp.Any]) -> tp.Dict[str, tp.Any]:
    """Draw every argument from ``valid``, then replace at most one (half of the time) from ``invalid``."""
    values = {name: data.draw(strategy, label=name) for name, strategy in valid.items()}
    broken = data.draw(st.sampled_from([None] * len(invalid) + list(invalid)), label="broken argument")
    if broken is not None:
        values[broken] = data.draw(invalid[broken], label=f"{broken} (broken)")
    return values


def _whole(value: tp.Any) -> tp.Optional[int]:
    """``value`` as a positive whole number (int, numpy / 0-dim torch integer, integral float), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return None
    return int(number) if math.isfinite(number) and number >= 1 and number.is_integer() else None


def _number_within(value: tp.Any, limit: float) -> bool:
    """True for a plain int / float (not bool) that is finite with ``abs(value) <= limit``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and abs(float(value)) <= limit
    except OverflowError:  # an int beyond the float range
        return False


# ---------------------------------------------------------------------------------------------- strategies
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10 ** 30, max_value=10 ** 30), st.just(10 ** 400), FLOATS,
    st.text(max_size=8), st.binary(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
    st.builds(torch.tensor, st.floats(-5, 5)), st.just(np.float64(2.5)), st.just(object()),
)
RATES = st.one_of(st.sampled_from([8000, 16000, 22050, 24000, 32000, 44100, 48000]), st.integers(1, 4000),
                  st.sampled_from([16000.0, np.int64(32000), torch.tensor(44100)]))
# Huge whole rates (1e13, 1e30) included: convert_audio refuses rates above 1 MHz (its sinc window would grow with
# from_rate / to_rate).
BAD_RATES = st.one_of(st.integers(-10 ** 6, 0), st.just(10 ** 400), st.floats(0.5, 1e5).filter(
    lambda x: not x.is_integer()), FLOATS.filter(lambda x: not math.isfinite(x)),
    st.sampled_from([10 ** 6 + 1, 10 ** 13, 10 ** 30, 1e30]), ANYTHING)
SPECIAL = [math.nan, math.inf, -math.inf, 3e38, -3e38, 1e-45, 1e-30]


@st.composite
def waveforms(draw: tp.Any, dims: tp.Sequence[int] = (1, 2, 3), channels: tp.Tuple[int, int] = (1, 2),
              length: tp.Tuple[int, int] = (1, 400), special: tp.Sequence[float] = (),
              dtypes: tp.Sequence[tp.Any] = (np.float32,)) -> torch.Tensor:
    """Small float tensors of the given ranks; sometimes one sample is set to a ``special`` value."""
    dim = draw(st.sampled_from(list(dims)))
    shape = [draw(st.integers(1, 2)) for _ in range(dim - 2)]
    if dim >= 2:
        shape.append(draw(st.integers(*channels)))
    shape.append(draw(st.integers(*length)))
    dtype = draw(st.sampled_from(list(dtypes)))
    width = 16 if dtype == np.float16 else 32
    array = draw(arrays(dtype, shape, elements=st.floats(-2, 2, width=width), fill=st.floats(-1, 1, width=width)))
    wav = torch.from_numpy(np.ascontiguousarray(array))
    value = draw(st.sampled_from([None, None, None, *special])) if special else None
    if value is not None and wav.numel():
        wav.view(-1)[draw(st.integers(0, wav.numel() - 1))] = value
    return wav


BAD_WAVS = st.one_of(
    waveforms(dims=(1, 2, 3), special=[math.nan, math.inf, -math.inf]),
    waveforms(dims=(4,)), waveforms(length=(0, 0)), waveforms(channels=(0, 0), dims=(2, 3)),
    st.builds(lambda t: t.long(), waveforms()), ANYTHING)
TEXTS = st.one_of(st.none(), st.text(max_size=40), st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
                  st.sampled_from(["lofi beat", "80s pop track with bassy drums and synth", "", "  ", "\x00"]))
BAD_TEXTS = st.one_of(st.just("\ud800"), st.builds(lambda t: t + "\udfff", st.text(max_size=5)), st.just("la " * 900),
                      ANYTHING.filter(lambda x: x is not None and not isinstance(x, str)))
DESCRIPTIONS = st.lists(TEXTS, min_size=1, max_size=3)
BAD_DESCRIPTIONS = st.one_of(st.just([]), st.text(max_size=5), st.lists(BAD_TEXTS, min_size=1, max_size=2),
                             ANYTHING)


# ---------------------------------------------------------------------------------------------- pure validators
@settings(FUZZ, max_examples=400)
@given(value=st.one_of(ANYTHING, st.floats(-20, 20), st.integers(-20, 20)), integer=st.booleans(),
       minimum=st.none() | st.floats(-10, 10), strict=st.booleans())
@counted
def test_check_number(value, integer, minimum, strict):
    ok, out = documented(lambda: check_number("arg", value, minimum=minimum, strict_min=strict, integer=integer))
    if ok:
        assert out is value and math.isfinite(float(value))
        assert minimum is None or (value > minimum if strict else value >= minimum)
    else:
        assert "arg" in str(out)


@settings(FUZZ, max_examples=300)
@given(value=st.one_of(DESCRIPTIONS, BAD_DESCRIPTIONS))
@counted
def test_check_descriptions(value):
    ok, out = documented(lambda: check_descriptions("descriptions", value))
    if ok:
        assert all(item is None or isinstance(item, str) for item in out) and len(out) >= 1
        assert all(item is None or item.encode("utf-8") is not None for item in out)
    else:
        assert "descriptions" in str(out)


@settings(FUZZ, max_examples=300)
@given(wav=st.one_of(waveforms(dims=(1, 2, 3), special=SPECIAL), BAD_WAVS))
@counted
def test_check_waveform(wav):
    ok, out = documented(lambda: check_waveform("wav", wav, dims=(2, 3)))
    if ok:
        assert out.dim() in (2, 3) and out.shape[-1] >= 1 and bool(torch.isfinite(out).all())
    else:
        assert "wav" in str(out)


# ---------------------------------------------------------------------------------------------- audio utils
@settings(FUZZ, max_examples=300)
@given(data=st.data())
@counted
def test_convert_audio(data):
    args = arguments(data, {
        "wav": waveforms(dims=(2, 3), channels=(1, 3), length=(0, 200), dtypes=(np.float32, np.float64)),
        "from_rate": RATES, "to_rate": RATES, "to_channels": st.integers(1, 3),
    }, {"wav": BAD_WAVS, "from_rate": BAD_RATES, "to_rate": BAD_RATES,
        # Huge channel counts included (mono would be repeated to each): convert_audio refuses more than 1024.
        "to_channels": st.one_of(st.integers(-2, 0), st.sampled_from([1025, 10 ** 9, 10 ** 30]), ANYTHING)})
    wav, rates = args["wav"], [_whole(args[k]) for k in ("from_rate", "to_rate")]
    if rates[0] and rates[1] and isinstance(wav, torch.Tensor) and wav.dim() >= 1:
        # Bounded work: at most 20k output samples per channel (upsampling 1 Hz -> 48 kHz is legal but big).
        assume(wav.shape[-1] * rates[1] <= 20000 * rates[0])
    ok, out = documented(lambda: convert_audio(**args))
    if ok:
        wav, channels = args["wav"], args["to_channels"]
        assert out.shape[:-2] == wav.shape[:-2] and out.shape[-2] == channels
        assert out.shape[-1] == int(wav.shape[-1] * int(args["to_rate"]) / int(args["from_rate"]))
        if bool(torch.isfinite(wav).all()):
            assert bool(torch.isfinite(out).all())


DB = st.one_of(st.floats(-200, 200), st.sampled_from([0, 1, 14, 18, -3]))
BAD_DB = st.one_of(st.floats(200.001, 1e308), st.floats(-1e308, -200.001),
                   FLOATS.filter(lambda x: not math.isfinite(x)), ANYTHING)


@settings(FUZZ, max_examples=400)
@given(data=st.data())
@counted
def test_normalize_audio(data):
    args = arguments(data, {
        "wav": waveforms(dims=(1, 2), length=(0, 300), dtypes=(np.float32, np.float64), special=SPECIAL[3:]),
        "normalize": st.booleans(), "strategy": st.sampled_from(["peak", "clip", "rms", "loudness", "none", "", "RMS"]),
        "peak_clip_headroom_db": DB, "rms_headroom_db": DB, "loudness_headroom_db": DB,
        "loudness_compressor": st.booleans(), "sample_rate": RATES,
    }, {"wav": BAD_WAVS, "strategy": st.one_of(st.sampled_from(["bogus", "peak "]), ANYTHING),
        "peak_clip_headroom_db": BAD_DB, "rms_headroom_db": BAD_DB, "loudness_headroom_db": BAD_DB,
        "sample_rate": BAD_RATES})
    ok, out = documented(lambda: normalize_audio(**args))
    if not ok:
        return
    wav, strategy = args["wav"], args["strategy"]
    assert out.shape == wav.shape and out.dtype == wav.dtype
    assert bool(torch.isfinite(out).all()), "finite input and valid parameters must give finite output"
    if strategy.lower() in ("rms", "loudness", "none", ""):
        assert out.numel() == 0 or out.abs().max() <= 1


@pytest.fixture(scope="module")
def audio_file(tmp_path_factory):
    t = torch.arange(44100 // 4) / 44100
    wav = torch.stack([0.5 * torch.sin(2 * math.pi * 440 * t), 0.25 * torch.sin(2 * math.pi * 660 * t)])
    return audio_write(tmp_path_factory.mktemp("fuzz") / "ref", wav, 44100, format="flac", normalize=False)


@settings(FUZZ, max_examples=120)
@given(data=st.data())
@counted
def test_audio_read(audio_file, data):
    args = arguments(data, {"seek_time": st.one_of(st.floats(0, 0.4), st.just(1e15)),
                            "duration": st.one_of(st.floats(-1, 0.4), st.just(0)), "pad": st.booleans()},
                     {"seek_time": st.one_of(st.floats(max_value=-1e-9), ANYTHING.filter(lambda x: x is not None)),
                      # Long pads are legal and allocate what they ask for: keep them out (beyond 2**31 samples
                      # audio_read refuses them, which stays in).
                      "duration": ANYTHING.filter(lambda x: x is not None and not (
                          isinstance(x, (int, float)) and 0.4 < x < 1e5))})
    ok, out = documented(lambda: audio_read(audio_file, **args))
    if not ok:
        return
    wav, sr = out
    seek, duration = args["seek_time"], args["duration"]
    assert sr == 44100 and wav.dim() == 2 and wav.shape[0] == 2 and wav.dtype == torch.float32
    available = max(0, 11025 - int(min(seek, 1e12) * sr))
    if duration > 0:
        wanted = int(duration * sr)
        assert wav.shape[-1] == (wanted if args["pad"] else min(wanted, available))
    else:
        assert wav.shape[-1] == available


@settings(FUZZ, max_examples=60)
@given(data=st.data())
@counted
def test_audio_write(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("w")
    args = arguments(data, {
        "wav": waveforms(dims=(1, 2), channels=(1, 3), length=(1, 300), dtypes=(np.float32, np.float16),
                         special=[3e38, 1e-45]),
        "sample_rate": RATES, "format": st.sampled_from(["wav", "mp3", "ogg", "flac", "WAV"]),
        "strategy": st.sampled_from(["peak", "clip", "rms", "loudness", "none"]), "normalize": st.booleans(),
        "metadata": st.one_of(st.none(), st.dictionaries(st.text("abc", min_size=1, max_size=3), TEXTS, max_size=2)),
    }, {"wav": BAD_WAVS, "sample_rate": BAD_RATES, "format": st.one_of(st.just("aac"), ANYTHING),
        "metadata": ANYTHING.filter(lambda x: x is not None)})
    if args["wav"] is not None and getattr(args["wav"], "dtype", None) == torch.float16:
        args["wav"] = args["wav"].clamp(-6e4, 6e4)  # float16 holds no 3e38
    ok, out = documented(lambda: audio_write(folder / "x", log_clipping=False, **args))
    files = sorted(p.name for p in folder.iterdir())
    if not ok:
        assert files == [], "a refused write leaves nothing behind"
        return
    assert files == [out.name], "exactly the target file, no temporary file"
    wav = args["wav"]
    channels = 1 if wav.dim() == 1 else wav.shape[0]
    assert audio_info(out).channels == channels
    read, sr = audio_read(out)
    assert read.shape[0] == channels and bool(torch.isfinite(read).all())
    if args["format"].lower() in ("wav", "flac"):
        assert sr == int(args["sample_rate"]) and read.shape[-1] == wav.shape[-1]


# ---------------------------------------------------------------------------------------------- MusicGen
GEN_PARAMS = {
    "use_sampling": st.booleans(), "top_k": st.integers(0, 3000), "top_p": st.one_of(st.just(0.0), st.floats(0, 1)),
    "temperature": st.one_of(st.floats(0.05, 10), st.sampled_from([1e-3, 1e3])),
    "duration": st.sampled_from([0.02, 0.04, 0.06]),
    "cfg_coef": st.one_of(st.floats(-20, 20), st.sampled_from([-1e3, 1e3])), "two_step_cfg": st.booleans(),
    "extend_stride": st.floats(0.5, 29),
}
BAD_GEN_PARAMS = {
    "use_sampling": ANYTHING.filter(lambda x: not isinstance(x, bool)),
    "top_k": st.one_of(st.integers(max_value=-1), st.floats(0.5, 10).filter(lambda x: not x.is_integer()), ANYTHING),
    "top_p": st.one_of(st.floats(1.0001, 1e9), st.floats(max_value=-1e-9), ANYTHING),
    "temperature": st.one_of(st.floats(max_value=0), st.sampled_from([1e-300, 1e-4, 1e4, 1e300]), ANYTHING),
    "duration": st.one_of(st.floats(max_value=0), ANYTHING),
    "cfg_coef": st.one_of(st.sampled_from([1e300, -1e300, 1000.5, 10 ** 30]),
                          ANYTHING.filter(lambda x: not _number_within(x, 1e3))),
    "two_step_cfg": ANYTHING.filter(lambda x: not isinstance(x, bool)),
    "extend_stride": st.one_of(st.floats(30, 1e9), st.floats(max_value=0), ANYTHING),
}


@settings(FUZZ, max_examples=300)
@given(data=st.data())
@counted
def test_set_generation_params(small_model, data):
    small_model.set_generation_params(duration=1.0)
    before = (dict(small_model.generation_params), small_model.duration, small_model.extend_stride)
    kwargs = arguments(data, {k: v for k, v in GEN_PARAMS.items() if data.draw(st.booleans(), label=f"give {k}")},
                       BAD_GEN_PARAMS)
    ok, out = documented(lambda: small_model.set_generation_params(**kwargs))
    if ok:
        assert small_model.duration == float(kwargs.get("duration", 30.0))
        assert small_model.generation_params["top_k"] == kwargs.get("top_k", 250)
    else:
        assert any(name in str(out) for name in kwargs), out
        assert (small_model.generation_params, small_model.duration, small_model.extend_stride) == before


def _sampling(data: tp.Any, duration: tp.Optional[float] = None) -> tp.Dict[str, tp.Any]:
    params = {k: data.draw(v, label=k) for k, v in GEN_PARAMS.items() if k != "extend_stride"}
    if duration is not None:
        params["duration"] = duration
    return params


def _check_output(out: tp.Any, batch: int, frames: int) -> None:
    audio, tokens = out
    assert tokens.shape == (batch, 4, frames) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 2048
    assert audio.shape == (batch, 1, frames * 640) and bool(torch.isfinite(audio).all())


SEEDS = st.one_of(st.none(), st.integers(0, 2 ** 32))
BAD_SEEDS = st.one_of(st.integers(max_value=-1), st.just(2 ** 63), st.just("1"), st.just([1, 2, 3, 4]),
                      st.floats(0, 10))


@settings(FUZZ, max_examples=40)
@given(data=st.data())
@counted
def test_generate(small_model, data):
    params = _sampling(data)
    small_model.set_generation_params(**params)
    torch.manual_seed(data.draw(st.integers(0, 2 ** 32), label="torch seed"))
    args = arguments(data, {"descriptions": DESCRIPTIONS}, {"descriptions": BAD_DESCRIPTIONS, "seed": BAD_SEEDS,
                                                            "cancel": ANYTHING.filter(lambda x: x is not None)})
    ok, out = documented(lambda: small_model.generate(return_tokens=True, **args))
    if ok:
        _check_output(out, len(args["descriptions"]), int(params["duration"] * 50))


@settings(FUZZ, max_examples=15)
@given(data=st.data())
@counted
def test_generate_unconditional(small_model, data):
    params = _sampling(data)
    small_model.set_generation_params(**params)
    # Counts above 1024 are refused at once (ValueError); 4 .. 1024 would really generate, so stay out of them.
    args = arguments(data, {"num_samples": st.integers(1, 3)},
                     {"num_samples": st.one_of(st.integers(-3, 0), st.integers(1025, 10 ** 30), ANYTHING.filter(
                         lambda x: not (isinstance(x, int) and 3 < x <= 1024)))})
    ok, out = documented(lambda: small_model.generate_unconditional(return_tokens=True, **args))
    if ok:
        _check_output(out, args["num_samples"], int(params["duration"] * 50))


@settings(FUZZ, max_examples=30)
@given(data=st.data())
@counted
def test_generate_continuation(small_model, data):
    small_model.set_generation_params(**_sampling(data, duration=0.1))
    args = arguments(data, {
        # Up to 0.1 s at the slowest rates below: the prompt fits in the 0.1 s generated.
        "prompt": waveforms(dims=(2, 3), channels=(1, 2), length=(20, 1500),
                            dtypes=(np.float32, np.float64, np.float16)),
        "prompt_sample_rate": st.sampled_from([16000, 32000, 44100, 48000]),
        "descriptions": st.one_of(st.none(), st.just("same")),
    }, {"prompt": BAD_WAVS, "prompt_sample_rate": BAD_RATES, "descriptions": BAD_DESCRIPTIONS})
    prompt = args["prompt"]
    batch = 1 if not isinstance(prompt, torch.Tensor) or prompt.dim() != 3 else prompt.shape[0]
    if args["descriptions"] == "same":
        args["descriptions"] = ["x"] * batch
    ok, out = documented(lambda: small_model.generate_continuation(return_tokens=True, **args))
    if ok:
        _check_output(out, batch, 5)


@settings(FUZZ, max_examples=25)
@given(data=st.data())
@counted
def test_generate_with_chroma(melody_model, data):
    params = _sampling(data)
    melody_model.set_generation_params(**params)
    batch = data.draw(st.integers(1, 2), label="batch")
    melody = st.one_of(
        waveforms(dims=(3,), channels=(1, 2), length=(1, 2000), dtypes=(np.float32, np.float64)).map(
            lambda w: w[:1].expand(batch, -1, -1)),
        st.lists(st.one_of(st.none(), waveforms(dims=(2,), length=(1, 1000))), min_size=batch, max_size=batch))
    # Realistic rates: a melody of 2000 samples at 1 Hz is 33 minutes of audio to analyse once resampled.
    args = arguments(data, {"descriptions": st.lists(TEXTS, min_size=batch, max_size=batch), "melody_wavs": melody,
                            "melody_sample_rate": st.sampled_from([8000, 16000, 32000, 44100, 48000])},
                     {"descriptions": BAD_DESCRIPTIONS, "melody_wavs": BAD_WAVS, "melody_sample_rate": BAD_RATES})
    ok, out = documented(lambda: melody_model.generate_with_chroma(return_tokens=True, **args))
    if ok:
        _check_output(out, batch, int(params["duration"] * 50))


TOKENS = st.builds(lambda b, t, high: torch.randint(0, high, (b, 4, t)), st.integers(1, 2), st.integers(0, 4),
                   st.sampled_from([1, 2048]))
BAD_TOKENS = st.one_of(
    st.builds(lambda b, k, t, v, dtype: torch.full((b, k, t), v).to(dtype), st.integers(0, 2), st.integers(2, 5),
              st.integers(0, 4), st.integers(-2, 2050),
              st.sampled_from([torch.long, torch.int32, torch.int16, torch.uint8, torch.float32, torch.bool])),
    st.builds(lambda shape: torch.randint(0, 2048, shape), st.lists(st.integers(0, 3), max_size=4).map(tuple)),
    ANYTHING)


@settings(FUZZ, max_examples=150)
@given(tokens=st.one_of(TOKENS, BAD_TOKENS))
@counted
def test_generate_audio_and_check_tokens(small_model, tokens):
    ok, out = documented(lambda: small_model.generate_audio(tokens))
    if ok:
        assert out.shape == (tokens.shape[0], 1, tokens.shape[-1] * 640) and bool(torch.isfinite(out).all())
    try:
        check_tokens("t", tokens, 4, 2048)
    except (TypeError, ValueError):
        assert not ok, "generate_audio accepted tokens check_tokens refuses"
    else:
        assert ok, "generate_audio refused tokens check_tokens accepts"


@settings(FUZZ, max_examples=100)
@given(wav=st.one_of(waveforms(dims=(3,), channels=(1, 1), length=(1, 1300), special=SPECIAL,
                               dtypes=(np.float32, np.float64, np.float16)), BAD_WAVS,
                     st.builds(torch.zeros, st.just(0), st.just(1), st.integers(0, 5))),
       tokens=st.one_of(TOKENS.filter(lambda t: t.shape[-1] > 0), BAD_TOKENS))
@counted
def test_compression_encode_decode(small_model, wav, tokens):
    codec = small_model.compression_model
    ok, out = documented(lambda: codec.encode(wav))
    if ok:
        codes, scale = out
        assert scale is None and codes.shape == (wav.shape[0], 4, math.ceil(wav.shape[-1] / 640))
        assert bool(torch.isfinite(wav).all()) and int(codes.min()) >= 0 and int(codes.max()) < 2048
    ok, out = documented(lambda: codec.decode(tokens))
    if ok:
        assert out.shape == (tokens.shape[0], 1, tokens.shape[-1] * 640) and bool(torch.isfinite(out).all())


# ---------------------------------------------------------------------------------------------- app handlers
FORM_NUMBER = st.one_of(st.floats(-5, 300), st.integers(-5, 3000), st.text("0123456789.e-+ naif", max_size=6),
                        st.none(), st.booleans(), FLOATS.filter(lambda x: not math.isfinite(x)), st.just(np.float64(3)))


@settings(FUZZ, max_examples=500)
@given(data=st.data())
@counted
def test_app_validate_request(data):
    from audiocraft.app.errors import AppError
    from audiocraft.app.handlers import GenerationRequest, validate_request

    args = arguments(data, {
        "model": st.sampled_from(["facebook/musicgen-small", "facebook/musicgen-large"]),
        "text": st.one_of(st.text(min_size=1, max_size=30).filter(str.strip), st.just(" lofi ")),
        "melody": st.one_of(st.none(), st.just("")),
        "duration": st.one_of(st.floats(1, 120), st.integers(1, 120), st.just(" 30 ")),
        "top_k": st.one_of(st.integers(0, 2048), st.just("250")), "top_p": st.floats(0, 1),
        "temperature": st.floats(0.01, 10), "cfg_coef": st.floats(0, 20),
    }, {"model": st.one_of(st.just("facebook/other"), ANYTHING), "text": ANYTHING.filter(lambda x: x is not None),
        "melody": st.one_of(st.sampled_from(["/no/such.wav", "."]), ANYTHING.filter(lambda x: x is not None)),
        "duration": FORM_NUMBER, "top_k": FORM_NUMBER, "top_p": FORM_NUMBER, "temperature": FORM_NUMBER,
        "cfg_coef": FORM_NUMBER})
    try:
        request = validate_request(**args)
    except AppError as exc:
        assert str(exc)
        return
    note_accepted()
    assert isinstance(request, GenerationRequest)
    assert 1 <= request.duration <= 120 and 0 <= request.top_k <= 2048 and 0 <= request.top_p <= 1
    assert request.temperature > 0 and request.cfg_coef >= 0


@settings(FUZZ, max_examples=200)
@given(text=st.one_of(TEXTS, st.sampled_from(["lofi", " a song "]), ANYTHING),
       melody=st.one_of(st.none(), st.sampled_from(["", "/no/such.wav"]), ANYTHING))
@counted
def test_app_validate_batch_item(text, melody):
    from audiocraft.app.errors import AppError
    from audiocraft.app.handlers import validate_batch_item

    try:
        description, melody_audio = validate_batch_item(text, melody, 1.0)
    except AppError as exc:
        assert str(exc)
        return
    note_accepted()
    assert description is not None or melody_audio is not None


# ---------------------------------------------------------------------------------------------- command line
CLI_VALID = {
    "--duration": st.sampled_from(["0.02", "0.04", "0.06"]), "--top-k": st.sampled_from(["0", "10", "250"]),
    "--top-p": st.sampled_from(["0", "0.5", "1"]), "--temperature": st.sampled_from(["0.5", "1", "2"]),
    "--cfg": st.sampled_from(["0", "3", "-1"]), "--seed": st.sampled_from(["0", "7"]),
    "--extend-stride": st.sampled_from(["1", "18"]), "--format": st.sampled_from(["wav", "mp3", "ogg", "flac"]),
    "--out": st.sampled_from(["out.wav", "o.mp3", "sub/dir/take.flac", "take"]),
    "--greedy": st.just(None), "--no-metadata": st.just(None),
}
CLI_BAD = st.one_of(st.sampled_from(["nan", "inf", "-1", "1e999", "abc", "", "missing.wav", "x.xyz", "--", "0"]),
                    st.text(max_size=5))
CLI_BAD_FLAGS = ["--duration", "--top-k", "--top-p", "--temperature", "--cfg", "--seed", "--extend-stride",
                 "--format", "--melody", "--continue", "--batch", "--bogus"]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
@counted
def test_cli(small_model, monkeypatch, tmp_path_factory, capsys, data):
    from audiocraft import cli as cli_module

    monkeypatch.setattr(cli_module, "_load_model", lambda args: small_model)
    monkeypatch.chdir(tmp_path_factory.mktemp("cli"))
    capsys.readouterr()  # the fixture is shared by all examples: start from a clean capture
    prompt = data.draw(st.one_of(st.sampled_from(["lofi beat", "", "x"]), st.text(max_size=20),
                                 BAD_TEXTS.filter(lambda t: isinstance(t, str))).filter(
        lambda t: not t.startswith("-")), label="prompt")
    flags = data.draw(st.lists(st.sampled_from(sorted(CLI_VALID)), unique=True, max_size=4), label="flags")
    argv = [prompt]
    for flag in flags:
        value = data.draw(CLI_VALID[flag], label=flag)
        argv += [flag] if value is None else [flag, value]
    if data.draw(st.sampled_from([False, False, True]), label="break one flag"):
        flag = data.draw(st.sampled_from(CLI_BAD_FLAGS), label="bad flag")
        value = data.draw(CLI_BAD, label="bad value")
        try:  # keep the work bounded: no long valid duration
            if flag == "--duration" and 0.1 < float(value) < math.inf:
                value = "-" + value
        except ValueError:
            pass
        argv += [flag, value]
    if "--duration" not in argv:
        argv += ["--duration", "0.04"]
    try:
        code = cli_module.main(argv + ["--no-progress"])
    except SystemExit as exc:  # argparse: unparsable flag values
        assert exc.code == 2
        return
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert len([line for line in err.splitlines() if line.startswith("musicgen:")]) == 1, err
    else:
        note_accepted()
