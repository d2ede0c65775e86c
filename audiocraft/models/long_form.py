"""Long-form generation driven by schedules: the description (and melody) in force changes over time.

Beyond ``max_duration`` a generation runs in overlapping windows (:mod:`.windows`). Here each window takes the
description and melody in force at the time its NEW content starts. Where they change, an optional crossfade
lets the previous conditions continue the same prompt for a while and fades from that continuation into the new
one (:mod:`.crossfade`); the tokens stay those of ``crossfade=0``.
"""
from __future__ import annotations

import copy
import typing as tp

import torch

from ..data.audio_utils import MAX_SAMPLE_RATE, convert_audio
from ..modules.conditioners import ConditioningAttributes
from ..utils.cancel import CancelToken
from ..utils.validation import ArgumentError, ArgumentTypeError, check_descriptions, check_number, check_waveform
from .crossfade import apply_crossfades, preserved_random_state
from .decoders import check_decoder, decode
from .melody import MELODY_CONDITION, null_melody, tiled_melody
from .windows import Window

if tp.TYPE_CHECKING:
    from .genmodel import AudioAndTokens, BaseGenModel, GenerationOptions, SeedType
    from .multibanddiffusion import MultiBandDiffusion

Schedule = tp.List[tp.Tuple[float, tp.Any]]
MelodySchedule = tp.List[tp.Tuple[float, tp.Optional[torch.Tensor]]]
Crossfade = tp.Tuple[int, torch.Tensor]  # (first frame of the new content, old conditions' frames [B, K, n])


def check_schedule(name: str, schedule: tp.Any) -> Schedule:
    """``[(start_seconds, value), ...]`` with increasing starts, the first at 0 s."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ArgumentTypeError(f"{name} must be a non-empty list of (start_seconds, value) pairs, got {schedule!r}.")
    entries = []
    previous = -1.0
    for i, entry in enumerate(schedule):
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ArgumentTypeError(f"{name}[{i}] must be a (start_seconds, value) pair, got {entry!r}.")
        start = check_number(f"{name}[{i}] start", entry[0], minimum=0.0)
        if start <= previous:
            raise ArgumentError(f"{name} start times must increase, got {start} after {previous}.")
        previous = float(start)
        entries.append((float(start), entry[1]))
    if entries[0][0] != 0.0:
        raise ArgumentError(f"{name} must start at 0 s, got {entries[0][0]}.")
    return entries


def entry_in_force(schedule: tp.Optional[tp.Sequence[tp.Tuple[float, tp.Any]]], time: float) -> int:
    """Index of the schedule entry in force at ``time`` seconds (-1 without a schedule)."""
    if not schedule:
        return -1
    return max(i for i, (start, _) in enumerate(schedule) if start <= time + 1e-9 or i == 0)


def _check_descriptions(entries: Schedule) -> int:
    """The batch size the description schedule implies (1 unless an entry is a list), every entry checked."""
    batch = 1
    for _, description in entries:
        if isinstance(description, (list, tuple)):
            batch = len(description)
    for i, (_, description) in enumerate(entries):
        items = description if isinstance(description, (list, tuple)) else [description] * batch
        if len(items) != batch:
            raise ArgumentError(f"schedule[{i}] has {len(items)} descriptions but the batch has {batch}.")
        check_descriptions(f"schedule[{i}] descriptions", list(items))
    return batch


def _check_melodies(model: "BaseGenModel", melody_schedule: tp.Any,
                    melody_sample_rate: tp.Optional[int]) -> tp.Optional[MelodySchedule]:
    if melody_schedule is None:
        return None
    if not model.has_melody:
        raise ArgumentError(f"Model '{model.name}' has no melody (chroma) conditioner; melody_schedule needs a "
                            "melody model.")
    if melody_sample_rate is None:
        raise ArgumentError("melody_sample_rate is required with melody_schedule.")
    check_number("melody_sample_rate", melody_sample_rate, minimum=0, strict_min=True, integer=True,
                 maximum=MAX_SAMPLE_RATE)
    melodies: MelodySchedule = []
    for i, (start, wav) in enumerate(check_schedule("melody_schedule", melody_schedule)):
        if wav is not None:
            check_waveform(f"melody_schedule[{i}] wav", wav, dims=(2,))
            wav = convert_audio(wav, melody_sample_rate, model.sample_rate, model.audio_channels)
        melodies.append((start, wav))
    return melodies


class ScheduleHook:
    """The window hook of a long-form generation: sets each window's conditions from the schedules and, with a
    crossfade, generates the previous conditions' continuation where they change (collected in
    :attr:`crossfades`)."""

    def __init__(self, model: "BaseGenModel", attributes: tp.List[ConditioningAttributes], schedule: Schedule,
                 melody_schedule: tp.Optional[MelodySchedule], crossfade: float,
                 options: "GenerationOptions") -> None:
        self.model, self.schedule, self.melody_schedule = model, schedule, melody_schedule
        self.crossfade, self.options = crossfade, options
        self.references = [attr.wav.get(MELODY_CONDITION) for attr in attributes]
        self.crossfades: tp.List[Crossfade] = []
        self._in_force: tp.Tuple[int, int] = (-1, -1)
        self._content_start = 0.0

    def __call__(self, window: Window, attributes: tp.List[ConditioningAttributes]) -> None:
        self.apply(attributes, window.time_offset, window.content_start)
        in_force = (entry_in_force(self.schedule, window.content_start),
                    entry_in_force(self.melody_schedule, window.content_start))
        if self.crossfade > 0 and window.index > 0 and in_force != self._in_force:
            # The previous conditions, for this window's times: what the music would have continued as.
            previous = copy.deepcopy(attributes)
            self.apply(previous, window.time_offset, self._content_start)
            assert window.prompt_tokens is not None
            self.crossfades.append((window.frame, self._continue_with(previous, window.prompt_tokens,
                                                                      window.gen_len)))
        self._in_force, self._content_start = in_force, window.content_start

    def apply(self, attributes: tp.List[ConditioningAttributes], time_offset: float, content_start: float) -> None:
        """Set each item's description and melody for the window starting at ``time_offset`` seconds."""
        model = self.model
        description = self.schedule[max(entry_in_force(self.schedule, content_start), 0)][1]
        for i, attr in enumerate(attributes):
            attr.text["description"] = description[i] if isinstance(description, (list, tuple)) else description
        length = int(model.max_duration * model.sample_rate)
        position = int(time_offset * model.sample_rate)
        if self.melody_schedule:
            start, melody = self.melody_schedule[entry_in_force(self.melody_schedule, content_start)]
            for attr in attributes:
                # The melody plays from its own start time, tiled periodically to cover the window.
                attr.wav[MELODY_CONDITION] = (
                    null_melody(model.sample_rate, model.device) if melody is None else
                    tiled_melody(melody.to(model.device)[None], max(0, position - int(start * model.sample_rate)),
                                 length, model.sample_rate))
            return
        for attr, ref in zip(attributes, self.references):
            if ref is not None and int(ref.length.max()) > 0:
                ref_wav = ref.wav[..., :int(ref.length.max())]
                attr.wav[MELODY_CONDITION] = tiled_melody(ref_wav, position, length, model.sample_rate)

    def _continue_with(self, attributes: tp.List[ConditioningAttributes], prompt_tokens: torch.Tensor,
                       max_gen_len: int) -> torch.Tensor:
        """``crossfade`` s of new frames ``[B, K, n]`` after ``prompt_tokens`` under ``attributes``, leaving the
        random streams of the main generation untouched."""
        model, options = self.model, self.options
        prompt_len = prompt_tokens.shape[-1]
        gen_len = min(max_gen_len, prompt_len + max(1, int(round(self.crossfade * model.frame_rate))))

        def _cancel_only(*_: tp.Any) -> tp.Optional[bool]:
            return False if options.cancel is not None and options.cancel.cancelled else None

        kwargs = {k: v for k, v in options.lm_kwargs.items() if k != "on_frames"}
        with preserved_random_state(options.generators, model.device), model.autocast:
            tokens = model.lm.generate(prompt_tokens, attributes, callback=_cancel_only, max_gen_len=gen_len,
                                       **model.generation_params, **kwargs)
        return tokens[:, :, prompt_len:]


