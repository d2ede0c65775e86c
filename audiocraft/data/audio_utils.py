"""Waveform helpers: channel and sample-rate conversion, normalisation, PCM conversion.

Waveforms are float tensors `[..., C, T]` (channels, then time). The normalisation functions work on a
single clip `[C, T]` (a 1-D `[T]` clip is treated as mono and keeps its shape).
"""
from __future__ import annotations

import logging
import math
import numbers

import torch

from .loudness import integrated_loudness
from ..utils.validation import ArgumentError, ArgumentTypeError

logger = logging.getLogger(__name__)

NORMALIZATION_STRATEGIES = ('clip', 'peak', 'rms', 'loudness', 'none')
MAX_HEADROOM_DB = 200.0  # |headroom| limit: gains of 10 ** (200 / 20) = 1e10 stay finite in float32


# ------------------------------------------------------------------------------------------------ validation
def _shown(value: object) -> str:
    """``repr`` of a value for an error message, kept short."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python prints
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= 80 else text[:77] + '...'


def _check_db(value: object, name: str) -> float:
    """A finite number of decibels within +-`MAX_HEADROOM_DB`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a number of dB, got {_shown(value)} ({type(value).__name__})")
    try:
        db = float(value)
    except OverflowError:
        db = math.inf
    if not math.isfinite(db) or abs(db) > MAX_HEADROOM_DB:
        raise ArgumentError(f"{name} must be a finite number of dB in [-{MAX_HEADROOM_DB:g}, {MAX_HEADROOM_DB:g}], "
                            f"got {_shown(value)}")
    return db


def _check_tensor(wav: object, name: str = 'wav') -> torch.Tensor:
    if not isinstance(wav, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(wav).__name__}")
    return wav


def _check_float_clip(wav: object, name: str = 'wav', batched: bool = False) -> torch.Tensor:
    """A finite floating point clip `[C, T]` or `[T]` (with `batched`, any leading dimensions: `[..., C, T]`)."""
    wav = _check_tensor(wav, name)
    if not wav.dtype.is_floating_point:
        raise ArgumentTypeError(f"{name} must be a floating point tensor, got dtype {wav.dtype}")
    if wav.dim() == 0 or (wav.dim() > 2 and not batched):
        raise ArgumentError(f"{name} must have shape [C, T] or [T], got {wav.dim()} dims with shape {list(wav.shape)}")
    if wav.numel() and not bool(torch.isfinite(wav).all()):
        raise ArgumentError(f"{name} contains NaN or infinite values; only finite samples can be normalized or written")
    return wav


# Bounds on what users can ask for: beyond them, buffers (repeated channels, resampling windows) grow without limit.
MAX_SAMPLE_RATE = 10 ** 6
MAX_CHANNELS = 1024
MAX_DOWNSAMPLING = 1024


def _check_sample_rate(sample_rate: object, name: str = 'sample_rate') -> int:
    """A positive whole number of Hz (int, a float with no fractional part, or a one-element tensor of those)."""
    if isinstance(sample_rate, torch.Tensor) and sample_rate.numel() == 1:
        sample_rate = sample_rate.item()
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a positive integer (Hz), got {_shown(sample_rate)}")
    try:
        value = float(sample_rate)
    except OverflowError:  # an int beyond the float range
        raise ArgumentError(f"{name} must be a positive integer (Hz), got {_shown(sample_rate)}") from None
    if not math.isfinite(value) or value <= 0 or not value.is_integer():
        raise ArgumentError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if value > MAX_SAMPLE_RATE:
        raise ArgumentError(f"{name} must be at most {MAX_SAMPLE_RATE} Hz, got {_shown(sample_rate)}")
    return int(value)


def _check_channels(channels: object, name: str = 'channels') -> int:
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or int(channels) < 1:
        raise ArgumentError(f"{name} must be a positive integer, got {_shown(channels)}")
    if int(channels) > MAX_CHANNELS:
        raise ArgumentError(f"{name} must be at most {MAX_CHANNELS}, got {_shown(channels)}")
    return int(channels)


# ------------------------------------------------------------------------------------------------ conversion
def convert_audio_channels(wav: torch.Tensor, channels: int = 2) -> torch.Tensor:
    """Change the number of channels of `wav` `[..., C, T]` to `channels` -> `[..., channels, T]`.

    Same count: unchanged. To mono: mean over channels. From mono: the channel is repeated. From more
    channels than asked (not mono): the first `channels` are kept. Upmixing a non-mono signal is an error.
    """
    wav = _check_tensor(wav)
    channels = _check_channels(channels)
    if wav.dim() < 2:
        raise ArgumentError(f"wav must have shape [..., C, T] (at least 2 dims), got shape {list(wav.shape)}")
    src_channels = wav.shape[-2]
    if src_channels == 0:
        raise ArgumentError(f"wav has no channel (shape {list(wav.shape)}); it must have shape [..., C, T] with C >= 1")
    if src_channels == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)
    if src_channels == 1:
        return wav.expand(*wav.shape[:-2], channels, wav.shape[-1])
    if src_channels > channels:
        return wav[..., :channels, :]
    raise ArgumentError(f"cannot convert {src_channels} channels to {channels}: only mono audio can be upmixed "
                        f"(allowed: any count -> 1, 1 -> any count, N -> fewer than N)")


