"""Fake ``demucs.audio.convert_audio``, with demucs' semantics: channels first, then julius resampling."""
import julius
import torch


def convert_audio_channels(wav: torch.Tensor, channels: int = 2) -> torch.Tensor:
    """[..., C, T] -> [..., channels, T]: mean to mono, mono repeated, or the first channels kept."""
    src = wav.shape[-2]
    if src == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=-2, keepdim=True)
    if src == 1:
        return wav.expand(*wav.shape[:-2], channels, wav.shape[-1])
    if src > channels:
        return wav[..., :channels, :]
    raise ValueError("The audio file has less channels than requested but is not mono.")


def convert_audio(wav: torch.Tensor, from_samplerate: int, samplerate: int, channels: int) -> torch.Tensor:
    return julius.resample_frac(convert_audio_channels(wav, channels), from_samplerate, samplerate)
