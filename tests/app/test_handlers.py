"""Request handlers of the web apps, without gradio: validation messages, melody reading, outputs."""
import math
import wave

import pytest
import torch

from audiocraft.app.errors import AppError
from audiocraft.app.handlers import (GenerationRequest, generate_batch, generate_one, read_melody,
                                     validate_batch_item, validate_request)
from audiocraft.app.model_cache import ModelCache
from audiocraft.data.audio import audio_write

from .fakes import FakeMusicGen, fake_loader

MELODY = "facebook/musicgen-melody"
SMALL = "facebook/musicgen-small"


@pytest.fixture(scope="module")
def melody_file(tmp_path_factory):
    """2 s of a stereo 330 Hz sine at 16 kHz."""
    t = torch.arange(32000) / 16000
    wav = 0.3 * torch.sin(2 * math.pi * 330 * t)
    return str(audio_write(tmp_path_factory.mktemp("melody") / "tune", torch.stack([wav, wav]), 16000))


def _valid(**overrides):
    args = dict(model=SMALL, text="  lofi beat  ", melody=None, duration=8, top_k=250, top_p=0.0, temperature=1.0,
                cfg_coef=3.0)
    args.update(overrides)
    return validate_request(**args)


def test_valid_request_is_normalised():
    request = _valid(top_k=100.0, top_p="0.5", duration=12)
    assert request.text == "lofi beat"
    assert request.melody is None
    assert (request.duration, request.top_k, request.top_p) == (12.0, 100, 0.5)
    assert isinstance(request.top_k, int)


@pytest.mark.parametrize("overrides, message", [
    (dict(text="   "), r"Enter a description of the music to generate \(or upload a melody"),
    (dict(text=None), "Enter a description"),
    (dict(duration=0.5), r"Duration \(seconds\) must be a number from 1 to 120, got 0.5\."),
    (dict(duration=121), r"Duration \(seconds\) must be a number from 1 to 120, got 121\."),
    (dict(duration=None), r"Duration \(seconds\) must be a number from 1 to 120, got nothing\."),
    (dict(duration=float("nan")), r"Duration \(seconds\) must be a number from 1 to 120, got nan\."),
    (dict(duration="ten"), r"Duration \(seconds\) must be a number from 1 to 120, got 'ten'\."),
    (dict(top_k=2.5), r"Top-k must be a whole number from 0 to 2048, got 2\.5\."),
    (dict(top_k=-1), r"Top-k must be a whole number from 0 to 2048, got -1\."),
    (dict(top_k=4096), r"Top-k must be a whole number from 0 to 2048, got 4096\."),
    (dict(top_p=1.5), r"Top-p must be a number from 0 to 1, got 1\.5\."),
    (dict(temperature=0), r"Temperature must be a number above 0, got 0\."),
    (dict(cfg_coef=-2), r"Classifier-free guidance must be a number of at least 0, got -2\."),
    (dict(model="facebook/musicgen-huge"), r"Unknown model 'facebook/musicgen-huge'; choose one of: "),
    (dict(text="x" * 2001), r"The description is too long \(2001 characters\); keep it under 2000\."),
    (dict(text=3), r"The description must be text, got int\."),
])
def test_invalid_requests_name_the_field(overrides, message):
    with pytest.raises(AppError, match=message):
        _valid(**overrides)


def test_melody_needs_a_melody_model(melody_file):
    with pytest.raises(AppError, match="facebook/musicgen-small cannot follow a melody: enter a description"):
        _valid(text="", melody=melody_file)
    # With a description the text model just ignores the upload (not even read).
    assert _valid(melody=melody_file).melody is None


def test_melody_only_request_reads_and_trims_the_upload(melody_file):
    request = _valid(model=MELODY, text="", melody=melody_file, duration=1)
    assert request.text is None
    wav, sr = request.melody
    assert sr == 16000 and wav.shape == (2, 16000)  # 2 s file trimmed to the 1 s asked for


def test_unreadable_upload(tmp_path):
    bad = tmp_path / "song.wav"
    bad.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AppError, match=r"Could not read the melody file 'song.wav': it is not an audio file "
                                       r"that FFmpeg can decode \(Invalid data found when processing input\)\.$"):
        read_melody(str(bad))
    with pytest.raises(AppError, match=r"The melody file 'gone.wav' is no longer on the server; upload it again"):
        read_melody(str(tmp_path / "gone.wav"))
    with pytest.raises(AppError, match="The melody upload is not a file"):
        read_melody(42)
    assert read_melody(None) is None and read_melody("") is None