def convert_audio(wav: torch.Tensor, from_rate: float, to_rate: float, to_channels: int) -> torch.Tensor:
    """Convert `wav` `[..., C, T]` at `from_rate` Hz to `to_channels` channels at `to_rate` Hz.

    Channels are converted first (see `convert_audio_channels`), then the signal is resampled with
    `julius.resample_frac`. Returns `[..., to_channels, T']` with `T' = int(T * to_rate / from_rate)`.
    """
    from_rate = _check_sample_rate(from_rate, 'from_rate')
    to_rate = _check_sample_rate(to_rate, 'to_rate')
    wav = convert_audio_channels(wav, to_channels)
    if from_rate == to_rate:
        return wav
    if not wav.dtype.is_floating_point:
        raise ArgumentTypeError(f"wav must be a floating point tensor to be resampled, got dtype {wav.dtype}")
    if from_rate > MAX_DOWNSAMPLING * to_rate:  # the sinc window grows with the ratio (1e6 -> 1 Hz: GBs)
        raise ArgumentError(f"from_rate / to_rate must be at most {MAX_DOWNSAMPLING}, got {from_rate} / {to_rate} Hz")
    if wav.shape[-1] == 0:  # nothing to resample (julius cannot reshape an empty signal)
        return wav.new_zeros(wav.shape)
    old, new, _ = _reduced(from_rate, to_rate)
    if new > MAX_JULIUS_PHASES or _julius_kernel_size(from_rate, to_rate) > MAX_JULIUS_KERNEL:
        return resample_direct(wav, from_rate, to_rate)
    import julius  # imported when first needed: ~0.15 s off `import audiocraft`
    return julius.resample_frac(wav, from_rate, to_rate)


# ------------------------------------------------------------------------------------------------ resampling
_ZEROS, _ROLLOFF = 24, 0.945  # julius.resample_frac's defaults
# julius builds one kernel row per output phase: [to_rate / g, 2 * width + from_rate / g] floats (g = gcd), in
# a Python loop over the rows. Fine for usual rates (44.1k -> 32k: 320 x 493); for coprime rates such as 44101 ->
# 32000 it would be 32000 x 44153 floats (5.6 GB) and 32000 Python iterations. Beyond these many kernel floats
# or rows (phases), `resample_direct` is used.
MAX_JULIUS_KERNEL = 1 << 22
MAX_JULIUS_PHASES = 2048


def _reduced(from_rate: int, to_rate: int) -> tuple[int, int, int]:
    """(old, new, width) of julius: the rates divided by their gcd and the half width of the sinc window."""
    gcd = math.gcd(from_rate, to_rate)
    old, new = from_rate // gcd, to_rate // gcd
    return old, new, math.ceil(_ZEROS * old / (min(old, new) * _ROLLOFF))


def _julius_kernel_size(from_rate: int, to_rate: int) -> int:
    old, new, width = _reduced(from_rate, to_rate)
    return new * (2 * width + old)


