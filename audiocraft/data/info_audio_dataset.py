"""Audio datasets whose items carry conditioning information (`AudioInfo`)."""
from __future__ import annotations

from dataclasses import dataclass
import typing as tp

import torch

from ..modules.conditioners import ConditioningAttributes
from .audio_dataset import AudioDataset, SegmentInfo


@dataclass
class AudioInfo(SegmentInfo):
    """A `SegmentInfo` that knows how to turn itself into `ConditioningAttributes`."""

    @classmethod
    def from_dict(cls, dictionary: tp.Dict[str, tp.Any], fields_required: bool = False) -> "AudioInfo":
        """Build from a dict; with ``fields_required`` every field must be present."""
        values = cls._dict2fields(dictionary)
        if fields_required:
            from dataclasses import fields
            missing = [f.name for f in fields(cls) if f.name not in values]
            if missing:
                raise KeyError(f"{cls.__name__} is missing required fields {missing}.")
        return cls(**values)

    def to_condition_attributes(self) -> ConditioningAttributes:
        """No conditions by default."""
        return ConditioningAttributes()


class InfoAudioDataset(AudioDataset):
    """An `AudioDataset` that returns ``(wav, AudioInfo)`` items (``return_info`` is forced on)."""

    def __init__(self, meta: tp.Any, **kwargs: tp.Any) -> None:
        kwargs["return_info"] = True
        super().__init__(meta, **kwargs)

    def __getitem__(self, index: int) -> tp.Tuple[torch.Tensor, AudioInfo]:  # type: ignore[override]
        wav, info = self._get_item_with_info(index)
        return wav, AudioInfo(**info.to_dict())
