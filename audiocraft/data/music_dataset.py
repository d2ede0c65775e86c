"""Music datasets: audio segments with their metadata (`MusicInfo`) for text-to-music training.

Each audio file may have, next to it and with the same stem:

- ``song.json``: any of ``title, artist, key, bpm, genre, moods, keywords, description, name, instrument``
  (other keys are ignored; ``moods`` / ``keywords`` may be lists or comma-separated strings);
- ``song.txt``: the description (used when the JSON has none).

An item is ``(wav [C, T], MusicInfo)``; ``MusicInfo.self_wav`` holds the segment itself (the melody model's
``self_wav`` condition) and ``MusicInfo.to_condition_attributes()`` gives the LM's ``ConditioningAttributes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
import json
import logging
from pathlib import Path
import typing as tp

import torch

from ..modules.conditioners import ConditioningAttributes, JointEmbedCondition, WavCondition
from .audio_dataset import item_seed
from .info_audio_dataset import AudioInfo, InfoAudioDataset

logger = logging.getLogger(__name__)

# Metadata fields that become text attributes (in this order).
MUSIC_TEXT_FIELDS = ("title", "artist", "key", "bpm", "genre", "moods", "keywords", "description", "name",
                     "instrument")
# Fields merged into the description by `augment_music_info_description`.
MERGEABLE_FIELDS = ("key", "bpm", "genre", "moods", "instrument", "keywords")


def _text(value: tp.Any) -> tp.Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _lower_text(value: tp.Any) -> tp.Optional[str]:
    text = _text(value)
    return None if text is None else text.lower()


def _word_list(value: tp.Any) -> tp.Optional[tp.List[str]]:
    """A list of lowercase words from a list or a comma-separated string."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    words = [str(item).strip().lower() for item in items if item is not None and str(item).strip()]
    return words or None


def _bpm(value: tp.Any) -> tp.Optional[float]:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        logger.warning("Ignoring a bpm that is not a number: %r.", value)
        return None


_NORMALIZERS: tp.Dict[str, tp.Callable[[tp.Any], tp.Any]] = {
    "title": _text, "artist": _text, "key": _lower_text, "bpm": _bpm, "genre": _lower_text,
    "moods": _word_list, "keywords": _word_list, "description": _text, "name": _text, "instrument": _lower_text,
}


@dataclass
class MusicInfo(AudioInfo):
    """A segment of music with its metadata and (for melody conditioning) the segment itself."""
    title: tp.Optional[str] = None
    artist: tp.Optional[str] = None
    key: tp.Optional[str] = None
    bpm: tp.Optional[float] = None
    genre: tp.Optional[str] = None
    moods: tp.Optional[tp.List[str]] = None
    keywords: tp.Optional[tp.List[str]] = None
    description: tp.Optional[str] = None
    name: tp.Optional[str] = None
    instrument: tp.Optional[str] = None
    # The original waveform of the segment: wav [1, C, T].
    self_wav: tp.Optional[WavCondition] = None
    joint_embed: tp.Dict[str, JointEmbedCondition] = field(default_factory=dict)

    @property
    def has_music_meta(self) -> bool:
        return self.name is not None

    @classmethod
    def attribute_getter(cls, attribute: str) -> tp.Optional[tp.Callable[[tp.Any], tp.Any]]:
        """The normaliser applied to ``attribute`` when read from a dict (None for non-music fields)."""
        return _NORMALIZERS.get(attribute)

    @classmethod
    def from_dict(cls, dictionary: tp.Dict[str, tp.Any], fields_required: bool = False) -> "MusicInfo":
        """Build from a dict, normalising the music fields; ``fields_required`` demands every music field
        except ``keywords``."""
        values: tp.Dict[str, tp.Any] = {}
        for f in fields(cls):
            if f.name in ("self_wav", "joint_embed"):
                continue
            if f.name not in dictionary:
                if fields_required and f.name in MUSIC_TEXT_FIELDS and f.name != "keywords":
                    raise KeyError(f"MusicInfo is missing the required field {f.name!r}.")
                continue
            getter = cls.attribute_getter(f.name)
            values[f.name] = getter(dictionary[f.name]) if getter is not None else dictionary[f.name]
        return cls(**values)

    def to_condition_attributes(self) -> ConditioningAttributes:
        """Text attributes for the music fields (lists joined by spaces, numbers as text), ``self_wav`` as a
        wav attribute when set, and the joint embeddings."""
        out = ConditioningAttributes()
        for name in MUSIC_TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, list):
                value = " ".join(value)
            out.text[name] = None if value is None else str(value)
        if self.self_wav is not None:
            out.wav["self_wav"] = self.self_wav
        for name, cond in self.joint_embed.items():
            out.joint_embed[name] = cond
        return out


def _draw(rng: tp.Optional[torch.Generator]) -> float:
    return float(torch.rand(1, generator=rng))


