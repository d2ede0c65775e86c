"""What a generation is conditioned on: per-sample attributes, and how to nullify them.

A sample's conditions are grouped by kind in :class:`ConditioningAttributes`: ``text`` (a string or None per
attribute), ``wav`` (a :class:`WavCondition` per attribute, e.g. the melody ``self_wav``) and ``joint_embed``.
Classifier-free guidance and attribute dropout replace a condition by its *null* version: text -> None,
waveform -> a single zero sample of length 0 (:func:`nullify_wav`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import typing as tp

import torch

from ...utils.validation import ArgumentError, ArgumentTypeError

# (embeddings [B, T, D] float, mask [B, T]) as produced by every conditioner.
ConditionType = tp.Tuple[torch.Tensor, torch.Tensor]

CONDITION_KINDS = ("text", "wav", "joint_embed")


class WavCondition(tp.NamedTuple):
    """A batch of conditioning waveforms.

    wav [B, C, T] float; length [B] int64 (valid samples per item); one sample rate, path and seek time per item.
    """

    wav: torch.Tensor
    length: torch.Tensor
    sample_rate: tp.List[int]
    path: tp.List[tp.Optional[str]] = []
    seek_time: tp.List[tp.Optional[float]] = []


class JointEmbedCondition(tp.NamedTuple):
    """A batch of waveforms with their texts, for conditioners embedding both in one space (e.g. CLAP).

    wav [B, C, T] float; text one entry per item; length [B] int64.
    """

    wav: torch.Tensor
    text: tp.List[tp.Optional[str]]
    length: torch.Tensor
    sample_rate: tp.List[int]
    path: tp.List[tp.Optional[str]] = []
    seek_time: tp.List[tp.Optional[float]] = []


@dataclass
class ConditioningAttributes:
    """The conditions of ONE sample, by kind: ``text``, ``wav`` and ``joint_embed``, each ``{attribute: value}``."""

    text: tp.Dict[str, tp.Optional[str]] = field(default_factory=dict)
    wav: tp.Dict[str, WavCondition] = field(default_factory=dict)
    joint_embed: tp.Dict[str, JointEmbedCondition] = field(default_factory=dict)

    def __getitem__(self, item: str) -> tp.Any:
        if item not in CONDITION_KINDS:
            raise KeyError(f"Unknown condition kind {item!r}; expected one of {list(CONDITION_KINDS)}.")
        return getattr(self, item)

    @property
    def text_attributes(self) -> tp.KeysView[str]:
        return self.text.keys()

    @property
    def wav_attributes(self) -> tp.KeysView[str]:
        return self.wav.keys()

    @property
    def joint_embed_attributes(self) -> tp.KeysView[str]:
        return self.joint_embed.keys()

    @property
    def attributes(self) -> tp.Dict[str, tp.KeysView[str]]:
        """``{kind: attribute names}`` for the three kinds."""
        return {"text": self.text_attributes, "wav": self.wav_attributes,
                "joint_embed": self.joint_embed_attributes}

    def to_flat_dict(self) -> tp.Dict[str, tp.Any]:
        """``{"<kind>.<attribute>": value}``."""
        return {f"{kind}.{name}": value for kind in CONDITION_KINDS for name, value in self[kind].items()}

    @classmethod
    def from_flat_dict(cls, x: tp.Dict[str, tp.Any]) -> "ConditioningAttributes":
        """Inverse of :meth:`to_flat_dict`."""
        out = cls()
        for key, value in x.items():
            kind, sep, name = key.partition(".")
            if not sep or kind not in CONDITION_KINDS or not name:
                raise ArgumentError(f"Flat attribute keys must look like '<kind>.<name>' with kind in "
                                    f"{list(CONDITION_KINDS)}, got {key!r}.")
            out[kind][name] = value
        return out


def nullify_condition(condition: ConditionType, dim: int = 1) -> ConditionType:
    """Null version of a (tensor, mask) condition: the tensor cut to length 1 along ``dim`` and zeroed.

    condition: (x [B, ...], mask) -> (zeros with x.shape[dim] == 1, mask zeros [B, 1] int32).
    """
    if not (isinstance(condition, tuple) and len(condition) == 2
            and all(isinstance(t, torch.Tensor) for t in condition)):
        raise ArgumentTypeError(f"condition must be a (Tensor, Tensor) tuple, got {type(condition).__name__}.")
    x, _ = condition
    if x.dim() < 2 or not -x.dim() <= dim < x.dim() or dim % x.dim() == 0:
        raise ArgumentError(f"dim must be a non-batch dimension of a {x.dim()}-D tensor, got {dim}.")
    if x.shape[dim] == 0:  # e.g. a melody shorter than one sample once resampled: nothing to narrow
        shape = list(x.shape)
        shape[dim] = 1
        null = x.new_zeros(shape)
    else:
        # 0 * x keeps the dtype and device (and, like the original, propagates NaN).
        null = 0.0 * x.narrow(dim, 0, 1)
    mask = torch.zeros((x.shape[0], 1), dtype=torch.int32, device=x.device)
    return null, mask


def nullify_wav(cond: WavCondition) -> WavCondition:
    """Null melody: wav [B, C, T] -> zeros [B, C, 1], length 0, path and seek time None (sample rates kept)."""
    null_wav, _ = nullify_condition((cond.wav, torch.zeros_like(cond.wav)), dim=cond.wav.dim() - 1)
    batch = cond.wav.shape[0]
    return WavCondition(wav=null_wav, length=torch.zeros(batch, dtype=torch.long, device=cond.wav.device),
                        sample_rate=list(cond.sample_rate), path=[None] * batch, seek_time=[None] * batch)


def nullify_joint_embed(embed: JointEmbedCondition) -> JointEmbedCondition:
    """Null joint condition: wav as in :func:`nullify_wav`, texts None."""
    null_wav, _ = nullify_condition((embed.wav, torch.zeros_like(embed.wav)), dim=embed.wav.dim() - 1)
    batch = embed.wav.shape[0]
    return JointEmbedCondition(wav=null_wav, text=[None] * batch,
                               length=torch.zeros(batch, dtype=torch.long, device=embed.wav.device),
                               sample_rate=list(embed.sample_rate), path=[None] * batch, seek_time=[None] * batch)


def dropout_condition(sample: ConditioningAttributes, condition_type: str, condition: str) -> ConditioningAttributes:
    """Nullify one attribute of ``sample`` IN PLACE (text -> None, wav / joint_embed -> null) and return it."""
    if condition_type not in CONDITION_KINDS:
        raise ArgumentError(f"condition_type must be one of {list(CONDITION_KINDS)}, got {condition_type!r}.")
    values = sample[condition_type]
    if condition not in values:
        raise ArgumentError(f"Attribute {condition!r} is not a {condition_type} attribute of this sample "
                            f"(it has {list(values)}).")
    if condition_type == "wav":
        values[condition] = nullify_wav(values[condition])
    elif condition_type == "joint_embed":
        values[condition] = nullify_joint_embed(values[condition])
    else:
        values[condition] = None
    return sample
