"""Ogg/Opus (what audio_write(format='ogg') writes) beside Ogg/Vorbis (what Audiocraft writes, through ffmpeg's
libvorbis) on a music-like signal: bit rate, sample rate and channels read back, SNR against the source.

PyAV's FFmpeg has no libvorbis; its only Vorbis encoder is FFmpeg's own ('vorbis', experimental), which takes
exactly 2 channels and ignores the bit rate, so the mono signal is encoded as two identical channels.

    python scripts/compare_ogg_codecs.py [--sample-rate 32000] [--seconds 10]
"""
from __future__ import annotations

import argparse
from fractions import Fraction
import io
import math
import tempfile
from pathlib import Path

import av
import numpy as np
import torch

from audiocraft.data.audio import audio_read, audio_write
from audiocraft.data.audio_utils import convert_audio


def music_like(sample_rate: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """Plucked harmonic notes (8 partials, 2 per second), a hi-hat of noise bursts and a swelling bass: `[1, T]`."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(sample_rate * seconds)) / sample_rate
    out = torch.zeros_like(t)
    notes = [220.0, 277.18, 329.63, 440.0, 369.99, 293.66, 246.94, 196.0]
    for i in range(int(seconds * 2)):
        start = int(i * 0.5 * sample_rate)
        tt = t[start:start + int(0.75 * sample_rate)] - t[start]
        envelope = torch.exp(-3 * tt) * (1 - torch.exp(-200 * tt))
        out[start:start + len(tt)] += envelope * sum((0.6 / k) * torch.sin(2 * math.pi * notes[i % 8] * k * tt + k)
                                                     for k in range(1, 9))
    hat = torch.exp(-60 * (t % 0.25)) * (t % 0.25 < 0.05)
    out += 0.15 * torch.randn(len(t), generator=gen) * hat
    out += 0.3 * torch.sin(2 * math.pi * 55 * t) * (0.5 + 0.5 * torch.sin(math.pi * t))
    return (0.5 * out / out.abs().max())[None].float()


def snr_db(reference: torch.Tensor, decoded: torch.Tensor) -> float:
    """SNR of `decoded` against `reference` (both `[1, T]`, same rate) over their common length."""
    n = min(reference.shape[-1], decoded.shape[-1])
    ref, out = reference[0, :n].double(), decoded[0, :n].double()
    return 10 * math.log10(float((ref ** 2).sum() / ((ref - out) ** 2).sum()))


def ffmpeg_vorbis(wav: torch.Tensor, sample_rate: int) -> tuple[bytes, torch.Tensor, int, int]:
    """Encode `[1, T]` with FFmpeg's own Vorbis encoder (as 2 identical channels) -> (file, first channel read
    back `[1, T]`, rate read back, channels read back)."""
    stereo = np.ascontiguousarray(wav.expand(2, -1).numpy())
    buffer = io.BytesIO()
    with av.open(buffer, 'w', format='ogg') as container:
        stream = container.add_stream('vorbis', rate=sample_rate)
        stream.codec_context.layout = 'stereo'
        stream.codec_context.format = 'fltp'
        stream.codec_context.options = {'strict': 'experimental'}
        frame = av.AudioFrame.from_ndarray(stereo, format='fltp', layout='stereo')
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = buffer.getvalue()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        decoded = np.concatenate([f.to_ndarray()[:1] for f in container.decode(stream)], axis=-1)
    return data, torch.from_numpy(decoded).float(), rate, channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sample-rate', type=int, default=32000)
    parser.add_argument('--seconds', type=float, default=10.0)
    args = parser.parse_args()
    sr, seconds = args.sample_rate, args.seconds
    wav = music_like(sr, seconds)
    rows = []
    data, decoded, rate, channels = ffmpeg_vorbis(wav, sr)
    rows.append(('vorbis (FFmpeg, default)', len(data), rate, channels, snr_db(wav, decoded)))
    with tempfile.TemporaryDirectory() as folder:
        for kbps in (None, 64, 96, 160):
            path = audio_write(Path(folder) / f'opus{kbps}', wav, sr, format='ogg', ogg_rate=kbps, strategy='none')
            decoded, rate = audio_read(path)
            back = convert_audio(decoded, rate, sr, 1)
            label = 'opus (audio_write, default)' if kbps is None else f'opus (audio_write, ogg_rate={kbps})'
            rows.append((label, path.stat().st_size, rate, decoded.shape[0], snr_db(wav, back)))
    print(f'{seconds:g} s music-like mono signal at {sr} Hz')
    print(f"{'codec':32s} {'kbps':>5s} {'rate read back':>14s} {'channels':>8s} {'SNR dB':>7s}")
    for label, size, rate, channels, snr in rows:
        print(f'{label:32s} {size * 8 / seconds / 1000:5.0f} {rate:14d} {channels:8d} {snr:7.1f}')


if __name__ == '__main__':
    main()
