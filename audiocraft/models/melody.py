"""Melody (chroma) conditions of a generation: validating user melodies, the null melody, and the melody each
window of an extended generation sees (Audiocraft's semantics: the melody tiled periodically from its start)."""
from __future__ import annotations

import typing as tp

import torch

from ..data.audio_utils import MAX_SAMPLE_RATE, convert_audio
from ..modules.conditioners import WavCondition
from ..utils.validation import ArgumentError, ArgumentTypeError, check_number, check_waveform

MELODY_CONDITION = "self_wav"  # the attribute the chroma conditioner reads
MelodyList = tp.List[tp.Optional[torch.Tensor]]
MelodyType = tp.Union[torch.Tensor, MelodyList]


def check_melodies(melody_wavs: tp.Any, batch_size: int, sample_rate: int, melody_sample_rate: tp.Any,
                   channels: int) -> MelodyList:
    """User melodies (a tensor ``[B, C, T]`` / ``[C, T]``, or a list of ``[C, T]`` tensors or None) checked and
    converted to ``sample_rate`` and ``channels``: one ``[channels, T']`` tensor (or None) per item."""
    check_number("melody_sample_rate", melody_sample_rate, minimum=0, strict_min=True, integer=True,
                 maximum=MAX_SAMPLE_RATE)
    melodies: MelodyList
    if isinstance(melody_wavs, torch.Tensor):
        check_waveform("melody_wavs", melody_wavs, dims=(2, 3))
        if melody_wavs.dim() == 2:
            melody_wavs = melody_wavs[None]
        melodies = list(melody_wavs)
    elif isinstance(melody_wavs, (list, tuple)):
        melodies = []
        for i, melody in enumerate(melody_wavs):
            if melody is not None:
                check_waveform(f"melody_wavs[{i}]", melody, dims=(2,))
            melodies.append(melody)
    else:
        raise ArgumentTypeError("melody_wavs must be a tensor [B, C, T] or a list of [C, T] tensors or None, "
                                f"got {type(melody_wavs).__name__}.")
    if len(melodies) != batch_size:
        raise ArgumentError(f"melody_wavs has {len(melodies)} items but descriptions has {batch_size}; "
                            "they must match.")
    return [None if wav is None else convert_audio(wav, melody_sample_rate, sample_rate, channels)
            for wav in melodies]


def null_melody(sample_rate: int, device: torch.device) -> WavCondition:
    """The condition of an item without melody (a single zero sample of length 0)."""
    return WavCondition(torch.zeros((1, 1, 1), device=device), torch.tensor([0], device=device),
                        sample_rate=[sample_rate], path=[None])


def melody_condition(melody: torch.Tensor, sample_rate: int, device: torch.device) -> WavCondition:
    """The condition of one melody ``[C, T]`` at the model's rate."""
    return WavCondition(melody[None].to(device=device), torch.tensor([melody.shape[-1]], device=device),
                        sample_rate=[sample_rate], path=[None])


def tiled_melody(wav: torch.Tensor, offset: int, length: int, sample_rate: int) -> WavCondition:
    """``length`` samples of ``wav`` (``[N, C, T]``) repeated periodically, starting at sample ``offset``."""
    positions = torch.arange(offset, offset + length, device=wav.device)
    return WavCondition(wav[..., positions % wav.shape[-1]],
                        torch.full((wav.shape[0],), length, device=wav.device, dtype=torch.long),
                        [sample_rate] * wav.shape[0], [None] * wav.shape[0], [0.0] * wav.shape[0])
