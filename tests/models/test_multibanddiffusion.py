"""MultiBandDiffusion against the official Audiocraft 1.3.0 goldens (tests/reference/golden/mbd_*.pt, made from
the tiny random `facebook/multiband-diffusion` checkpoint in tests/reference/hf_cache), stereo tokens, input
checks. Loading safety of the checkpoint: tests/models/test_mbd_loading.py."""
import pytest
import torch

from audiocraft.models import MultiBandDiffusion
from audiocraft.modules.diffusion_schedule import MultiBandProcessor, SampleProcessor

TOL = 1e-4
SHORT = [999, 0]  # one model call per band, for the tests that do not compare with a golden


@pytest.fixture(scope="module")
def mbd():
    return MultiBandDiffusion.get_mbd_musicgen(device="cpu")


def test_loaded_as_audiocraft(mbd):
    assert mbd.sample_rate == 32000
    processors = [type(dp.schedule.sample_processor) for dp in mbd.DPs]
    assert processors == [SampleProcessor, SampleProcessor, MultiBandProcessor, MultiBandProcessor]
    assert all(dp.model.training for dp in mbd.DPs)  # as Audiocraft: never switched to eval mode
    assert [dp.schedule.beta_t1 for dp in mbd.DPs][:2] == [0.029, 0.01]


def test_get_emb_and_re_eq_match_golden(mbd, golden):
    g = golden("mbd_tokens_to_wav")
    torch.testing.assert_close(mbd.get_emb(g["tokens"]), g["condition"], atol=TOL, rtol=0)
    out = mbd.re_eq(wav=g["wav_diffusion"], ref=g["wav_encodec"], n_bands=32)
    torch.testing.assert_close(out, g["wav"], atol=TOL, rtol=0)


def test_tokens_to_wav_matches_golden(mbd, golden):
    g = golden("mbd_tokens_to_wav")
    torch.manual_seed(g["meta"]["torch.manual_seed_right_before_call"])
    wav = mbd.tokens_to_wav(g["tokens"])
    torch.testing.assert_close(wav, g["wav"], atol=TOL, rtol=0)


def test_musicgen_tokens_to_wav_matches_golden(mbd, golden):
    g = golden("mbd_musicgen")  # greedy tokens of the tiny musicgen-small
    torch.manual_seed(g["meta"]["torch.manual_seed_right_before_tokens_to_wav"])
    torch.testing.assert_close(mbd.tokens_to_wav(g["tokens"]), g["wav"], atol=TOL, rtol=0)


def test_regenerate_and_get_condition_match_golden(mbd, golden):
    g = golden("mbd_regenerate")  # 0.5 s at 24 kHz: resampled to 32 kHz and back
    torch.manual_seed(g["meta"]["torch.manual_seed_right_before_call"])
    out = mbd.regenerate(g["wav"], g["meta"]["sample_rate"])
    torch.testing.assert_close(out, g["regenerated"], atol=TOL, rtol=0)
    cond = mbd.get_condition(g["wav"], sample_rate=g["meta"]["sample_rate"])
    torch.testing.assert_close(cond, g["condition"], atol=TOL, rtol=0)


def test_generate_default_size_and_step_list(mbd):
    emb = mbd.get_emb(torch.randint(0, 2048, (2, 4, 3)))
    torch.manual_seed(0)
    out = mbd.generate(emb, step_list=SHORT)
    assert out.shape == (2, 1, 3 * 640) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match=r"size must be \[B, C, T\] with B = 2"):
        mbd.generate(emb, size=(1, 1, 1920))


def test_stereo_tokens_are_decoded_channel_by_channel(mbd, monkeypatch):
    """Interleaved stereo tokens (left = 0::2, right = 1::2) give [B, 2, T], exactly two mono calls in a row."""
    monkeypatch.setattr("audiocraft.modules.diffusion_schedule.DEFAULT_STEP_LIST", SHORT)  # fast: 1 call per band
    tokens = torch.randint(0, 2048, (2, 8, 2), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(11)
    stereo = mbd.tokens_to_wav(tokens)
    torch.manual_seed(11)
    left = mbd.tokens_to_wav(tokens[:, 0::2])
    right = mbd.tokens_to_wav(tokens[:, 1::2])
    assert stereo.shape == (2, 2, 2 * 640)
    assert torch.equal(stereo, torch.cat([left, right], dim=1))


def test_multichannel_regenerate_goes_channel_by_channel(mbd, monkeypatch):
    monkeypatch.setattr("audiocraft.modules.diffusion_schedule.DEFAULT_STEP_LIST", SHORT)
    wav = torch.randn(1, 2, 1200, generator=torch.Generator().manual_seed(0)) * 0.1
    torch.manual_seed(5)
    both = mbd.regenerate(wav, 24000)
    torch.manual_seed(5)
    left, right = mbd.regenerate(wav[:, :1], 24000), mbd.regenerate(wav[:, 1:], 24000)
    assert both.shape == (1, 2, 1200) and torch.equal(both, torch.cat([left, right], dim=1))


@pytest.mark.parametrize("tokens, error, message", [
    (torch.zeros(1, 5, 3, dtype=torch.long), ValueError, r"K=5 codebooks .* uses 4 \(mono\) or 8 \(stereo"),
    (torch.full((1, 4, 3), 2048), ValueError, r"values must be in \[0, 2047\] .* got values in \[2048, 2048\]"),
    (torch.full((1, 4, 3), -1), ValueError, r"values must be in \[0, 2047\]"),
    (torch.zeros(1, 4, 3), TypeError, "tokens must be an integer tensor"),
    (torch.zeros(4, 3, dtype=torch.long), ValueError, r"tokens must be a 3D tensor, got shape \[4, 3\]"),
    (torch.zeros(1, 4, 0, dtype=torch.long), ValueError, "tokens must not be empty"),
    ([[[0]]], TypeError, "tokens must be a torch.Tensor"),
])
def test_bad_tokens_are_refused(mbd, tokens, error, message):
    with pytest.raises(error, match=message):
        mbd.tokens_to_wav(tokens)


def test_other_input_errors(mbd):
    wav = torch.zeros(1, 1, 800)
    with pytest.raises(ValueError, match=r"sample_rate must be a positive integer \(Hz\), got 0"):
        mbd.regenerate(wav, 0)
    with pytest.raises(ValueError, match=r"sample_rate must be a positive integer \(Hz\), got 0"):
        mbd.get_condition(wav, 0)
    with pytest.raises(TypeError, match="wav must be a floating point tensor"):
        mbd.regenerate(torch.zeros(1, 1, 800, dtype=torch.long), 32000)
    with pytest.raises(ValueError, match="wav contains NaN"):
        mbd.regenerate(torch.full((1, 1, 800), float("nan")), 32000)
    with pytest.raises(ValueError, match=r"same shape, got \[1, 1, 800\] and \[1, 1, 640\]"):
        mbd.re_eq(wav, torch.zeros(1, 1, 640))
    with pytest.raises(ValueError, match="n_bands must be an integer >= 1, got 0"):
        mbd.re_eq(wav, wav, n_bands=0)
    with pytest.raises(ValueError, match="n_bands must be an integer >= 1"):
        mbd.tokens_to_wav(torch.zeros(1, 4, 1, dtype=torch.long), n_bands=1.5)  # type: ignore[arg-type]
