"""Chromagram extraction: the melody features of MusicGen-melody.

A waveform goes through a power spectrogram (periodic Hann window, reflect-padded frames, normalised by the
window energy), then a chroma filterbank folds the FFT bins onto the 12 pitch classes, and each frame is
normalised by its largest bin (``norm=inf``). With ``argmax=True`` each frame becomes a one-hot vector of its
dominant pitch class.

Two dependencies of the official implementation are replaced by small local code here:

- ``torchaudio.transforms.Spectrogram`` -> :class:`Spectrogram` (same parameters and the same numbers,
  computed with :func:`torch.stft`; its ``window`` buffer keeps the checkpoint key ``chroma.spec.window``);
- ``librosa.filters.chroma`` -> :func:`chroma_filterbank` (librosa is not a dependency: it pulls numba and
  its LLVM toolchain for a single 12 x (n_fft/2 + 1) matrix that takes a few lines of numpy).
"""
from __future__ import annotations

import math
import typing as tp

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..utils.validation import ArgumentError, ArgumentTypeError


def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0,
                      ctroct: float = 5.0, octwidth: tp.Optional[float] = 2.0, base_c: bool = True) -> np.ndarray:
    """Chroma filterbank with the numbers of ``librosa.filters.chroma`` (norm=2, float32 output).

    Every FFT bin ``k`` is placed on a fractional pitch-class axis (``n_chroma`` per octave, relative to A440
    shifted by ``tuning`` bins); each chroma row is a Gaussian bump around its pitch class, wrapped over the
    octave and as wide as the bin spacing at that frequency. Columns are L2-normalised, then weighted by a
    Gaussian over octaves centred on octave ``ctroct`` (std ``octwidth`` octaves) and, with ``base_c``, rows are
    rotated so that row 0 is C instead of A.

    Returns:
        np.ndarray [n_chroma, n_fft // 2 + 1], float32.
    """
    if n_fft < 2:
        raise ArgumentError(f"n_fft must be >= 2, got {n_fft}.")
    if n_chroma < 1:
        raise ArgumentError(f"n_chroma must be >= 1, got {n_chroma}.")
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    # Position of every FFT bin but DC on the pitch-class axis (A440 / 16 = A0 is octave 0).
    freqs = np.arange(1, n_fft, dtype=np.float64) * (float(sample_rate) / n_fft)
    pitch = n_chroma * np.log2(freqs / (a440 / 16))
    # DC gets a made-up position 1.5 octaves below the first bin.
    pitch = np.concatenate([[pitch[0] - 1.5 * n_chroma], pitch])
    # Width of each bin in pitch-class units (at least 1); the last one is 1.
    width = np.concatenate([np.maximum(np.diff(pitch), 1.0), [1.0]])

    half = float(np.round(n_chroma / 2))
    classes = np.arange(n_chroma, dtype=np.float64)[:, None]
    # Signed distance from each bin to each pitch class, wrapped to [-half, n_chroma - half).
    dist = np.remainder(pitch[None, :] - classes + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2.0 * dist / width[None, :]) ** 2)

    col_norm = np.sqrt(np.sum(weights ** 2, axis=0, keepdims=True))
    col_norm[col_norm < np.finfo(weights.dtype).tiny] = 1.0
    weights = weights / col_norm
    if octwidth is not None:
        weights = weights * np.exp(-0.5 * ((pitch / n_chroma - ctroct) / octwidth) ** 2)[None, :]
    if base_c:
        weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, :n_fft // 2 + 1], dtype=np.float32)


