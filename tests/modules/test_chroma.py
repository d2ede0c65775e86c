"""ChromaExtractor, its spectrogram and its filterbank, against the official goldens (chroma.pt)."""
import math

import numpy as np
import pytest
import torch

from audiocraft.modules.chroma import ChromaExtractor, Spectrogram, chroma_filterbank


@pytest.fixture(scope="module")
def chroma_golden(golden):
    return golden("chroma")


def make_extractor(argmax: bool) -> ChromaExtractor:
    return ChromaExtractor(sample_rate=32000, n_chroma=12, radix2_exp=14, argmax=argmax)


def test_filterbank_matches_librosa_golden(chroma_golden):
    fbanks = chroma_filterbank(32000, 16384, n_chroma=12)
    assert fbanks.dtype == np.float32 and fbanks.shape == (12, 8193)
    assert np.abs(fbanks - chroma_golden["fbanks"].numpy()).max() <= 1e-6
    assert torch.equal(make_extractor(False).fbanks, chroma_golden["fbanks"])


def test_filterbank_rows_follow_pitch_classes():
    # A pure bin at 261.63 Hz (C4) must weigh most on row 0 (C), at 440 Hz on row 9 (A).
    sr, n_fft = 32000, 16384
    fb = chroma_filterbank(sr, n_fft)
    for freq, row in ((261.63, 0), (440.0, 9), (329.63, 4)):
        assert int(np.argmax(fb[:, round(freq * n_fft / sr)])) == row
    # Without rotation, row 0 is A.
    unrotated = chroma_filterbank(sr, n_fft, base_c=False)
    assert np.array_equal(np.roll(unrotated, -3, axis=0), fb)


def test_spectrogram_equals_hand_computed_frame():
    torch.manual_seed(0)
    wav = torch.randn(1, 300)
    spec = Spectrogram(n_fft=64, win_length=64, hop_length=16, power=2, normalized=True)
    out = spec(wav)
    assert out.shape == (1, 33, 1 + 300 // 16)
    # Frame 5 is centred on sample 80: samples 48..111 (no padding involved), periodic Hann, rfft.
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(64, dtype=torch.float64) / 64)
    frame = wav[0, 48:112].double() * window
    expected = torch.fft.rfft(frame).abs() ** 2 / (window ** 2).sum()
    assert torch.allclose(out[0, :, 5].double(), expected, atol=1e-5, rtol=1e-5)
    # Frame 0 uses reflect padding: sample -k is sample k.
    padded = torch.cat([wav[0, 1:33].flip(0), wav[0, :32]]).double() * window
    assert torch.allclose(out[0, :, 0].double(), torch.fft.rfft(padded).abs() ** 2 / (window ** 2).sum(),
                          atol=1e-5, rtol=1e-5)


def test_window_is_persistent_buffer():
    extractor = make_extractor(True)
    assert list(extractor.state_dict()) == ["spec.window"]
    assert torch.equal(extractor.spec.window, torch.hann_window(16384, periodic=True))


def test_argmax_chroma_matches_golden_exactly(chroma_golden):
    with torch.no_grad():
        chroma = make_extractor(True)(chroma_golden["melody_wav"])
    assert chroma.shape == (2, 8, 12)
    assert torch.equal(chroma, chroma_golden["chroma_argmax_direct"])


def test_soft_chroma_matches_golden(chroma_golden):
    with torch.no_grad():
        chroma = make_extractor(False)(chroma_golden["melody_wav"])
    assert (chroma - chroma_golden["chroma_soft_direct"]).abs().max() <= 1e-6
    # inf-norm: every frame's largest bin is 1.
    assert torch.allclose(chroma.amax(dim=-1), torch.ones(2, 8))


def test_two_dim_input_gives_same_chroma(chroma_golden):
    wav = chroma_golden["melody_wav"]
    extractor = make_extractor(False)
    assert torch.equal(extractor(wav[:, 0]), extractor(wav))


@pytest.mark.parametrize("length", [1, 100, 16383, 16384, 20000, 960000])
def test_num_frames_matches_output(length):
    extractor = make_extractor(True)
    assert extractor(torch.zeros(1, 1, length)).shape[1] == extractor.num_frames(length)
    assert extractor.num_frames(960000) == 235


def test_short_input_is_zero_padded_on_both_sides():
    extractor = ChromaExtractor(sample_rate=8000, radix2_exp=8, argmax=False)  # nfft 256
    torch.manual_seed(1)
    short = torch.randn(1, 1, 101)  # 155 missing samples: 77 before, 78 after
    padded = torch.nn.functional.pad(short, (77, 78))
    assert torch.equal(extractor(short), extractor(padded))


def test_silence_gives_bin_zero_one_hot():
    chroma = make_extractor(True)(torch.zeros(1, 1, 1))
    assert chroma.shape == (1, 5, 12)
    assert torch.equal(chroma[..., 0], torch.ones(1, 5)) and chroma[..., 1:].abs().sum() == 0


def test_bad_inputs():
    extractor = make_extractor(True)
    with pytest.raises(ValueError, match=r"mono \[B, 1, T\].*\[1, 2, 100\]"):
        extractor(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match=r"shape \[B, 1, T\] or \[B, T\].*\[100\]"):
        extractor(torch.zeros(100))
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        extractor([0.0] * 10)
    with pytest.raises(ValueError, match="sample_rate must be a positive int, got 0"):
        ChromaExtractor(sample_rate=0)
    with pytest.raises(ValueError, match=r"winlen \(4096\) must not exceed nfft \(1024\)"):
        ChromaExtractor(sample_rate=32000, nfft=1024)