def generate_long(model: "BaseGenModel", schedule: tp.Sequence[tp.Tuple[float, tp.Any]],
                  duration: tp.Optional[float] = None, *,
                  melody_schedule: tp.Optional[tp.Sequence[tp.Tuple[float, tp.Optional[torch.Tensor]]]] = None,
                  melody_sample_rate: tp.Optional[int] = None, progress: bool = False, return_tokens: bool = False,
                  seed: "SeedType" = None, cancel: tp.Optional[CancelToken] = None,
                  crossfade: float = 0.0, decoder: tp.Optional["MultiBandDiffusion"] = None) -> "AudioAndTokens":
    """Long-form generation driven by a schedule of prompts.

    Args:
        schedule: ``[(start_seconds, description), ...]`` sorted by time, first at 0; a description may be a
            str, None, or a list with one str/None per item (that list's length is the batch size).
        duration: total seconds (default: the ``duration`` of ``set_generation_params``). Beyond
            ``max_duration`` the usual extension windows are used; each window takes the description (and
            melody) in force when its new content starts.
        melody_schedule: ``[(start_seconds, wav [C, T] or None), ...]`` at ``melody_sample_rate`` (melody
            models): each melody is tiled from its start time to cover the windows it is in force for.
        progress, return_tokens, seed, cancel: as in ``generate``. The progress total is exact across windows.
        crossfade: seconds (0 <= crossfade <= ``extend_stride``; 0: off). Where a window's description or
            melody changed, the previous conditions also continue for this long and the audio fades from
            that continuation into the new one (raised cosine). The tokens are those of ``crossfade=0``; the
            audio differs from ``generate_audio(tokens)`` only inside the crossfades. The extra short
            generations are not counted in the progress.
        decoder: None (the model's codec) or a :class:`~audiocraft.models.MultiBandDiffusion` that decodes the
            tokens instead (the crossfades' continuations too); it draws from torch's global RNG.
    Returns:
        audio ``[B, C, T]`` (and tokens ``[B, K, F]``).
    """
    entries = check_schedule("schedule", schedule)
    stride = model.extend_stride if model.extend_stride is not None else model.max_duration
    check_number("crossfade", crossfade, minimum=0.0, maximum=stride)
    batch = _check_descriptions(entries)
    melodies = _check_melodies(model, melody_schedule, melody_sample_rate)
    if duration is not None:
        check_number("duration", duration, minimum=0.0, strict_min=True)
    decoder = check_decoder(model, decoder)
    first = entries[0][1]
    attributes, _ = model._prepare_tokens_and_attributes(list(first) if isinstance(first, (list, tuple))
                                                         else [first] * batch, None)
    options = model._options(seed, cancel, batch)
    hook = ScheduleHook(model, attributes, entries, melodies, float(crossfade), options)
    with model._threads():
        tokens = model._generate_tokens(attributes, None, progress, options,
                                        duration=None if duration is None else float(duration), on_window=hook)
        audio = apply_crossfades(model, tokens, decode(model, tokens, decoder), hook.crossfades,
                                 lambda codes: decode(model, codes, decoder))
    return (audio, tokens) if return_tokens else audio