class Spectrogram(nn.Module):
    """Power spectrogram with ``torchaudio.transforms.Spectrogram`` semantics (``pad=0``, one-sided).

    The complex STFT (periodic Hann window of ``win_length``, ``center`` frames reflect-padded by n_fft // 2)
    is divided by ``sqrt(sum(window ** 2))`` when ``normalized``, then ``|.| ** power`` is taken.

    Args:
        n_fft: FFT size.
        win_length: window length (default n_fft).
        hop_length: hop between frames (default win_length // 2).
        power: exponent of the magnitude (2 = power spectrum).
        normalized: divide by the window's L2 norm.
        center: pad both sides by n_fft // 2 so frame t is centred on sample t * hop_length.
        pad_mode: padding mode used with ``center``.
    """

    window: torch.Tensor

    def __init__(self, n_fft: int, win_length: tp.Optional[int] = None, hop_length: tp.Optional[int] = None,
                 power: float = 2.0, normalized: bool = True, center: bool = True, pad_mode: str = "reflect",
                 device: tp.Union[torch.device, str, None] = None) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.power = power
        self.normalized = normalized
        self.center = center
        self.pad_mode = pad_mode
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True, device=device))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [..., T] float -> spectrogram [..., n_fft // 2 + 1, frames] float."""
        lead = wav.shape[:-1]
        flat = wav.reshape(-1, wav.shape[-1])
        spec = torch.stft(flat, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=self.center, pad_mode=self.pad_mode, normalized=False,
                          onesided=True, return_complex=True)
        spec = spec.reshape(lead + spec.shape[-2:])
        if self.normalized:
            spec = spec / self.window.pow(2.0).sum().sqrt()
        return spec.abs().pow(self.power)


class ChromaExtractor(nn.Module):
    """Chroma features of a mono waveform (Audiocraft's ``ChromaExtractor``).

    Args:
        sample_rate: sample rate of the input.
        n_chroma: number of pitch classes.
        radix2_exp: window length is ``2 ** radix2_exp`` unless ``winlen`` is given.
        nfft: FFT size (default: the window length).
        winlen: window length.
        winhop: hop between frames (default: window length // 4).
        argmax: turn every frame into the one-hot vector of its strongest pitch class.
        norm: p of the per-frame normalisation over the chroma bins (default inf: divide by the max).
        device: device of the window and filterbank buffers.

    Buffers: ``spec.window`` (persistent, in checkpoints) and ``fbanks`` [n_chroma, nfft // 2 + 1]
    (not persistent, rebuilt from the arguments).
    """

    fbanks: torch.Tensor

    def __init__(self, sample_rate: int, n_chroma: int = 12, radix2_exp: int = 12, nfft: tp.Optional[int] = None,
                 winlen: tp.Optional[int] = None, winhop: tp.Optional[int] = None, argmax: bool = False,
                 norm: float = math.inf, device: tp.Union[torch.device, str, None] = None) -> None:
        super().__init__()
        for name, value in (("sample_rate", sample_rate), ("n_chroma", n_chroma), ("radix2_exp", radix2_exp)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArgumentError(f"{name} must be a positive int, got {value!r}.")
        self.winlen = winlen or 2 ** radix2_exp
        self.nfft = nfft or self.winlen
        self.winhop = winhop or (self.winlen // 4)
        if self.winlen > self.nfft:
            raise ArgumentError(f"winlen ({self.winlen}) must not exceed nfft ({self.nfft}).")
        self.sample_rate = sample_rate
        self.n_chroma = n_chroma
        self.norm = norm
        self.argmax = argmax
        fbanks = torch.from_numpy(chroma_filterbank(sample_rate, self.nfft, n_chroma=n_chroma))
        self.register_buffer("fbanks", fbanks.to(device), persistent=False)
        self.spec = Spectrogram(n_fft=self.nfft, win_length=self.winlen, hop_length=self.winhop, power=2,
                                normalized=True, center=True, pad_mode="reflect", device=device)

    def num_frames(self, length: int) -> int:
        """Number of chroma frames produced for an input of ``length`` samples."""
        return 1 + max(int(length), self.nfft) // self.winhop

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, T] or [B, T] float -> chroma [B, frames, n_chroma] float, frames = 1 + max(T, nfft) // winhop.

        Inputs shorter than nfft (e.g. a nullified [B, 1, 1] melody) are zero-padded on both sides to nfft.
        """
        if not isinstance(wav, torch.Tensor):
            raise ArgumentTypeError(f"wav must be a torch.Tensor, got {type(wav).__name__}.")
        if wav.dim() == 3:
            if wav.shape[1] != 1:
                raise ArgumentError(f"wav must be mono [B, 1, T] (or [B, T]), got shape {list(wav.shape)}.")
            wav = wav[:, 0]
        elif wav.dim() != 2:
            raise ArgumentError(f"wav must have shape [B, 1, T] or [B, T], got shape {list(wav.shape)}.")
        if not wav.is_floating_point():
            raise ArgumentTypeError(f"wav must be a floating point tensor, got dtype {wav.dtype}.")
        if wav.dtype != self.fbanks.dtype:  # e.g. float64 melodies: computed in the filterbank's dtype
            wav = wav.to(self.fbanks.dtype)
        length = wav.shape[-1]
        if length < self.nfft:
            missing = self.nfft - length
            wav = F.pad(wav, (missing // 2, missing - missing // 2))
        spec = self.spec(wav)  # [B, F, frames]
        raw = torch.einsum("cf,...ft->...ct", self.fbanks, spec)  # [B, n_chroma, frames]
        chroma = F.normalize(raw, p=self.norm, dim=-2, eps=1e-6).transpose(1, 2)  # [B, frames, n_chroma]
        if self.argmax:
            best = chroma.argmax(dim=-1, keepdim=True)
            chroma = torch.zeros_like(chroma).scatter_(-1, best, 1.0)
        return chroma
