"""Streaming output and the Stop button of the interactive app: AAC segments, the streamed request, cancellation
(the worker really stops at the next decoding step, the model is free for the next request)."""
import io
import math
import threading
import types

import numpy as np
import pytest
import torch

from audiocraft.app.aac import ADTS_RATES, AdtsEncoder, adts_duration, adts_header
from audiocraft.app.handlers import GenerationResult, generate_one, validate_request
from audiocraft.app.model_cache import ModelCache
from audiocraft.app.outputs import OutputFolder
from audiocraft.app.running import RunningRequests
from audiocraft.app.stream import Chunk, stream_one
from audiocraft.data.audio import audio_info
from audiocraft.utils.cancel import CancelToken

from .fakes import FakeMusicGen, fake_loader

SMALL = "facebook/musicgen-small"


def _sine(seconds: float, channels: int = 1, rate: int = 32000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.5 * torch.sin(2 * math.pi * 440 * t))[None].repeat(channels, 1)


# ---------------------------------------------------------------------------------------------- AAC / ADTS
def test_adts_header_fields():
    header = adts_header(100, 32000, 1)
    # syncword FFF, MPEG-4, layer 0, no CRC; AAC-LC, 32 kHz (index 5), mono; length 107; VBR fullness.
    assert header.hex() == "fff1" + "5440" + "0d7ffc"
    assert int.from_bytes(header, "big") >> 13 & 0x1FFF == 107
    with pytest.raises(ValueError, match="sample_rate must be one of"):
        adts_header(1, 32001, 1)
    with pytest.raises(ValueError, match="an ADTS frame holds at most"):
        adts_header(9000, 32000, 1)
    assert adts_duration(header + bytes(100) + adts_header(5, 32000, 1) + bytes(5)) == 2 * 1024 / 32000
    with pytest.raises(ValueError, match="no ADTS syncword at byte 0"):
        adts_duration(b"\x00" * 10)


@pytest.mark.parametrize("channels", [1, 2])
def test_chunked_aac_decodes_to_the_take(channels):
    av = pytest.importorskip("av")
    wav = _sine(1.0, channels)
    encoder = AdtsEncoder(32000, channels)
    pieces = [encoder.encode(wav[:, i:i + 7000]) for i in range(0, wav.shape[-1], 7000)] + [encoder.flush()]
    data = b"".join(pieces)
    assert encoder.flush() == b""
    # Every piece is whole ADTS frames: the player's segments each start on a frame.
    assert sum(adts_duration(p) for p in pieces) == adts_duration(data) == 33 * 1024 / 32000
    container = av.open(io.BytesIO(data), format="aac")
    decoded = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=-1)
    assert decoded.shape == (channels, 33 * 1024)
    # One encoder for the whole take: after its 1024-sample priming delay the sine comes back, lossy but with
    # no click where the pieces meet (7000, 14000, ...); the onset and the end are left out (codec transients).
    error = np.abs(decoded[:, 1024:1024 + 32000] - wav.numpy())[:, 1024:-1024]
    assert error.max() < 0.03
    with pytest.raises(RuntimeError, match="the encoder was flushed"):
        encoder.encode(wav)
    with pytest.raises(ValueError, match=r"wav must have shape \[%d, n\]" % channels):
        AdtsEncoder(32000, channels).encode(torch.zeros(3, 10))
    assert 32000 in ADTS_RATES


# ---------------------------------------------------------------------------------------------- sessions
def test_running_requests_stop_their_own_session_only():
    running = RunningRequests()
    with running.track("a") as first, running.track("b") as other:
        assert len(running) == 2
        assert running.stop("a") == 1 and running.stop("nobody") == 0 and running.stop(None) == 0
        assert first.cancelled and not other.cancelled
    assert len(running) == 0 and running.stop("a") == 0
    with running.track(None) as untracked:
        assert len(running) == 0 and not untracked.cancelled


# ---------------------------------------------------------------------------------------------- stream_one
def _request(duration=2.0, model=SMALL, text="lofi"):
    return validate_request(model, text, None, duration, models=(SMALL, "facebook/musicgen-melody"))


