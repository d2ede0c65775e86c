"""Both apps with the tiny stereo checkpoints: 2-channel files, a live stereo AAC stream, a two-lane waveform."""
import math

import pytest
import torch

from audiocraft.app.model_cache import ModelCache
from audiocraft.app.outputs import OutputFolder
from audiocraft.app.running import RunningRequests
from audiocraft.app.settings import MODELS, OFFLINE_MODELS
from audiocraft.data.audio import audio_info, audio_write

gr = pytest.importorskip("gradio", reason="gradio (the 'app' extra) is not installed")

from audiocraft.app.ui import make_generate, make_predict  # noqa: E402
from audiocraft.app.ui_batched import make_predict_batched  # noqa: E402

STEREO = "facebook/musicgen-stereo-small"
STEREO_MELODY = "facebook/musicgen-stereo-melody"


@pytest.fixture(scope="module")
def cache():
    return ModelCache(device="cpu", stem_separation=False)


def _adts_channels(segment: bytes) -> int:
    """The channel configuration of the first ADTS frame header."""
    return ((segment[2] & 1) << 2) | (segment[3] >> 6)


def test_stereo_models_are_offered():
    for name in ("facebook/musicgen-stereo-small", "facebook/musicgen-stereo-medium",
                 "facebook/musicgen-stereo-large", "facebook/musicgen-stereo-melody",
                 "facebook/musicgen-stereo-melody-large", "facebook/musicgen-melody-large"):
        assert name in MODELS
    assert STEREO in OFFLINE_MODELS and STEREO_MELODY in OFFLINE_MODELS


def test_interactive_app_stereo(cache, tmp_path):
    generate = make_generate(cache, OutputFolder(tmp_path), (STEREO,), RunningRequests(), chunk_seconds=0.5)
    outputs = list(generate(STEREO, "lofi", None, 1, 250, 0.0, 1.0, 3.0, True))
    live = [o[0] for o in outputs if o[0]]
    assert live and all(_adts_channels(segment) == 2 for segment in live)  # the live player gets stereo AAC
    path, picture, diffusion = outputs[-1][1:]
    assert diffusion is None  # the default decoder
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.duration) == (32000, 2, 1.0)
    assert picture.size == (800, 200)
    predict = make_predict(cache, OutputFolder(tmp_path / "plain"), (STEREO,))
    path, _, _ = predict(STEREO, "lofi", None, 1, 250, 0.0, 1.0, 3.0)
    assert audio_info(path).channels == 2


def test_batched_app_stereo_melody(cache, tmp_path):
    t = torch.arange(16000) / 16000
    melody = str(audio_write(tmp_path / "m", 0.5 * torch.sin(2 * math.pi * 220 * t)[None].repeat(2, 1), 16000))
    predict = make_predict_batched(cache, OutputFolder(tmp_path / "out"), STEREO_MELODY, 1.0)
    (paths,) = predict(["a song", ""], [None, melody])
    assert [audio_info(p).channels for p in paths] == [2, 2]
    assert {audio_info(p).duration for p in paths} == {1.0}
