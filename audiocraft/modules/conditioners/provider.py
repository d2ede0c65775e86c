"""ConditioningProvider: batches the attributes of a list of samples and runs every conditioner on them."""
from __future__ import annotations

import typing as tp

import torch
from torch import nn

from .attributes import ConditioningAttributes, ConditionType, WavCondition
from .base import BaseConditioner, TextConditioner, WaveformConditioner
from ...utils.validation import ArgumentError, ArgumentTypeError


def _is_null(kind: str, value: tp.Any) -> bool:
    """True for the placeholders that mean 'no condition': text None, a nullified [.., 1] wav of length 0."""
    if kind == "text":
        return value is None
    if kind == "wav" and isinstance(value, WavCondition):
        return value.wav.shape[-1] <= 1 and not bool((value.length > 0).any())
    return False


class ConditioningProvider(nn.Module):
    """Runs the conditioners of a model (Audiocraft 1.3).

    ``tokenize`` collates a list of per-sample :class:`ConditioningAttributes` into one batch per attribute and
    tokenizes it: text conditioners first (in the order of ``conditioners``), then waveform conditioners.
    ``forward`` turns that into ``{attribute: (embeds [B, T, D], mask [B, T])}`` in the same order, which is the
    order the fuser sees (for MusicGen-melody: 'description' then 'self_wav').

    Missing attributes are treated as null (text None, a [1, 1, 1] zero wav of length 0). Attributes no
    conditioner knows raise a ValueError, except null placeholders (Audiocraft's MusicGen adds a null 'self_wav'
    to every request, also for text-only models), which are ignored.

    Args:
        conditioners: ``{attribute: conditioner}``; kept as ``self.conditioners`` (an ``nn.ModuleDict``).
        device: device of the collated tensors.
    """

    def __init__(self, conditioners: tp.Dict[str, BaseConditioner],
                 device: tp.Union[torch.device, str] = "cpu") -> None:
        super().__init__()
        for name, conditioner in conditioners.items():
            if not isinstance(conditioner, BaseConditioner):
                raise ArgumentTypeError(f"conditioners[{name!r}] must be a BaseConditioner, got "
                                        f"{type(conditioner).__name__}.")
        self.device = device
        self.conditioners = nn.ModuleDict(conditioners)

    @property
    def text_conditions(self) -> tp.List[str]:
        return [k for k, v in self.conditioners.items() if isinstance(v, TextConditioner)]

    @property
    def wav_conditions(self) -> tp.List[str]:
        return [k for k, v in self.conditioners.items() if isinstance(v, WaveformConditioner)]

    @property
    def joint_embed_conditions(self) -> tp.List[str]:
        """Joint text-audio conditioners (CLAP in Audiocraft): none are implemented here."""
        return []

    @property
    def has_joint_embed_conditions(self) -> bool:
        return len(self.joint_embed_conditions) > 0

    @property
    def has_wav_condition(self) -> bool:
        return len(self.wav_conditions) > 0

    # ---- tokenize ------------------------------------------------------------------------------------------------
    def _check_inputs(self, inputs: tp.Any) -> tp.List[ConditioningAttributes]:
        if not isinstance(inputs, (list, tuple)):
            raise ArgumentTypeError(f"inputs must be a list of ConditioningAttributes, got {type(inputs).__name__}.")
        if len(inputs) == 0:
            raise ArgumentError("inputs must contain at least one ConditioningAttributes, got an empty list.")
        known = {"text": set(self.text_conditions), "wav": set(self.wav_conditions),
                 "joint_embed": set(self.joint_embed_conditions)}
        unknown: tp.Dict[str, tp.Set[str]] = {}
        for i, sample in enumerate(inputs):
            if not isinstance(sample, ConditioningAttributes):
                raise ArgumentTypeError(f"inputs[{i}] must be a ConditioningAttributes, got {type(sample).__name__}.")
            for kind, names in known.items():
                for name, value in sample[kind].items():
                    if name not in names and not _is_null(kind, value):
                        unknown.setdefault(kind, set()).add(name)
        if unknown:
            found = ", ".join(f"{kind} {sorted(names)}" for kind, names in unknown.items())
            raise ArgumentError(f"Unexpected conditioning attributes: {found}. This model conditions on text "
                                f"{sorted(known['text'])} and wav {sorted(known['wav'])}.")
        return list(inputs)

    def _collate_text(self, samples: tp.List[ConditioningAttributes]) -> tp.Dict[str, tp.List[tp.Optional[str]]]:
        """{attribute: [text or None per sample]} for every text conditioner."""
        out: tp.Dict[str, tp.List[tp.Optional[str]]] = {}
        for name in self.text_conditions:
            out[name] = [sample.text.get(name) for sample in samples]
        return out

    def _collate_wavs(self, samples: tp.List[ConditioningAttributes]) -> tp.Dict[str, WavCondition]:
        """{attribute: WavCondition [B, 1, T_max]}: each sample's wav averaged to mono, right-padded with zeros."""
        out: tp.Dict[str, WavCondition] = {}
        for name in self.wav_conditions:
            wavs: tp.List[torch.Tensor] = []
            lengths: tp.List[torch.Tensor] = []
            rates: tp.List[int] = []
            paths: tp.List[tp.Optional[str]] = []
            seeks: tp.List[tp.Optional[float]] = []
            for i, sample in enumerate(samples):
                cond = sample.wav.get(name)
                if cond is None:
                    cond = WavCondition(torch.zeros(1, 1, 1, device=self.device),
                                        torch.zeros(1, dtype=torch.long, device=self.device),
                                        sample_rate=[int(getattr(self.conditioners[name], "sample_rate", 0))],
                                        path=[None], seek_time=[None])
                if not isinstance(cond, WavCondition):
                    raise ArgumentTypeError(f"inputs[{i}].wav[{name!r}] must be a WavCondition, got "
                                            f"{type(cond).__name__}.")
                wav = cond.wav
                if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[0] != 1:
                    shape = list(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
                    raise ArgumentError(f"inputs[{i}].wav[{name!r}].wav must be one item [1, C, T], got {shape}.")
                wavs.append(wav.mean(dim=1).flatten())  # [T]
                lengths.append(torch.as_tensor(cond.length).reshape(-1))
                rates.extend(cond.sample_rate)
                paths.extend(cond.path)
                seeks.extend(cond.seek_time)
            longest = max(w.shape[-1] for w in wavs)
            batch = torch.stack([nn.functional.pad(w, (0, longest - w.shape[-1])) for w in wavs])  # [B, T]
            out[name] = WavCondition(batch.unsqueeze(1), torch.cat(lengths), rates, paths, seeks)
        return out

    def tokenize(self, inputs: tp.List[ConditioningAttributes]) -> tp.Dict[str, tp.Any]:
        """Per-sample attributes -> {attribute: tokenized batch}, text conditioners first, then wav ones."""
        samples = self._check_inputs(inputs)
        batches: tp.Dict[str, tp.Any] = {}
        batches.update(self._collate_text(samples))
        batches.update(self._collate_wavs(samples))
        out: tp.Dict[str, tp.Any] = {}
        for name, batch in batches.items():
            conditioner: BaseConditioner = self.conditioners[name]  # type: ignore[assignment]
            out[name] = conditioner.tokenize(batch)
        return out

    def forward(self, tokenized: tp.Dict[str, tp.Any]) -> tp.Dict[str, ConditionType]:
        """{attribute: tokenized} -> {attribute: (embeds [B, T, D], mask [B, T])}, in the same order."""
        if not isinstance(tokenized, dict):
            raise ArgumentTypeError("tokenized must be the dict returned by tokenize(), got "
                                    f"{type(tokenized).__name__}.")
        unknown = [name for name in tokenized if name not in self.conditioners]
        if unknown:
            raise ArgumentError(f"Unexpected conditioning attributes {unknown}; expected some of "
                                f"{list(self.conditioners.keys())}.")
        output: tp.Dict[str, ConditionType] = {}
        for name, inputs in tokenized.items():
            embeds, mask = self.conditioners[name](inputs)
            output[name] = (embeds, mask)
        return output