def test_stream_one_yields_chunks_then_the_whole_take():
    steps = []
    items = list(stream_one(ModelCache(loader=fake_loader()), _request(2.5), chunk_seconds=1.0,
                            progress=lambda done, total: steps.append((done, total)), poll_seconds=0.01))
    chunks, result = items[:-1], items[-1]
    assert [c.wav.shape for c in chunks] == [(1, 32000), (1, 32000), (1, 16000)]
    assert all(isinstance(c, Chunk) and c.sample_rate == 32000 for c in chunks)
    assert isinstance(result, GenerationResult) and not result.stopped
    assert torch.equal(result.wav, torch.cat([c.wav for c in chunks], dim=-1))
    assert steps and steps[-1] == (125, 125)


def test_stop_returns_what_was_generated_and_the_model_serves_the_next_request():
    model = FakeMusicGen(SMALL)
    cache = ModelCache(loader=lambda name: model)
    cancel = CancelToken()
    model.before_chunk = lambda index: cancel.cancel() if index == 1 else None
    items = list(stream_one(cache, _request(30.0), chunk_seconds=1.0, cancel=cancel))
    result = items[-1]
    # Cancelled while the second chunk was handed over: the generation stopped at its next step.
    assert result.stopped and result.wav.shape[-1] == 2 * 32000  # not 30 s
    model.before_chunk = lambda index: None
    again = list(stream_one(cache, _request(1.0)))[-1]
    assert not again.stopped and again.wav.shape == (1, 32000)


def test_closing_the_stream_frees_the_model():
    model = FakeMusicGen(SMALL)
    cache = ModelCache(loader=lambda name: model)
    items = stream_one(cache, _request(30.0), chunk_seconds=1.0)
    assert isinstance(next(items), Chunk)
    items.close()  # the page went away
    free = []

    def probe_lock():
        free.append(cache._lock.acquire(timeout=30))
        cache._lock.release()

    probe = threading.Thread(target=probe_lock)
    probe.start()
    probe.join()
    assert free == [True]


def test_stream_one_errors_come_to_the_caller():
    model = FakeMusicGen(SMALL)
    model.generate_stream = lambda *args, **kwargs: (_ for _ in ()).throw(ValueError("bad thing"))
    from audiocraft.app.errors import AppError

    with pytest.raises(AppError, match="Generation failed: bad thing"):
        list(stream_one(ModelCache(loader=lambda name: model), _request(1.0)))
    with pytest.raises(ValueError, match="chunk_seconds must be > 0"):
        next(stream_one(ModelCache(loader=lambda name: model), _request(1.0), chunk_seconds=0))
    with pytest.raises(ValueError, match="first_chunk_seconds must be > 0 or None, got -1"):
        next(stream_one(ModelCache(loader=lambda name: model), _request(1.0), first_chunk_seconds=-1))


def test_generate_one_can_be_stopped():
    model = FakeMusicGen(SMALL)
    cancel = CancelToken()
    cache = ModelCache(loader=lambda name: model)

    def progress(done, total):
        if done == 10:
            cancel.cancel()

    result = generate_one(cache, _request(30.0), progress, cancel)
    assert result.stopped and result.wav.shape == (1, 9 * 640)


# ---------------------------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def tiny_cache():
    from audiocraft.models import MusicGen

    model = MusicGen.get_pretrained(SMALL, device="cpu")
    return ModelCache(loader=lambda name: model)


def test_stop_a_long_generation_of_the_real_model(tiny_cache):
    """A 60 s request (two extension windows) stopped after its first chunk ends within a chunk or two; the
    next request on the same model is complete."""
    cancel = CancelToken()
    chunks = []
    result = None
    for item in stream_one(tiny_cache, _request(60.0), chunk_seconds=0.5, cancel=cancel):
        if isinstance(item, Chunk):
            chunks.append(item)
            cancel.cancel()
        else:
            result = item
    assert result is not None and result.stopped
    assert result.wav.shape[-1] < 3 * 16000, result.wav.shape  # not 60 s: stopped at the next decoding step
    assert torch.equal(result.wav, torch.cat([c.wav for c in chunks], dim=-1))
    after = list(stream_one(tiny_cache, _request(1.0), chunk_seconds=0.5))[-1]
    assert not after.stopped and after.wav.shape == (1, 32000)


# ---------------------------------------------------------------------------------------------- gradio layer
gr = pytest.importorskip("gradio", reason="gradio (the 'app' extra) is not installed")

