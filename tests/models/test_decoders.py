"""MultiBandDiffusion as a decoder of a model's tokens: which models it fits (from the loaded model or from the
checkpoint config alone), generate_long with it (crossfades included), generate_stream refusing it."""
import pytest
import torch

from audiocraft.models import MultiBandDiffusion, MusicGen
from audiocraft.models.crossfade import fade_in
from audiocraft.models.decoders import check_decoder, checkpoint_mismatch, decode

MBD_ONLY = "MultiBand Diffusion decodes the tokens of the 32 kHz EnCodec"


@pytest.fixture(scope="module")
def mbd():
    return MultiBandDiffusion.get_mbd_musicgen(device="cpu")


@pytest.fixture(scope="module")
def small():
    return MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")


def write_checkpoint(folder, sample_rate, solver, channels=1, n_q=4, card=2048):
    """A state_dict.bin holding only a config (enough for checkpoint_mismatch, which loads no weights)."""
    cfg = (f"solver: {solver}\nsample_rate: {sample_rate}\nchannels: {channels}\nlm_model: transformer_lm\n"
           f"transformer_lm:\n  n_q: {n_q}\n  card: {card}\n")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"best_state": {}, "xp.cfg": cfg, "version": "1.3.0", "exported": True}, folder / "state_dict.bin")
    return str(folder)


def test_check_decoder(small, mbd):
    assert check_decoder(small, None) is None
    assert check_decoder(small, mbd) is mbd
    with pytest.raises(TypeError, match=r"decoder must be a MultiBandDiffusion .* got str"):
        check_decoder(small, "mbd")
    debug = MusicGen.get_pretrained("debug", device="cpu")
    with pytest.raises(ValueError, match=r"Model 'debug' makes 32000 Hz audio from 4 codebook\(s\) of 400 codes for "
                                         r"1 channel\(s\); " + MBD_ONLY):
        check_decoder(debug, mbd)


def test_checkpoint_mismatch_reads_only_the_config(tmp_path):
    assert checkpoint_mismatch("facebook/musicgen-small") is None
    assert checkpoint_mismatch("facebook/magnet-small-10secs") is None  # MAGNeT's music models: the same codec
    assert checkpoint_mismatch(write_checkpoint(tmp_path / "stereo", 32000, "musicgen", channels=2, n_q=8)) is None
    audiogen = write_checkpoint(tmp_path / "audiogen", 16000, "audiogen")
    reason = checkpoint_mismatch(audiogen)
    assert reason.startswith(f"'{audiogen}' (audiogen) makes 16000 Hz audio from 4 codebook(s) of 2048 codes for 1 "
                             "channel(s); " + MBD_ONLY) and "not AudioGen" in reason
    assert "8 codebook(s)" in checkpoint_mismatch(write_checkpoint(tmp_path / "k8", 32000, "musicgen", n_q=8))
    assert "Model 'debug'" in checkpoint_mismatch("debug")
    with pytest.raises(FileNotFoundError):
        checkpoint_mismatch(str(tmp_path / "nowhere"))


def test_decode_empty_tokens_uses_the_codec(small, mbd):
    tokens = torch.zeros(1, 4, 0, dtype=torch.long)
    assert decode(small, tokens, mbd).shape == (1, 1, 0)


def test_generate_long_with_mbd(small, mbd):
    """The tokens are those of the codec run; the audio is MBD's decoding of them (the global RNG right before the
    call seeds it); a crossfade's previous-description continuation is decoded by MBD too, after the main audio."""
    old = small.max_duration
    small.max_duration = 0.4  # windows of 20 frames advancing by 10: a schedule change starts a new window
    try:
        small.set_generation_params(duration=0.6, extend_stride=0.2)
        schedule = [(0.0, "lofi"), (0.3, "drums")]
        _, tokens = small.generate_long(schedule, return_tokens=True, seed=5)
        torch.manual_seed(3)
        plain, same = small.generate_long(schedule, return_tokens=True, seed=5, decoder=mbd)
        assert torch.equal(same, tokens)
        torch.manual_seed(3)
        assert torch.equal(plain, mbd.tokens_to_wav(tokens))
        torch.manual_seed(3)
        faded, same = small.generate_long(schedule, return_tokens=True, seed=5, decoder=mbd, crossfade=0.1)
        assert torch.equal(same, tokens)
        hop = small.sample_rate // small.frame_rate
        start, end = 20 * hop, 25 * hop  # the window whose content starts at 0.4 s: its first 0.1 s fades in
        assert torch.equal(faded[..., :start], plain[..., :start]) and torch.equal(faded[..., end:], plain[..., end:])
        w = fade_in(end - start, plain.device)
        assert not torch.allclose(faded[..., start:end], plain[..., start:end])
        assert torch.allclose(faded[..., end - 1], plain[..., end - 1], atol=float(1 - w[-1]) * 10)
        with pytest.raises(ValueError, match=r"Model 'debug'"):
            MusicGen.get_pretrained("debug", device="cpu").generate_long([(0.0, "x")], decoder=mbd)
    finally:
        small.max_duration = old
        small.set_generation_params()


def test_generate_stream_refuses_a_decoder(small, mbd):
    with pytest.raises(ValueError, match=r"generate_stream decodes with the model's own codec \(decoder=None\), got "
                                         r"decoder=MultiBandDiffusion: MultiBandDiffusion diffuses and equalises a "
                                         r"whole clip at once, so it cannot stream\. Use generate\(\.\.\., "
                                         r"return_tokens=True\) then decoder\.tokens_to_wav\(tokens\)"):
        small.generate_stream(["x"], decoder=mbd)
