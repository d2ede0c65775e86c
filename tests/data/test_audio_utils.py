"""Tests of audiocraft.data.audio_utils and the loudness measure behind strategy='loudness'."""
import math

import julius
import pytest
import torch

from audiocraft.data.audio_utils import (convert_audio, convert_audio_channels, f32_pcm, i16_pcm, normalize_audio,
                                         normalize_loudness)
from audiocraft.data.loudness import integrated_loudness
from tests.conftest import load_golden

CASES = ('peak', 'clip', 'rms', 'loudness', 'loudness_compressor', 'peak_no_normalize')


@pytest.fixture(scope='module')
def aw():
    return load_golden('audio_write')


def _kwargs(aw, case):
    return dict(aw['meta']['cases'][case]['audio_write_kwargs'])


# ------------------------------------------------------------------------------------------------ goldens
@pytest.mark.parametrize('case', CASES)
def test_normalize_audio_matches_golden(aw, case):
    wav = aw['input_wav'].clone()
    out = normalize_audio(wav, sample_rate=aw['meta']['sample_rate'], **_kwargs(aw, case))
    want = aw[f'{case}_normalized']
    assert out.shape == want.shape and out.dtype == torch.float32
    if case.startswith('loudness'):
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-7)
    else:  # plain scalings / clamps: bit exact
        assert torch.equal(out, want)
    assert torch.equal(wav, aw['input_wav']), "the input must not be modified in place"


def test_input_loudness_matches_golden(aw):
    lkfs = integrated_loudness(aw['input_wav'], aw['meta']['sample_rate'])
    assert lkfs.shape == ()
    assert abs(lkfs.item() - aw['input_loudness_lkfs'].item()) < 1e-4


def test_golden_input_clips_inside_k_weighting(aw):
    """The golden input peaks above 1 after the treble shelf: without the clamp the measure is 0.28 dB off."""
    wav = aw['input_wav']
    assert wav.abs().max() > 1
    assert abs(integrated_loudness(wav, 16000).item() - (-4.2620)) < 1e-3


# ------------------------------------------------------------------------------------------------ loudness
@pytest.mark.parametrize('sample_rate,channels', [(16000, 2), (44100, 1), (48000, 5)])
def test_loudness_agrees_with_pyloudnorm_without_clipping(sample_rate, channels):
    pyln = pytest.importorskip('pyloudnorm')
    gen = torch.Generator().manual_seed(sample_rate)
    wav = 0.05 * torch.randn(channels, sample_rate * 2, generator=gen)
    wav[:, : sample_rate // 2] *= 1e-3  # a quiet start, removed by the gates
    ours = integrated_loudness(wav, sample_rate).item()
    theirs = pyln.Meter(sample_rate).integrated_loudness(wav.double().numpy().T)
    assert abs(ours - theirs) < 1e-4


def test_loudness_of_sine():
    t = torch.arange(48000 * 2) / 48000
    sine = 0.5 * torch.sin(2 * math.pi * 997 * t)
    # 997 Hz sine at -6.02 dBFS peak: mean square 0.125 -> -9.03 dB, K-weighting adds ~ -0.04 dB at 48 kHz.
    assert integrated_loudness(sine[None], 48000).item() == pytest.approx(-9.07, abs=0.02)
    # Two identical channels add 3.01 LU.
    stereo = integrated_loudness(torch.stack([sine, sine]), 48000).item()
    assert stereo - integrated_loudness(sine[None], 48000).item() == pytest.approx(10 * math.log10(2), abs=1e-4)


def test_loudness_nan_when_too_short_or_silent():
    assert math.isnan(integrated_loudness(torch.zeros(1, 100), 16000).item())
    assert math.isnan(integrated_loudness(torch.zeros(2, 16000), 16000).item())


def test_normalize_loudness_reaches_target():
    gen = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(2, 32000, generator=gen)
    out = normalize_loudness(wav, 32000, loudness_headroom_db=20)
    assert integrated_loudness(out, 32000).item() == pytest.approx(-20, abs=1e-3)
    compressed = normalize_loudness(wav, 32000, loudness_headroom_db=20, loudness_compressor=True)
    torch.testing.assert_close(compressed, torch.tanh(out))


def test_normalize_loudness_below_energy_floor_is_unchanged():
    wav = torch.full((1, 16000), 1e-3)
    assert normalize_loudness(wav, 16000) is wav


def test_normalize_loudness_short_clip_measured_on_its_repetition():
    t = torch.arange(1000) / 16000
    short = 0.5 * torch.sin(2 * math.pi * 440 * t)[None]
    out = normalize_loudness(short, 16000)
    assert out.shape == short.shape
    tiled = out.repeat(1, 7)[:, :6400]
    assert abs(float(integrated_loudness(tiled, 16000)) + 14) < 1e-3


def test_normalize_loudness_1d_keeps_shape():
    wav = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(1))
    out = normalize_loudness(wav, 16000)
    assert out.shape == wav.shape
    torch.testing.assert_close(out, normalize_loudness(wav[None], 16000)[0])


