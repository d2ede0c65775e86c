"""Synthesised music for the data and training tests: short 16-bit wav files with sidecar descriptions."""
from __future__ import annotations

import math
from pathlib import Path
import typing as tp
import wave

import numpy as np


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples [C, T] in [-1, 1] as 16-bit PCM with the stdlib ``wave`` module."""
    samples = np.atleast_2d(samples)
    pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(samples.shape[0])
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(pcm.T.tobytes())
    return path


def notes(seconds: float, sample_rate: int, midi: tp.Sequence[int], seed: int = 0, channels: int = 1) -> np.ndarray:
    """A melody of equal-length notes (3 harmonics each) plus a little noise: [C, T] float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    per_note = max(1, n // len(midi))
    for i, m in enumerate(midi):
        f = 440.0 * 2 ** ((m - 69) / 12)
        seg = slice(i * per_note, n if i == len(midi) - 1 else (i + 1) * per_note)
        out[seg] = sum(0.3 / (h + 1) * np.sin(2 * math.pi * f * (h + 1) * t[seg]) for h in range(3))
    out = out + 0.01 * rng.standard_normal(n)
    return np.repeat(out[None], channels, axis=0).astype(np.float32)


def make_music_folder(root: Path, count: int = 4, seconds: float = 1.0, sample_rate: int = 32000,
                      descriptions: tp.Optional[tp.Sequence[str]] = None) -> tp.List[Path]:
    """``count`` wav files ``track{i}.wav`` with ``track{i}.txt`` descriptions; returns the wav paths."""
    descriptions = descriptions or ["calm piano melody", "upbeat synth pop", "slow ambient drone",
                                    "fast rock riff", "jazzy bass line", "dreamy lofi chords"]
    paths = []
    for i in range(count):
        base = 48 + 5 * i
        wav = notes(seconds, sample_rate, [base, base + 4, base + 7, base + 12], seed=i)
        path = write_wav(root / f"track{i}.wav", wav, sample_rate)
        (root / f"track{i}.txt").write_text(descriptions[i % len(descriptions)] + "\n")
        paths.append(path)
    return paths
