"""`musicgen --decoder mbd`: the takes decoded by MultiBandDiffusion (in process, tiny offline checkpoints); models
whose tokens MBD cannot read are refused before anything is loaded."""
import json

import pytest
import torch

from audiocraft.cli import build_parser, main, run
from audiocraft.cli_decoder import decode_take
from audiocraft.cli_plan import Plan, Take
from audiocraft.cli_runner import generate_batch
from audiocraft.models import MultiBandDiffusion, MusicGen
from tests.models.test_decoders import MBD_ONLY, write_checkpoint


@pytest.fixture(scope="module")
def mbd():
    return MultiBandDiffusion.get_mbd_musicgen(device="cpu")


@pytest.fixture(scope="module")
def small():
    model = MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")
    model.set_generation_params(duration=0.2)
    return model


def test_cli_writes_mbd_takes_that_regenerate(tmp_path):
    from audiocraft.data.audio import audio_info, audio_read

    args = ["lofi", "--decoder", "mbd", "--duration", "0.2", "--seed", "4", "--no-progress"]
    assert run(build_parser().parse_args([*args, "--out", str(tmp_path / "a.wav")])) == [tmp_path / "a.wav"]
    info = audio_info(tmp_path / "a.wav")
    assert (info.sample_rate, info.channels, info.duration) == (32000, 1, 0.2)
    meta = json.loads((tmp_path / "a.wav.json").read_text())
    assert meta["decoder"] == "mbd" and meta["seed"] == 4
    run(build_parser().parse_args([*args, "--out", str(tmp_path / "b.wav")]))
    run(build_parser().parse_args([args[0], *args[3:], "--out", str(tmp_path / "c.wav")]))  # EnCodec
    a, b, c = (audio_read(tmp_path / f"{name}.wav")[0] for name in "abc")
    assert torch.equal(a, b)  # the diffusion's randomness comes from the take's seed
    assert json.loads((tmp_path / "c.wav.json").read_text())["decoder"] == "encodec"
    assert a.shape == c.shape and not torch.allclose(a, c, atol=1e-2)  # same tokens, other decoder


def test_batch_takes_are_decoded_alone_with_their_seed(small, mbd):
    plan = Plan([Take(0, "lofi", None), Take(1, "jazz", None)], "wav", 7)  # type: ignore[arg-type]
    audios = generate_batch(small, plan, plan.takes, [7, 8], decoder=mbd)
    _, tokens = small.generate(["jazz"], return_tokens=True, seed=[8])
    alone = decode_take(mbd, tokens, 8)
    assert [a.shape for a in audios] == [(1, 6400), (1, 6400)]
    assert torch.equal(audios[1], alone)
    state = torch.get_rng_state()
    decode_take(mbd, tokens, 8)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was


@pytest.fixture
def no_model_load(monkeypatch):
    import audiocraft.models

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded")
    for owner in (MusicGen, MultiBandDiffusion):
        name = "get_pretrained" if owner is MusicGen else "get_mbd_musicgen"
        monkeypatch.setattr(owner, name, staticmethod(forbidden))
    monkeypatch.setattr(audiocraft.models, "get_pretrained", forbidden)


def test_models_mbd_cannot_decode_fail_before_loading(tmp_path, capsys, no_model_load):
    other = write_checkpoint(tmp_path / "other", 24000, "musicgen")
    for model, message in [("facebook/audiogen-medium", "'facebook/audiogen-medium' (audiogen) makes 16000 Hz audio"),
                           (other, f"'{other}' (musicgen) makes 24000 Hz audio"),
                           ("debug", "Model 'debug' makes 32000 Hz audio from 4 codebook(s) of 400 codes")]:
        assert main(["x", "--model", model, "--decoder", "mbd", "--out", str(tmp_path / "o.wav")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("musicgen: error: --decoder mbd: " + message), err
        assert MBD_ONLY in err[0] and err[0].endswith("; drop --decoder mbd or choose a MusicGen model")
    assert not list(tmp_path.glob("*.wav"))


def test_cli_mbd_load_failure_is_one_line(tmp_path, capsys, monkeypatch):
    def missing(device=None):
        raise FileNotFoundError("facebook/multiband-diffusion is not in the offline cache\nmore")
    monkeypatch.setattr(MultiBandDiffusion, "get_mbd_musicgen", staticmethod(missing))
    assert main(["x", "--decoder", "mbd", "--duration", "0.1", "--no-progress", "--out", str(tmp_path / "o.wav")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("musicgen:")]  # no T5 bar
    assert err == ["musicgen: error: --decoder mbd: could not load the MultiBand Diffusion decoder "
                   "'facebook/multiband-diffusion': facebook/multiband-diffusion is not in the offline cache more"]


def test_help_lists_the_decoders():
    parser = build_parser()
    assert parser.parse_args(["x"]).decoder == "encodec"
    assert "--decoder {encodec,mbd}" in parser.format_help()