from audiocraft.app.ui import STREAM_FIRST_CHUNK_SECONDS, build_app, make_generate, make_stop  # noqa: E402

ARGS = (SMALL, "lofi", None, 2, 250, 0.0, 1.0, 3.0)


def _is_skip(value):
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1


def test_generate_streams_aac_then_the_file(tmp_path):
    generate = make_generate(ModelCache(loader=fake_loader()), OutputFolder(tmp_path), (SMALL,), RunningRequests())
    outputs = list(generate(*ARGS, True))
    live = [o[0] for o in outputs]
    assert all(isinstance(data, bytes) for data in live)  # never gr.skip(): gradio must see the stream start
    assert all(_is_skip(o[1]) and _is_skip(o[2]) and _is_skip(o[3]) for o in outputs[:-1])
    assert sum(adts_duration(data) for data in live) == pytest.approx(2.0 + 1024 / 32000, abs=0.04)
    path, picture, diffusion = outputs[-1][1:]
    assert diffusion is None  # the default decoder: no MultiBand Diffusion take
    assert audio_info(path).duration == 2.0 and picture.size == (800, 200)
    # Streaming off: one step, the live player untouched.
    (single,) = list(generate(*ARGS, False))
    assert single[0] == b"" and audio_info(single[1]).duration == 2.0


def test_stop_button_stops_its_session(tmp_path):
    model = FakeMusicGen(SMALL)
    running = RunningRequests()
    generate = make_generate(ModelCache(loader=lambda name: model), OutputFolder(tmp_path), (SMALL,), running)
    stop = make_stop(running)
    me, someone = types.SimpleNamespace(session_hash="me"), types.SimpleNamespace(session_hash="other")
    model.before_chunk = lambda index: (stop(someone), stop(me)) if index == 2 else None
    outputs = list(generate(SMALL, "lofi", None, 60, 250, 0.0, 1.0, 3.0, True, request=me))
    path = outputs[-1][1]
    # chunks 0 and 1 were out: a first chunk of STREAM_FIRST_CHUNK_SECONDS (0.5 s), then one of 1 s
    assert model.first_chunk_seconds == STREAM_FIRST_CHUNK_SECONDS == 0.5
    assert 2.5 <= audio_info(path).duration < 2.6 and len(running) == 0
    # Non-streaming requests stop too; afterwards the model serves complete requests.
    model.before_chunk = lambda index: None
    model.set_custom_progress_callback = lambda callback: setattr(
        model, "callback", None if callback is None else (lambda d, t: (callback(d, t), d == 25 and stop(me))))
    (single,) = list(generate(SMALL, "lofi", None, 60, 250, 0.0, 1.0, 3.0, False, request=me))
    assert audio_info(single[1]).duration == 24 * 640 / 32000
    model.set_custom_progress_callback = types.MethodType(FakeMusicGen.set_custom_progress_callback, model)
    assert audio_info(list(generate(*ARGS, True))[-1][1]).duration == 2.0


def test_stop_before_any_audio_gives_no_file(tmp_path):
    model = FakeMusicGen(SMALL)
    running = RunningRequests()
    generate = make_generate(ModelCache(loader=lambda name: model), OutputFolder(tmp_path), (SMALL,), running)
    me = types.SimpleNamespace(session_hash="me")
    model.set_custom_progress_callback = lambda callback: setattr(
        model, "callback", None if callback is None else (lambda d, t: running.stop("me")))
    outputs = list(generate(SMALL, "lofi", None, 60, 250, 0.0, 1.0, 3.0, False, request=me))
    assert outputs[-1][1:] == (None, None, None)


def test_page_has_stop_and_live_player(tmp_path):
    demo = build_app(ModelCache(loader=fake_loader()), OutputFolder(tmp_path), models=(SMALL,), default_model=SMALL)
    ids = {c.elem_id for c in demo.blocks.values() if getattr(c, "elem_id", None)}
    assert {"stop", "stream", "live_audio", "output_audio", "waveform"} <= ids
    live = next(c for c in demo.blocks.values() if getattr(c, "elem_id", None) == "live_audio")
    assert live.streaming and live.get_block_name() == "audio"
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert fns["predict"].concurrency_limit == 1 and fns["stop"].concurrency_limit is None