# ------------------------------------------------------------------------------------------------ strategies
def test_peak_without_normalize_only_scales_down():
    quiet = torch.tensor([[0.1, -0.2, 0.05]])
    assert torch.equal(normalize_audio(quiet, normalize=False, strategy='peak'), quiet)
    loud = torch.tensor([[0.1, -2.0, 0.05]])
    out = normalize_audio(loud, normalize=False, strategy='peak', peak_clip_headroom_db=0)
    torch.testing.assert_close(out, loud / 2)


def test_peak_and_rms_of_silence_are_unchanged():
    zeros = torch.zeros(2, 100)
    for strategy in ('peak', 'rms'):
        assert torch.equal(normalize_audio(zeros, strategy=strategy), zeros)


def test_rms_target_and_clip():
    wav = torch.tensor([[0.5, -0.5, 0.5, -0.5]])
    out = normalize_audio(wav, strategy='rms', rms_headroom_db=6)
    torch.testing.assert_close(out, wav / 0.5 * 10 ** (-6 / 20))
    clipped = normalize_audio(wav, strategy='rms', rms_headroom_db=-12)
    assert clipped.abs().max() == 1


def test_none_strategy_clamps_and_logs(caplog):
    wav = torch.tensor([[0.5, -1.5, 2.0]])
    with caplog.at_level('WARNING'):
        out = normalize_audio(wav, strategy='none', log_clipping=True, stem_name='my_stem')
    assert torch.equal(out, torch.tensor([[0.5, -1.0, 1.0]]))
    assert 'my_stem' in caplog.text
    assert torch.equal(wav, torch.tensor([[0.5, -1.5, 2.0]]))


@pytest.mark.parametrize('wav,exc,match', [
    ([0.1, 0.2], TypeError, r'wav must be a torch.Tensor, got list'),
    (torch.tensor(0.5), ValueError, r'\[C, T\] or \[T\], got 0 dims'),
    (torch.zeros(1, 3, dtype=torch.int16), TypeError, r'floating point tensor, got dtype torch.int16'),
    (torch.tensor([[0.1, float('nan')]]), ValueError, r'NaN or infinite'),
    (torch.tensor([[0.1, float('inf')]]), ValueError, r'NaN or infinite'),
])
def test_normalize_audio_bad_wav(wav, exc, match):
    with pytest.raises(exc, match=match):
        normalize_audio(wav)


def test_normalize_audio_bad_strategy_and_rate():
    wav = torch.zeros(1, 16000)
    with pytest.raises(ValueError, match=r"unknown normalization strategy 'loud'; allowed: clip, peak, rms, loudness"):
        normalize_audio(wav, strategy='loud')
    with pytest.raises(ValueError, match=r"strategy='loudness' needs sample_rate"):
        normalize_audio(wav, strategy='loudness')
    with pytest.raises(ValueError, match=r'sample_rate must be a positive integer \(Hz\), got 0'):
        normalize_audio(wav, strategy='loudness', sample_rate=0)
    with pytest.raises(ValueError, match=r'sample_rate must be a positive integer \(Hz\), got -16000'):
        normalize_loudness(wav, -16000)