def test_empty_upload(tmp_path):
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
    with pytest.raises(AppError, match="The melody file 'empty.wav' holds no audio samples"):
        read_melody(str(path))


def test_generate_one_text():
    cache = ModelCache(loader=fake_loader())
    steps = []
    result = generate_one(cache, _valid(duration=2, top_k=10, top_p=0.25, temperature=0.7, cfg_coef=5),
                          lambda done, total: steps.append((done, total)))
    assert result.sample_rate == 32000
    assert result.wav.shape == (1, 64000)
    assert result.warnings == []
    assert steps[0] == (1, 100) and steps[-1] == (100, 100)
    with cache.use(SMALL) as model:
        assert model.calls == [("generate", ["lofi beat"], None)]
        assert model.params == dict(use_sampling=True, top_k=10, top_p=0.25, temperature=0.7, duration=2.0,
                                    cfg_coef=5.0, extend_stride=18.0)
        assert model.callback is None  # detached after the call


def test_generate_one_melody_is_resampled(melody_file):
    cache = ModelCache(loader=fake_loader())
    result = generate_one(cache, _valid(model=MELODY, text="", melody=melody_file, duration=1))
    assert result.wav.shape == (1, 32000)
    with cache.use(MELODY) as model:
        (method, texts, (wavs, sr)), = model.calls
    assert (method, texts, sr) == ("generate_with_chroma", [None], 32000)
    assert len(wavs) == 1 and wavs[0].shape == (1, 32000)  # 1 s at 16 kHz stereo -> 32 kHz mono


def test_model_without_melody_conditioner_warns(melody_file):
    cache = ModelCache(loader=lambda name: FakeMusicGen(name, melody=False))
    request = _valid(model=MELODY, melody=melody_file, duration=1)
    result = generate_one(cache, request)
    assert result.warnings == [f"{MELODY} has no melody conditioning; the melody was ignored."]
    request = GenerationRequest(MELODY, None, request.melody, 1.0)
    with pytest.raises(AppError, match="cannot follow a melody: enter a description"):
        generate_one(cache, request)


def test_model_errors_become_app_errors():
    cache = ModelCache(loader=fake_loader())
    with pytest.raises(AppError, match=r"Could not load the model 'facebook/missing': Repository "
                                       r"facebook/missing not found in the offline cache$"):
        generate_one(cache, GenerationRequest("facebook/missing", "x", None, 1.0))
    with pytest.raises(AppError, match="temperature must be > 0"):
        generate_one(cache, GenerationRequest(SMALL, "x", None, 1.0, temperature=-1.0))


def test_cache_is_lazy_and_keeps_one_model():
    loaded = []
    cache = ModelCache(loader=fake_loader(loaded))
    assert loaded == [] and cache.loaded_name is None
    for name in (SMALL, SMALL, MELODY, MELODY, SMALL):
        with cache.use(name) as model:
            assert model.name == name
    assert loaded == [SMALL, MELODY, SMALL]
    assert cache.loads == 3 and cache.loaded_name == SMALL


def test_generate_batch(melody_file):
    cache = ModelCache(loader=fake_loader())
    items = [validate_batch_item(t, m, 1.0) for t, m in [("a", None), ("", melody_file), ("c", melody_file)]]
    wavs, sr = generate_batch(cache, MELODY, [t for t, _ in items], [m for _, m in items], 1.0)
    assert sr == 32000 and [w.shape for w in wavs] == [(1, 32000)] * 3
    with cache.use(MELODY) as model:
        (method, texts, (melodies, melody_sr)), = model.calls
    assert (method, texts, melody_sr) == ("generate_with_chroma", ["a", None, "c"], 32000)
    assert melodies[0] is None and melodies[1].shape == (1, 32000)
    assert generate_batch(cache, MELODY, [], [], 1.0) == ([], 32000)
    with pytest.raises(AppError, match="Got 2 descriptions but 1 melodies"):
        generate_batch(cache, MELODY, ["a", "b"], [None], 1.0)


def test_batch_item_needs_text_or_melody():
    with pytest.raises(AppError, match="Enter a description of the music to generate, or upload a melody"):
        validate_batch_item(" ", None, 1.0)
