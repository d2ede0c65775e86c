"""The interactive app's "Decoder" choice: MultiBand Diffusion decodes the take's tokens too, and the EnCodec take
is kept beside it (as in Audiocraft's demo). Handlers with stand-ins, once with the tiny real models, then the
gradio layer."""
import math

import pytest
import torch

from audiocraft.app.errors import AppError
from audiocraft.app.handlers import (DECODERS, DEFAULT_DECODER, MBD_DECODER, GenerationRequest, generate_one,
                                     validate_request)
from audiocraft.app.model_cache import ModelCache
from audiocraft.app.outputs import OutputFolder
from audiocraft.app.running import RunningRequests
from audiocraft.data.audio import audio_info
from audiocraft.utils.cancel import CancelToken

from .fakes import FakeDiffusion, FakeMusicGen, fake_loader

SMALL = "facebook/musicgen-small"


def _cache(diffusion=None, loads=None):
    def load_diffusion():
        if loads is not None:
            loads.append(1)
        return diffusion if diffusion is not None else FakeDiffusion()
    return ModelCache(loader=fake_loader(), diffusion_loader=load_diffusion)


def test_decoder_is_validated():
    assert DECODERS == ("Default", "MultiBand_Diffusion")  # the values of Audiocraft's demo
    assert validate_request(SMALL, "x", None, 2).decoder == DEFAULT_DECODER
    assert validate_request(SMALL, "x", None, 2, decoder=MBD_DECODER).decoder == MBD_DECODER
    with pytest.raises(AppError, match=r"^Unknown decoder 'mbd'; choose one of: Default, MultiBand_Diffusion\.$"):
        validate_request(SMALL, "x", None, 2, decoder="mbd")


def test_mbd_decodes_the_takes_tokens_and_keeps_the_encodec_take():
    loads, diffusion, status = [], FakeDiffusion(), []
    cache = _cache(diffusion, loads)
    request = GenerationRequest(SMALL, "lofi", None, 2.0, decoder=MBD_DECODER)
    result = generate_one(cache, request, status=status.append)
    t = torch.arange(64000) / 32000
    torch.testing.assert_close(result.wav[0], 0.5 * torch.sin(2 * math.pi * 440 * t))  # EnCodec's (the model's)
    torch.testing.assert_close(result.diffusion[0], 0.25 * torch.sin(2 * math.pi * 220 * t))  # MBD's
    (tokens,) = diffusion.calls
    assert tokens.shape == (1, 4, 100) and torch.equal(tokens[0, 0], torch.arange(100))  # the generated tokens
    assert status == ["Loading MultiBand Diffusion", "Decoding with MultiBand Diffusion"]
    status.clear()
    assert generate_one(cache, request, status=status.append).diffusion is not None
    assert status == ["Decoding with MultiBand Diffusion"] and loads == [1]  # loaded once, kept
    # the default decoder does not load or run it
    cache = _cache(diffusion, loads)
    assert generate_one(cache, GenerationRequest(SMALL, "lofi", None, 1.0)).diffusion is None
    assert loads == [1] and len(diffusion.calls) == 2


def test_stopped_request_skips_the_diffusion():
    diffusion = FakeDiffusion()
    cancel = CancelToken()
    result = generate_one(_cache(diffusion), GenerationRequest(SMALL, "x", None, 2.0, decoder=MBD_DECODER),
                          lambda done, total: done == 10 and cancel.cancel(), cancel)
    assert result.stopped and result.diffusion is None and diffusion.calls == []
    assert result.warnings == ["Stopped: the MultiBand Diffusion decoding was skipped."]


def test_mbd_errors_are_app_errors():
    def broken():
        raise FileNotFoundError("facebook/multiband-diffusion not found in the offline cache\ndetails")
    cache = ModelCache(loader=fake_loader(), diffusion_loader=broken)
    with pytest.raises(AppError, match=r"^Could not load the MultiBand Diffusion decoder: facebook/multiband-diffusion "
                                       r"not found in the offline cache$"):
        generate_one(cache, GenerationRequest(SMALL, "x", None, 1.0, decoder=MBD_DECODER))

    def sixteen_khz(name):
        model = FakeMusicGen(name)
        model.sample_rate = 16000
        return model
    cache = ModelCache(loader=sixteen_khz, diffusion_loader=FakeDiffusion)
    with pytest.raises(AppError, match=r"^MultiBand Diffusion cannot decode this model: Model 'facebook/musicgen-small'"
                                       r" makes 16000 Hz audio .* MultiBand Diffusion decodes the tokens of the 32 kHz "
                                       r"EnCodec"):
        generate_one(cache, GenerationRequest(SMALL, "x", None, 1.0, decoder=MBD_DECODER))


def test_mbd_with_the_tiny_real_models():
    cache = ModelCache(device="cpu", stem_separation=False)
    result = generate_one(cache, GenerationRequest(SMALL, "lofi", None, 1.0, decoder=MBD_DECODER))
    assert result.wav.shape == result.diffusion.shape == (1, 32000)
    assert bool(torch.isfinite(result.diffusion).all()) and not torch.allclose(result.wav, result.diffusion)
    assert cache.diffusion_loaded


# ---------------------------------------------------------------------------------------------- gradio layer
gr = pytest.importorskip("gradio", reason="gradio (the 'app' extra) is not installed")

from audiocraft.app.ui import build_app, make_check, make_generate, make_predict  # noqa: E402

ARGS = (SMALL, "lofi", None, 2, 250, 0.0, 1.0, 3.0)


def test_generate_with_mbd_gives_both_takes_without_streaming(tmp_path):
    generate = make_generate(_cache(), OutputFolder(tmp_path), (SMALL,), RunningRequests())
    (only,) = list(generate(*ARGS, True, MBD_DECODER))  # one step: MBD needs the whole take
    live, path, picture, diffusion = only
    assert live == b"" and picture.size == (800, 200)
    assert audio_info(path).duration == audio_info(diffusion).duration == 2.0 and path != diffusion
    predict = make_predict(_cache(), OutputFolder(tmp_path), (SMALL,))
    assert predict(*ARGS, MBD_DECODER)[2] is not None and predict(*ARGS)[2] is None
    make_check((SMALL,))(*ARGS, MBD_DECODER)
    with pytest.raises(gr.Error, match="Unknown decoder 'MBD'"):
        make_check((SMALL,))(*ARGS, "MBD")


def test_page_has_the_decoder_choice(tmp_path):
    demo = build_app(_cache(), OutputFolder(tmp_path), models=(SMALL,), default_model=SMALL)
    blocks = {getattr(c, "elem_id", None): c for c in demo.blocks.values()}
    decoder, diffusion = blocks["decoder"], blocks["diffusion_audio"]
    assert decoder.label == "Decoder" and decoder.value == DEFAULT_DECODER
    assert [value for _, value in decoder.choices] == list(DECODERS)
    assert [label for label, _ in decoder.choices] == ["Default (EnCodec)", "MultiBand Diffusion"]
    assert diffusion.visible is False and diffusion.get_block_name() == "audio"
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert [c.elem_id for c in fns["check"].inputs][-1] == "decoder"
    assert [c.elem_id for c in fns["predict"].inputs][-2:] == ["stream", "decoder"]
    # choosing MultiBand Diffusion shows its player
    toggle = next(fn for fn in demo.fns.values() if [c.elem_id for c in fn.inputs] == ["decoder"])
    assert [c.elem_id for c in toggle.outputs] == ["diffusion_audio"]
    assert toggle.fn(MBD_DECODER)["visible"] is True and toggle.fn(DEFAULT_DECODER)["visible"] is False
