"""Render the demo melodies in `assets/` (used as melody prompts in the README, notebook and demos).

- `assets/bach.mp3`: the first 8 bars of J. S. Bach's Prelude in C major, BWV 846 (Well-Tempered Clavier I),
  the broken-chord pattern on a soft piano-like tone.
- `assets/bolero_ravel.mp3`: the first theme of Ravel's Boléro, approximated by ear, on a flute-like tone over
  the snare-drum ostinato and a plucked C/G bass.

Both are synthesised here from note lists (additive harmonics, ADSR envelopes, a little convolution reverb),
mono at 32 kHz, and written with `audiocraft.data.audio.audio_write(format='mp3')`. Deterministic (seeded).

Usage: python scripts/make_assets.py [--out assets]
"""
from __future__ import annotations

import argparse
import typing as tp
from pathlib import Path

import numpy as np
import torch

from audiocraft.data.audio import audio_write

SR = 32000
NOTE_INDEX = {'C': 0, 'D': 2, 'E': 4, 'F': 5, 'G': 7, 'A': 9, 'B': 11}


def midi(name: str) -> int:
    """'C4' -> 60, 'F#4' -> 66, 'Bb3' -> 58."""
    letter, rest = name[0], name[1:]
    shift = 0
    while rest and rest[0] in '#b':
        shift += 1 if rest[0] == '#' else -1
        rest = rest[1:]
    return 12 * (int(rest) + 1) + NOTE_INDEX[letter] + shift


def hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def adsr(n: int, attack: float, decay: float, sustain: float, release: float, held: int) -> np.ndarray:
    """Envelope of `n` samples: attack/decay/release in seconds, sustain level, note held for `held` samples."""
    t = np.arange(n) / SR
    env = np.where(t < attack, t / max(attack, 1e-9), 1.0)
    env = np.where(t >= attack, sustain + (1 - sustain) * np.exp(-(t - attack) / max(decay, 1e-9)), env)
    off = held / SR
    level_at_off = float(env[min(held, n - 1)])
    return np.where(t > off, level_at_off * np.exp(-(t - off) / max(release, 1e-9)), env)


def piano(note: int, seconds: float, velocity: float = 1.0) -> np.ndarray:
    """A soft struck-string tone: decaying harmonics (higher ones faster), slight inharmonicity."""
    f0 = hz(note)
    n = int((seconds + 1.2) * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    for k in range(1, 9):
        fk = f0 * k * np.sqrt(1 + 1e-4 * k * k)
        if fk > SR / 2 - 500:
            break
        amp = 1.0 / k ** 1.6
        decay = 1.8 / (1 + 0.5 * k) * (440 / f0) ** 0.3
        out += amp * np.exp(-t / decay) * np.sin(2 * np.pi * fk * t + 0.3 * k)
    env = adsr(n, 0.004, 0.3, 0.6, 0.25, int(seconds * SR))
    return velocity * out * env


def flute(note: int, seconds: float, velocity: float = 1.0, seed: int = 0) -> np.ndarray:
    """A breathy, sustained tone: few harmonics, delayed vibrato, a touch of breath noise."""
    f0 = hz(note)
    n = int((seconds + 0.3) * SR)
    t = np.arange(n) / SR
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.2 * t) * np.clip(t / 0.4, 0, 1)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / SR
    out = np.sin(phase) + 0.25 * np.sin(2 * phase) + 0.08 * np.sin(3 * phase) + 0.03 * np.sin(4 * phase)
    rng = np.random.default_rng(seed)
    breath = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode='same') * 0.03
    env = adsr(n, 0.05, 0.2, 0.85, 0.12, int(seconds * SR))
    return velocity * (out + breath) * env


def pluck(note: int, velocity: float = 1.0) -> np.ndarray:
    """A pizzicato-like bass: quickly decaying harmonics."""
    f0 = hz(note)
    n = int(0.9 * SR)
    t = np.arange(n) / SR
    out = sum(np.exp(-t * (4 + 3 * k)) * np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return velocity * out * adsr(n, 0.003, 0.1, 1.0, 0.1, n)


def snare(velocity: float, rng: np.random.Generator) -> np.ndarray:
    """A soft brushed snare hit: band-limited noise with a fast decay plus a short body tone."""
    n = int(0.18 * SR)
    t = np.arange(n) / SR
    noise = rng.standard_normal(n)
    noise = noise - np.convolve(noise, np.ones(6) / 6, mode='same')  # crude band-pass: high-pass ...
    noise = np.convolve(noise, np.ones(3) / 3, mode='same')  # ... then soften the top
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.03)
    return velocity * (0.5 * noise * np.exp(-t / 0.045) + 0.4 * body)