# ------------------------------------------------------------------------------------------------ conversion
def test_convert_audio_channels():
    gen = torch.Generator().manual_seed(0)
    stereo = torch.randn(3, 2, 10, generator=gen)
    assert convert_audio_channels(stereo, 2) is stereo
    torch.testing.assert_close(convert_audio_channels(stereo, 1), stereo.mean(dim=1, keepdim=True))
    mono = stereo[:, :1]
    assert torch.equal(convert_audio_channels(mono, 3), mono.repeat(1, 3, 1))
    five = torch.randn(5, 10, generator=gen)
    assert torch.equal(convert_audio_channels(five, 2), five[:2])
    with pytest.raises(ValueError, match=r'cannot convert 2 channels to 3: only mono audio can be upmixed'):
        convert_audio_channels(stereo, 3)
    with pytest.raises(ValueError, match=r'channels must be a positive integer, got 0'):
        convert_audio_channels(stereo, 0)
    with pytest.raises(ValueError, match=r'at least 2 dims'):
        convert_audio_channels(torch.zeros(10), 1)


def test_convert_audio_matches_julius_and_golden():
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 2, 1600, generator=gen)
    out = convert_audio(wav, 16000, 32000, 1)
    assert out.shape == (2, 1, 3200)
    torch.testing.assert_close(out, julius.resample_frac(wav.mean(dim=1, keepdim=True), 16000, 32000))
    assert convert_audio(wav, 16000, 16000.0, 2) is wav
    torch.testing.assert_close(convert_audio(wav, torch.tensor(16000), 32000, 1), out)
    g = load_golden('generate_continuation')  # official convert_audio of the continuation prompt: bit exact
    assert torch.equal(convert_audio(g['prompt_wav'], g['meta']['prompt_sr'], 32000, 1), g['prompt_wav_32k'])


def test_convert_audio_bad_rates():
    with pytest.raises(ValueError, match=r'from_rate must be a positive integer \(Hz\), got 0'):
        convert_audio(torch.zeros(1, 10), 0, 16000, 1)
    with pytest.raises(ValueError, match=r'to_rate must be a positive integer \(Hz\), got 22050.5'):
        convert_audio(torch.zeros(1, 10), 16000, 22050.5, 1)
    with pytest.raises(TypeError, match=r"to_rate must be a positive integer \(Hz\), got '16k'"):
        convert_audio(torch.zeros(1, 10), 16000, '16k', 1)


# ------------------------------------------------------------------------------------------------ PCM
def test_pcm_conversions():
    ints = torch.tensor([-32768, -1, 0, 1, 32767], dtype=torch.int16)
    floats = f32_pcm(ints)
    assert floats.dtype == torch.float32
    assert torch.equal(floats, ints.float() / 32768)
    assert torch.equal(i16_pcm(floats), ints)
    assert f32_pcm(floats) is floats
    assert i16_pcm(ints) is ints
    assert f32_pcm(torch.tensor([2 ** 30], dtype=torch.int32)).item() == 0.5
    # +1.0 would overflow int16: the whole signal is scaled by 32767 instead.
    assert torch.equal(i16_pcm(torch.tensor([1.0, -1.0, 0.5])), torch.tensor([32767, -32767, 16384], dtype=torch.int16))
    with pytest.raises(ValueError, match=r'must lie in \[-1, 1\].*got peak 1.5'):
        i16_pcm(torch.tensor([1.5]))
    with pytest.raises(TypeError, match=r'floating point, int16 or int32, got torch.int64'):
        f32_pcm(torch.tensor([1]))