def augment_music_info_description(music_info: MusicInfo, merge_text_p: float = 0., drop_desc_p: float = 0.,
                                   drop_other_p: float = 0., rng: tp.Optional[torch.Generator] = None) -> MusicInfo:
    """Enrich the description with the other metadata, as MusicGen's training does.

    With probability ``merge_text_p``, the fields ``key, bpm, genre, moods, instrument, keywords`` that are set
    (each kept with probability ``1 - drop_other_p``) are appended as ``"name: value"`` pairs in a random order,
    and the original description itself is dropped with probability ``drop_desc_p``. Draws come from ``rng``.
    """
    description = music_info.description
    metadata_text = ""
    if _draw(rng) < merge_text_p:
        pairs = []
        for name in MERGEABLE_FIELDS:
            value = getattr(music_info, name)
            keep = _draw(rng) >= drop_other_p
            if value is None or not keep:
                continue
            if isinstance(value, list):
                value = ", ".join(value)
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            pairs.append(f"{name}: {value}")
        order = torch.randperm(len(pairs), generator=rng).tolist() if pairs else []
        metadata_text = ". ".join(pairs[i] for i in order)
        if _draw(rng) < drop_desc_p:
            description = None
    if description is None:
        description = metadata_text or None
    elif metadata_text:
        description = ". ".join([description.rstrip("."), metadata_text])
    description = description.strip() if description else None
    return replace(music_info, description=description)


def load_music_metadata(audio_path: tp.Union[str, Path], info_path: tp.Optional[str] = None
                        ) -> tp.Dict[str, tp.Any]:
    """The metadata dict of an audio file from its ``.json`` (or ``info_path``) and ``.txt`` sidecars.

    Unreadable sidecars are ignored with a warning.
    """
    path = Path(audio_path)
    data: tp.Dict[str, tp.Any] = {}
    json_path = Path(info_path) if info_path else path.with_suffix(".json")
    if json_path.is_file():
        try:
            with open(json_path, "r", encoding="utf-8") as fh:
                loaded = json.load(fh)
            if not isinstance(loaded, dict):
                raise ValueError(f"expected a JSON object, got {type(loaded).__name__}")
            data.update(loaded)
        except (OSError, ValueError) as err:
            logger.warning("Ignoring unreadable metadata file %s (%s).", json_path, err)
    txt_path = path.with_suffix(".txt")
    if _text(data.get("description")) is None and txt_path.is_file():
        try:
            data["description"] = txt_path.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as err:
            logger.warning("Ignoring unreadable description file %s (%s).", txt_path, err)
    return data


class MusicDataset(InfoAudioDataset):
    """Segments of music with their `MusicInfo` (read from ``.json`` / ``.txt`` sidecars).

    Args:
        info_fields_required: every music field (but ``keywords``) must be in the JSON; files that lack one
            are treated as having no metadata (with a warning). Default False (unlike Audiocraft).
        merge_text_p, drop_desc_p, drop_other_p: see :func:`augment_music_info_description` (training only:
            applied when ``shuffle``).
        joint_embed_attributes: attributes to fill as ``JointEmbedCondition`` of the segment and description.
        **kwargs: `AudioDataset` arguments.
    """

    def __init__(self, *args: tp.Any, info_fields_required: bool = False, merge_text_p: float = 0.,
                 drop_desc_p: float = 0., drop_other_p: float = 0.,
                 joint_embed_attributes: tp.Sequence[str] = (), paraphrase_source: tp.Optional[str] = None,
                 paraphrase_p: float = 0., **kwargs: tp.Any) -> None:
        super().__init__(*args, **kwargs)
        for name, p in (("merge_text_p", merge_text_p), ("drop_desc_p", drop_desc_p),
                        ("drop_other_p", drop_other_p)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}.")
        if paraphrase_source is not None or paraphrase_p:
            raise ValueError("Paraphrasing is not supported (paraphrase_source / paraphrase_p).")
        self.info_fields_required = info_fields_required
        self.merge_text_p = float(merge_text_p)
        self.drop_desc_p = float(drop_desc_p)
        self.drop_other_p = float(drop_other_p)
        self.joint_embed_attributes = list(joint_embed_attributes)

    def _music_info(self, wav: torch.Tensor, info: tp.Any, index: int) -> MusicInfo:
        data = load_music_metadata(info.meta.path, info.meta.info_path)
        data.update(info.to_dict())
        try:
            music_info = MusicInfo.from_dict(data, fields_required=self.info_fields_required)
        except KeyError as err:
            logger.warning("Metadata of %s: %s; using none.", info.meta.path, err)
            music_info = MusicInfo.from_dict(info.to_dict())
        if self.shuffle and self.merge_text_p > 0:
            rng = torch.Generator()
            rng.manual_seed(item_seed(self.shuffle_seed + 1, self._epoch_for_seed(), index))
            music_info = augment_music_info_description(music_info, self.merge_text_p, self.drop_desc_p,
                                                        self.drop_other_p, rng)
        length = torch.tensor([info.n_frames], dtype=torch.long)
        music_info.self_wav = WavCondition(wav=wav[None], length=length, sample_rate=[info.sample_rate],
                                           path=[info.meta.path], seek_time=[info.seek_time])
        for name in self.joint_embed_attributes:
            music_info.joint_embed[name] = JointEmbedCondition(
                wav=wav[None], text=[music_info.description], length=length, sample_rate=[info.sample_rate],
                path=[info.meta.path], seek_time=[info.seek_time])
        return music_info

    def __getitem__(self, index: int) -> tp.Tuple[torch.Tensor, MusicInfo]:  # type: ignore[override]
        wav, info = self._get_item_with_info(index)
        return wav, self._music_info(wav, info, index)
