"""From a collated batch ``(audio, [MusicInfo])`` to the LM's inputs: conditions, tokens and the padding mask."""
from __future__ import annotations

import math
import typing as tp

import torch

from ..data.music_dataset import MusicInfo
from ..modules.conditioners import ConditioningAttributes, WavCondition
from .codes_cache import CodesCache


def condition_attributes(wav: torch.Tensor, infos: tp.Sequence[MusicInfo], text_conditions: tp.Iterable[str],
                         wav_conditions: tp.Iterable[str]) -> tp.List[ConditioningAttributes]:
    """The attributes the model conditions on: its text attributes from the metadata, and for a melody model
    ``self_wav`` = the segment itself (``wav [B, C, T]``, on its device, ``length`` = valid samples)."""
    text_names = set(text_conditions)
    want_self_wav = "self_wav" in set(wav_conditions)
    out = []
    for i, info in enumerate(infos):
        full = info.to_condition_attributes()
        attrs = ConditioningAttributes(text={k: v for k, v in full.text.items() if k in text_names})
        if want_self_wav:
            attrs.wav["self_wav"] = WavCondition(
                wav[i:i + 1], torch.tensor([info.n_frames], device=wav.device), sample_rate=[info.sample_rate],
                path=[info.meta.path], seek_time=[info.seek_time])
        out.append(attrs)
    return out


@torch.no_grad()
def encode_segments(compression_model: tp.Any, wav: torch.Tensor, infos: tp.Sequence[MusicInfo],
                    cache: tp.Optional[CodesCache] = None) -> torch.Tensor:
    """audio ``[B, C, T]`` -> codes ``[B, K, F]`` int64, taken from ``cache`` when there (and stored there)."""
    codes_per_item: tp.List[tp.Optional[torch.Tensor]] = [None] * len(infos)
    if cache is not None:
        codes_per_item = [cache.get(info) for info in infos]
    missing = [i for i, c in enumerate(codes_per_item) if c is None]
    if missing:
        codes, scale = compression_model.encode(wav[missing])
        if scale is not None:
            raise ValueError("Compression models that renormalise their input are not supported for training.")
        for j, i in enumerate(missing):
            codes_per_item[i] = codes[j]
            if cache is not None:
                cache.put(infos[i], codes[j])
    return torch.stack([tp.cast(torch.Tensor, c).to(wav.device) for c in codes_per_item]).long()


def padding_mask(codes: torch.Tensor, infos: tp.Sequence[MusicInfo], frame_rate: float) -> torch.Tensor:
    """``[B, K, F]`` bool, False on the frames after the last one that holds real audio (zero padding)."""
    mask = torch.ones_like(codes, dtype=torch.bool)
    for i, info in enumerate(infos):
        if info.n_frames < info.total_frames:
            mask[i, :, math.floor(info.n_frames / info.sample_rate * frame_rate):] = False
    return mask
