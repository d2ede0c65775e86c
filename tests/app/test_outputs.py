"""Files and pictures the apps return: loudness-normalised wav files and the waveform picture."""
import os
import time

import pytest
import torch

from audiocraft.app.outputs import OutputFolder
from audiocraft.app.waveform import envelope, waveform_image
from audiocraft.data.audio import audio_info, audio_read


def test_output_folder_writes_wav_and_cleans_old_files(tmp_path):
    folder = OutputFolder(tmp_path / "out", max_age=60)
    wav = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    path = folder.write_audio(wav, 32000)
    assert path.parent == tmp_path / "out" and path.suffix == ".wav"
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (32000, 1)
    assert info.duration == pytest.approx(0.5, abs=1e-6)
    read, _ = audio_read(path)
    assert read.abs().max() > 0.1  # loudness normalisation raised the quiet noise
    old = folder.write_audio(wav, 32000)
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert folder.clean() == 1
    assert path.exists() and not old.exists()


def test_envelope_min_max_per_column():
    wav = torch.tensor([[0.0, 1.0, -1.0, 0.5, 0.25, -0.25, 0.0, 0.0]])
    low, high = envelope(wav, 4)
    assert low.tolist() == [0.0, -1.0, -0.25, 0.0]
    assert high.tolist() == [1.0, 0.5, 0.25, 0.0]
    low, high = envelope(torch.stack([wav[0], -wav[0]]), 4)  # channel mean: silence
    assert low.abs().max() == 0 and high.abs().max() == 0
    low, _ = envelope(wav, 100)  # never more columns than samples
    assert low.shape == (8,)
    with pytest.raises(ValueError, match=r"wav must be a non-empty \[C, T\] tensor, got shape \[1, 0\]"):
        envelope(torch.zeros(1, 0), 4)


def test_waveform_image_draws_loud_half_and_silent_half():
    pytest.importorskip("PIL", reason="Pillow (installed with the 'app' extra's gradio) is not installed")
    wav = torch.zeros(1, 2000)
    wav[:, 0:1000:2], wav[:, 1:1000:2] = 0.9, -0.9  # first half swings +-0.9, second half silent
    image = waveform_image(wav, 1000, width=200, height=100)
    assert image.size == (200, 100) and image.mode == "RGB"
    pixels = image.load()
    orange = (249, 115, 22)
    # Loud half: the envelope column covers almost the whole plot height around the middle line.
    assert pixels[50, 10] == orange and pixels[50, 75] == orange
    # Silent half: only the middle row is drawn.
    assert pixels[150, 10] == (255, 255, 255) and pixels[150, 75] == (255, 255, 255)
    assert pixels[150, 42] == orange  # plot height 86 -> middle row 42
    with pytest.raises(ValueError, match="at least 16 x 32 pixels"):
        waveform_image(wav, 1000, width=8, height=100)


def test_waveform_image_of_stereo_has_a_lane_per_channel():
    pytest.importorskip("PIL", reason="Pillow (installed with the 'app' extra's gradio) is not installed")
    wav = torch.zeros(2, 2000)
    wav[0, 0::2], wav[0, 1::2] = 0.9, -0.9  # left loud everywhere, right silent
    image = waveform_image(wav, 1000, width=200, height=100)
    pixels = image.load()
    orange, white = (249, 115, 22), (255, 255, 255)
    # plot height 86: lanes of 43 rows; left lane middle row 21, right lane middle row 43 + 21 = 64
    assert pixels[100, 5] == orange and pixels[100, 37] == orange  # the left lane is filled
    assert pixels[100, 50] == white and pixels[100, 80] == white  # the right lane is silent ...
    assert pixels[100, 64] == orange  # ... but for its middle line
    # a mono picture of the same left channel fills the whole plot height instead
    mono = waveform_image(wav[:1], 1000, width=200, height=100).load()
    assert mono[100, 10] == orange and mono[100, 75] == orange
