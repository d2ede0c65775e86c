"""Nothing lost, in process: a generation interrupted (KeyboardInterrupt, an exception in a progress callback or
deep inside a forward pass) leaves the model usable, and the next call gives the official golden tokens; an
audio_write interrupted half way leaves the old file and no temporary file."""
from __future__ import annotations

import typing as tp

import pytest
import torch

from audiocraft.data import audio as audio_mod
from audiocraft.data.audio import audio_read, audio_write
from audiocraft.modules.streaming import StreamingModule
from tests.conftest import load_golden


class Boom(Exception):
    """An application error raised from a user callback."""


def _assert_golden(model: tp.Any) -> None:
    g = load_golden("generate_greedy")
    model.set_custom_progress_callback(None)
    model.set_generation_params(**g["meta"]["set_generation_params"])
    tokens = model.generate(g["meta"]["texts"], return_tokens=True)[1]
    assert torch.equal(tokens, g["tokens"])


def _assert_idle(model: tp.Any) -> None:
    """No module is left streaming or holding a streaming state (KV caches are dropped)."""
    for module in (model.lm, model.compression_model):
        for name, sub in module.named_modules():
            if isinstance(sub, StreamingModule):
                assert not sub.is_streaming, f"{name or type(module).__name__} is still streaming"
                assert sub._streaming_state is None, f"{name or type(module).__name__} kept a streaming state"


def _raise_at(step: int, exc: BaseException) -> tp.Callable[[int, int], None]:
    def callback(done: int, total: int) -> None:
        if done == step:
            raise exc
    return callback


@pytest.mark.parametrize("two_step_cfg", [False, True])
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Boom("callback failed")], ids=["KeyboardInterrupt", "Boom"])
def test_interrupt_from_progress_callback(small_model, exc, two_step_cfg):
    small_model.set_generation_params(duration=0.5, use_sampling=True, two_step_cfg=two_step_cfg)
    small_model.set_custom_progress_callback(_raise_at(7, exc))
    with pytest.raises(type(exc)):
        small_model.generate(["a song", "another song"])
    _assert_idle(small_model)
    small_model.set_custom_progress_callback(_raise_at(3, exc))
    with pytest.raises(type(exc)):  # a second interruption, this time of a continuation
        small_model.generate_continuation(torch.zeros(1, 1, 3200), 32000, ["x"])
    _assert_idle(small_model)
    _assert_golden(small_model)


def test_interrupt_inside_a_forward_pass(small_model):
    """KeyboardInterrupt raised by a layer in the middle of a decoding step (half the layers updated their KV
    cache for this step, the other half not)."""
    calls = {"n": 0}

    def hook(module: torch.nn.Module, args: tp.Any) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    handle = small_model.lm.transformer.layers[1].register_forward_pre_hook(hook)
    try:
        small_model.set_generation_params(duration=0.5)
        with pytest.raises(KeyboardInterrupt):
            small_model.generate(["a song"])
    finally:
        handle.remove()
    _assert_idle(small_model)
    _assert_golden(small_model)


def test_interrupt_in_the_codec(small_model):
    """An exception inside EnCodec decoding (after the LM finished) leaves the codec usable."""
    calls = {"n": 0}

    def hook(module: torch.nn.Module, args: tp.Any) -> None:
        calls["n"] += 1
        raise Boom("decoder failed")

    handle = small_model.compression_model.decoder.register_forward_pre_hook(hook)
    try:
        small_model.set_generation_params(duration=0.1)
        with pytest.raises(Boom):
            small_model.generate(["a song"])
    finally:
        handle.remove()
    assert calls["n"] == 1
    _assert_idle(small_model)
    g = load_golden("generate_greedy")
    _assert_golden(small_model)
    audio = small_model.generate_audio(g["tokens"])
    assert (audio - g["audio"]).abs().max() < 1e-4


def test_stream_closed_or_failing_midway(small_model):
    small_model.set_generation_params(duration=1.0)
    stream = small_model.generate_stream(["a song"], chunk_seconds=0.1)
    next(stream)
    stream.close()  # the user stops listening
    _assert_idle(small_model)
    with pytest.raises(Boom):
        for i, _ in enumerate(small_model.generate_stream(["a song"], chunk_seconds=0.1)):
            if i == 2:
                raise Boom("consumer failed")
    _assert_idle(small_model)
    _assert_golden(small_model)


# ---------------------------------------------------------------------------------------------- audio_write
@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named-temp-fallback"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Boom("disk full")], ids=["KeyboardInterrupt", "Boom"])
def test_interrupted_audio_write_keeps_the_old_file(tmp_path, monkeypatch, unnamed, exc):
    if not unnamed:
        monkeypatch.setattr(audio_mod, "_unnamed_file", lambda folder: None)
    old = audio_write(tmp_path / "take", 0.1 * torch.ones(1, 8000), 16000, normalize=False)
    old_bytes = old.read_bytes()
    real = audio_mod._to_encoder_array
    calls = []

    def interrupted(wav: torch.Tensor, sample_fmt: str) -> tp.Any:
        calls.append(1)
        if len(calls) == 3:
            raise exc
        return real(wav, sample_fmt)

    monkeypatch.setattr(audio_mod, "_CHUNK", 1024)
    monkeypatch.setattr(audio_mod, "_to_encoder_array", interrupted)
    with pytest.raises(type(exc)):
        audio_write(tmp_path / "take", 0.2 * torch.ones(1, 16000), 16000, normalize=False)
    assert [p.name for p in tmp_path.iterdir()] == ["take.wav"]
    assert old.read_bytes() == old_bytes
    monkeypatch.setattr(audio_mod, "_to_encoder_array", real)
    new = audio_write(tmp_path / "take", 0.2 * torch.ones(1, 16000), 16000, normalize=False)
    assert [p.name for p in tmp_path.iterdir()] == ["take.wav"]
    assert audio_read(new)[0].shape == (1, 16000)