def resample_direct(wav: torch.Tensor, from_rate: int, to_rate: int, block_taps: int = 1 << 22) -> torch.Tensor:
    """Resample `wav` `[..., T]` like `julius.resample_frac` (same windowed sinc: 24 zero crossings, roll-off
    0.945, each output's weights normalised to sum to 1, edges replicated, `int(T * to_rate / from_rate)`
    outputs), computing each output's taps on the fly instead of building the per-phase kernel table, so memory
    does not grow with the product of coprime rates. Equal to julius up to float rounding."""
    old, new, width = _reduced(from_rate, to_rate)
    cutoff = min(old, new) * _ROLLOFF
    length = wav.shape[-1]
    x = wav.reshape(-1, length)
    out_length = int(new * length / old)
    taps = torch.arange(-width, width + 2, device=wav.device)  # around floor(centre); the rest weigh ~0
    outputs = []
    step = max(1, block_taps // len(taps))
    for start in range(0, out_length, step):
        n = torch.arange(start, min(start + step, out_length), device=wav.device, dtype=torch.float64)
        frame, phase = torch.div(n, new, rounding_mode='floor'), torch.remainder(n, new)
        centre = phase * old / new  # position of output n in input samples, relative to frame * old
        index = torch.floor(centre)[:, None] + taps[None, :]  # [n, taps], relative to frame * old
        t = ((index / old - phase[:, None] / new) * cutoff).clamp(-_ZEROS, _ZEROS) * math.pi
        weights = torch.special.sinc(t / math.pi) * torch.cos(t / _ZEROS / 2) ** 2
        weights = weights / weights.sum(dim=-1, keepdim=True)
        positions = (frame[:, None] * old + index).long().clamp(0, length - 1)  # replicated edges
        outputs.append(torch.einsum('bnk,nk->bn', x[:, positions], weights.to(x.dtype)))
    y = torch.cat(outputs, dim=-1) if outputs else x.new_zeros(x.shape[0], 0)
    return y.reshape(*wav.shape[:-1], out_length)


# ------------------------------------------------------------------------------------------------ normalization
def _clip_wav(wav: torch.Tensor, log_clipping: bool = False, stem_name: str | None = None) -> torch.Tensor:
    """Clamp ``wav`` to [-1, 1] IN PLACE (as Audiocraft does) and return it, optionally logging how much was
    clipped."""
    if log_clipping:
        clipped = wav.abs() > 1
        if bool(clipped.any()):
            logger.warning("clipping %s: %.4f%% of the samples exceed 1 (peak %.4f); they are clamped to [-1, 1]",
                           stem_name or 'audio', 100 * clipped.float().mean().item(), wav.abs().max().item())
    return wav.clamp_(-1, 1)


def _rescale(wav: torch.Tensor, rescaling: torch.Tensor, target: float, level: torch.Tensor) -> torch.Tensor:
    """`wav * rescaling` (`rescaling = target / level`); when that gain overflows `wav`'s dtype (a subnormal
    `level`), `wav / level * target` in float64 instead, cast back."""
    if bool(torch.isfinite(rescaling)) and rescaling.dtype == wav.dtype:
        return wav * rescaling
    return (wav.double() / level.double() * target).to(wav.dtype)


def normalize_loudness(wav: torch.Tensor, sample_rate: int, loudness_headroom_db: float = 14,
                       loudness_compressor: bool = False, energy_floor: float = 2e-3) -> torch.Tensor:
    """Scale `wav` `[C, T]` (or `[T]`) so that its loudness is `-loudness_headroom_db` LKFS.

    Loudness is the ITU-R BS.1770-4 integrated loudness (see `audiocraft.data.loudness`). A clip whose RMS is
    below `energy_floor`, or whose blocks are all below the -70 LKFS gate, is returned unchanged. With
    `loudness_compressor`, the scaled signal goes through `tanh` to soften peaks. A clip shorter than one 0.4 s
    gating block is measured on its periodic repetition (tiled to one block), so short clips are normalised too.
    Returns a tensor of the same shape and dtype.
    """
    wav = _check_float_clip(wav)
    sample_rate = _check_sample_rate(sample_rate)
    loudness_headroom_db = _check_db(loudness_headroom_db, 'loudness_headroom_db')
    energy = wav.pow(2).mean().sqrt().item() if wav.numel() else 0.0
    if energy < energy_floor:
        return wav
    block = int(round(0.4 * sample_rate))
    clip = wav if wav.dim() == 2 else wav[None]
    if clip.shape[-1] < block:  # shorter than one gating block: measure its periodic repetition
        clip = clip.repeat(1, -(-block // clip.shape[-1]))[:, :block]
    input_loudness_db = float(integrated_loudness(clip, sample_rate))
    if not math.isfinite(input_loudness_db):  # every block gated out: too quiet (or only sub-38 Hz) to measure
        return wav
    gain = 10.0 ** ((-loudness_headroom_db - input_loudness_db) / 20.0)
    output = wav * gain
    if loudness_compressor:
        output = torch.tanh(output)
    return output


def normalize_audio(wav: torch.Tensor, normalize: bool = True, strategy: str = 'peak',
                    peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                    loudness_compressor: bool = False, log_clipping: bool = False, sample_rate: int | None = None,
                    stem_name: str | None = None) -> torch.Tensor:
    """Normalize `wav` `[C, T]` (or `[T]`, or `[..., C, T]` with leading batch dimensions) with one of
    `NORMALIZATION_STRATEGIES`; returns the same shape.

    - 'peak': scale so the peak is `-peak_clip_headroom_db` dBFS (with `normalize=False`, only scale down).
    - 'clip': clamp to +-(`-peak_clip_headroom_db` dBFS), no scaling.
    - 'rms': scale so the RMS of the channel mean is `-rms_headroom_db` dBFS (with `normalize=False`, only
      scale down), then clamp to [-1, 1].
    - 'loudness': `normalize_loudness` to `-loudness_headroom_db` LKFS (needs `sample_rate`), then clamp.
    - 'none' (or ''): unchanged apart from clamping to [-1, 1].
    `normalize` only matters for 'peak' and 'rms'. Clamping is logged when `log_clipping` is set. An
    all-zero clip is returned unchanged. The input tensor is never modified in place.

    With leading batch dimensions the statistics are Audiocraft's: the peak of the whole tensor, the RMS of the
    mean over the first dimension; 'loudness' normalizes each `[C, T]` clip on its own.
    """
    wav = _check_float_clip(wav, batched=True)
    if wav.dim() > 2 and isinstance(strategy, str) and strategy.lower() == 'loudness':
        return torch.stack([normalize_audio(item, normalize, strategy, peak_clip_headroom_db, rms_headroom_db,
                                            loudness_headroom_db, loudness_compressor, log_clipping, sample_rate,
                                            stem_name) for item in wav]) if len(wav) else wav.clone()
    if not isinstance(strategy, str) or strategy.lower() not in NORMALIZATION_STRATEGIES + ('',):
        raise ArgumentError(f"unknown normalization strategy {_shown(strategy)}; allowed: "
                            f"{', '.join(NORMALIZATION_STRATEGIES)}")
    strategy = strategy.lower()
    scale_peak = 10 ** (-_check_db(peak_clip_headroom_db, 'peak_clip_headroom_db') / 20)
    scale_rms = 10 ** (-_check_db(rms_headroom_db, 'rms_headroom_db') / 20)
    loudness_headroom_db = _check_db(loudness_headroom_db, 'loudness_headroom_db')
    if strategy == 'peak':
        peak = wav.abs().max() if wav.numel() else wav.new_zeros(())
        if peak.item() == 0:
            return wav
        rescaling = scale_peak / peak
        if normalize or rescaling.item() < 1:
            wav = _rescale(wav, rescaling, scale_peak, peak)
        return wav
    if strategy == 'clip':
        return wav.clamp(-scale_peak, scale_peak)
    if strategy == 'rms':
        mono = wav.mean(dim=0) if wav.dim() >= 2 else wav
        rms = mono.pow(2).mean().sqrt() if mono.numel() else mono.new_zeros(())
        if not bool(torch.isfinite(rms)) or (rms.item() == 0 and bool(mono.any())):
            rms = mono.double().pow(2).mean().sqrt()  # x ** 2 overflowed (or underflowed) in wav's dtype
        if rms.item() > 0:
            rescaling = scale_rms / rms
            if normalize or rescaling.item() < 1:
                wav = _rescale(wav, rescaling, scale_rms, rms)
        return _clip_wav(wav.clone(), log_clipping=log_clipping, stem_name=stem_name)
    if strategy == 'loudness':
        if sample_rate is None:
            raise ArgumentError("strategy='loudness' needs sample_rate (a positive integer in Hz), got None")
        wav = normalize_loudness(wav, sample_rate, loudness_headroom_db, loudness_compressor)
        return _clip_wav(wav.clone(), log_clipping=log_clipping, stem_name=stem_name)
    return _clip_wav(wav.clone(), log_clipping=log_clipping, stem_name=stem_name)


# ------------------------------------------------------------------------------------------------ PCM
def f32_pcm(wav: torch.Tensor) -> torch.Tensor:
    """PCM samples -> float32 in [-1, 1): int16 / 2**15, int32 / 2**31; floating point input is returned as is."""
    wav = _check_tensor(wav)
    if wav.dtype.is_floating_point:
        return wav
    if wav.dtype == torch.int16:
        return wav.float() / 2 ** 15
    if wav.dtype == torch.int32:
        return (wav.double() / 2 ** 31).float()
    raise ArgumentTypeError(f"wav dtype must be floating point, int16 or int32, got {wav.dtype}")


def i16_pcm(wav: torch.Tensor) -> torch.Tensor:
    """Float samples in [-1, 1] -> int16 (`round(x * 2**15)`, or `round(x * (2**15 - 1))` when a sample would
    overflow); int16 input is returned as is."""
    wav = _check_tensor(wav)
    if wav.dtype == torch.int16:
        return wav
    if not wav.dtype.is_floating_point:
        raise ArgumentTypeError(f"wav dtype must be floating point or int16, got {wav.dtype}")
    if wav.numel() == 0:
        return wav.to(torch.int16)
    peak = wav.abs().max().item()
    if not peak <= 1:
        raise ArgumentError(f"float wav must lie in [-1, 1] to be converted to int16, got peak {peak}; "
                            "normalize or clip it first")
    candidate = (wav * 2 ** 15).round()
    if candidate.max().item() >= 2 ** 15:
        candidate = (wav * (2 ** 15 - 1)).round()
    return candidate.to(torch.int16)