def reverb(x: np.ndarray, seconds: float = 1.6, wet: float = 0.18, seed: int = 1) -> np.ndarray:
    """Convolution with a decaying, darkening noise tail."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-t * 6.9 / seconds)
    ir = np.convolve(ir, np.hanning(24) / np.hanning(24).sum(), mode='same')
    ir[: int(0.012 * SR)] = 0  # pre-delay
    ir /= np.sqrt((ir ** 2).sum())
    size = 1 << int(np.ceil(np.log2(len(x) + n)))
    tail = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return (1 - wet) * x + wet * tail


def mix(events: tp.Iterable[tuple[float, np.ndarray]], total_seconds: float) -> np.ndarray:
    out = np.zeros(int(total_seconds * SR))
    for start, sound in events:
        i = int(start * SR)
        sound = sound[: max(0, len(out) - i)]
        out[i: i + len(sound)] += sound
    return out


def fade_out(x: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    x = x.copy()
    x[-n:] *= np.linspace(1, 0, n) ** 2
    return x


# ------------------------------------------------------------------------------------------------ Bach
# Bars 1-8 of BWV 846: five notes per bar; each half bar plays n1 n2 n3 n4 n5 n3 n4 n5 in sixteenths,
# n1 held for the half bar and n2 from the second sixteenth (as the two lower voices are notated).
BACH_BARS = [
    ('C4', 'E4', 'G4', 'C5', 'E5'),    # C
    ('C4', 'D4', 'A4', 'D5', 'F5'),    # Dm7/C
    ('B3', 'D4', 'G4', 'D5', 'F5'),    # G7/B
    ('C4', 'E4', 'G4', 'C5', 'E5'),    # C
    ('C4', 'E4', 'A4', 'E5', 'A5'),    # Am/C
    ('C4', 'D4', 'F#4', 'A4', 'D5'),   # D7/C
    ('B3', 'D4', 'G4', 'D5', 'G5'),    # G/B
    ('B3', 'C4', 'E4', 'G4', 'C5'),    # Cmaj7/B
]


def render_bach(bpm: float = 76.0) -> np.ndarray:
    sixteenth = 60.0 / bpm / 4
    events = []
    for bar, chord in enumerate(BACH_BARS):
        notes = [midi(name) for name in chord]
        for half in range(2):
            start = (bar * 16 + half * 8) * sixteenth
            events.append((start, piano(notes[0], 8 * sixteenth, 0.55)))
            events.append((start + sixteenth, piano(notes[1], 7 * sixteenth, 0.45)))
            for step, idx in enumerate((2, 3, 4, 2, 3, 4)):
                events.append((start + (2 + step) * sixteenth, piano(notes[idx], 1.5 * sixteenth, 0.4)))
    last = len(BACH_BARS) * 16 * sixteenth
    events.append((last, np.sum([piano(midi(n), 2.0, 0.3) for n in ('C3', 'C4', 'E4', 'G4', 'C5')], axis=0)))
    return fade_out(reverb(mix(events, last + 2.6)), 1.0)


# ------------------------------------------------------------------------------------------------ Ravel
# Boléro, theme A (flute), approximated by ear: (note, length in beats), 3/4 time, 8 bars.
BOLERO_THEME = [
    ('C5', 1.5), ('B4', .25), ('C5', .25), ('D5', .25), ('C5', .25), ('B4', .25), ('A4', .25),
    ('C5', .5), ('C5', .25), ('A4', .25), ('C5', 2.0),
    ('C5', .5), ('B4', .25), ('C5', .25), ('A4', .5), ('G4', .25), ('E4', .25), ('F4', .5), ('G4', .5),
    ('A4', 3.0),
    ('G4', .5), ('F4', .25), ('E4', .25), ('D4', .5), ('E4', .5), ('F4', .5), ('G4', .5),
    ('A4', .5), ('G4', 2.5),
    ('G4', .25), ('A4', .25), ('B4', .25), ('A4', .25), ('G4', .25), ('F4', .25), ('E4', .25), ('D4', .25),
    ('E4', .5), ('D4', .5),
    ('C4', 3.0),
]
# The snare ostinato over two bars, in triplet sixteenths (12 per beat would be too fine; 6 per beat here):
# eighth, 3 triplet-16ths, eighth, 3 triplet-16ths, eighth, eighth | eighth, 3, eighth, 3, 3, 3.
SNARE_BAR_A = [0, 3, 4, 5, 6, 9, 10, 11, 12, 15]
SNARE_BAR_B = [0, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17]


def render_bolero(bpm: float = 72.0, intro_bars: int = 2) -> np.ndarray:
    beat = 60.0 / bpm
    bars = intro_bars + int(round(sum(d for _, d in BOLERO_THEME) / 3))
    rng = np.random.default_rng(7)
    events = []
    for bar in range(bars):
        start = bar * 3 * beat
        pattern = SNARE_BAR_A if bar % 2 == 0 else SNARE_BAR_B
        for pos in pattern:
            accent = 1.0 if pos % 6 == 0 else 0.7
            events.append((start + pos * beat / 6, snare(0.06 * accent, rng)))
        events.append((start, pluck(midi('C3'), 0.5)))
        events.append((start + 2 * beat, pluck(midi('G2'), 0.45)))
    t = intro_bars * 3 * beat
    for i, (name, beats) in enumerate(BOLERO_THEME):
        events.append((t, flute(midi(name), beats * beat * 0.97, 0.45, seed=i)))
        t += beats * beat
    return fade_out(reverb(mix(events, bars * 3 * beat + 1.5), wet=0.22), 1.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=Path(__file__).resolve().parents[1] / 'assets')
    parser.add_argument('--mp3-rate', type=int, default=128, help='mp3 bit rate in kbps')
    args = parser.parse_args()
    for name, render in (('bach', render_bach), ('bolero_ravel', render_bolero)):
        wav = torch.from_numpy(render()).float()[None]
        path = audio_write(args.out / name, wav, SR, format='mp3', mp3_rate=args.mp3_rate, strategy='peak',
                           peak_clip_headroom_db=1.5, metadata={'title': name, 'comment': 'rendered by make_assets.py'})
        print(f'{path}: {wav.shape[-1] / SR:.1f} s, {path.stat().st_size / 1024:.0f} KiB')


if __name__ == '__main__':
    main()
