"""BaseGenModel: what every generative model facade shares (MusicGen and AudioGen derive from it).

It owns a compression model (audio <-> tokens) and a language model over those tokens, turns user
inputs (descriptions, melodies, audio prompts) into ``ConditioningAttributes`` and prompt tokens, asks the LM for
tokens (in overlapping windows beyond ``max_duration``, :mod:`.windows`) and decodes them to audio. Streaming
output (:mod:`.stream`) and long-form schedules (:mod:`.long_form`) are built on the same pieces.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import dataclasses
from pathlib import Path
import typing as tp

import torch

from .. import backends
from ..data.audio_utils import MAX_SAMPLE_RATE, convert_audio
from ..modules.conditioners import ConditioningAttributes
from ..utils.autocast import TorchAutocast
from ..utils.cancel import CancelToken
from ..utils.tokens_io import load_tokens
from ..utils.validation import (ArgumentError, ArgumentTypeError, check_bool, check_descriptions, check_number,
                                check_tokens, check_waveform)
from .builders import get_wrapped_compression_model
from .encodec import CompressionModel
from .lm import LMModel
from .melody import (MELODY_CONDITION, MelodyList, MelodyType, check_melodies, melody_condition, null_melody,
                     tiled_melody)
from .windows import Progress, ProgressCallback, Window, window_plan

# Sampling parameters beyond these overflow float32 logits (Audiocraft lets them through to a NaN failure).
MIN_TEMPERATURE, MAX_TEMPERATURE, MAX_CFG_COEF = 1e-3, 1e3, 1e3
MAX_BATCH_SIZE = 1024  # generate_unconditional's num_samples: beyond, memory and time grow without bound
SeedType = tp.Union[None, int, tp.Sequence[tp.Union[int, torch.Generator]]]
AudioAndTokens = tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]
# Called before each window with the window and the attributes it will be generated with (it may change them).
WindowHook = tp.Callable[[Window, tp.List[ConditioningAttributes]], None]


@dataclasses.dataclass
class GenerationOptions:
    """Per-call options of a generation (none of them changes the official default path).

    generators: one ``torch.Generator`` per item (None: torch's global RNG, as Audiocraft).
    cancel: a :class:`CancelToken`; when set, generation stops and returns what it has.
    on_frames: called with each block of newly completed frames ``[B, K, n]`` (streaming output).
    """
    generators: tp.Optional[tp.List[torch.Generator]] = None
    cancel: tp.Optional[CancelToken] = None
    on_frames: tp.Optional[tp.Callable[[torch.Tensor], tp.Any]] = None

    @property
    def lm_kwargs(self) -> tp.Dict[str, tp.Any]:
        """Extra keyword arguments for ``LMModel.generate`` (empty on the official path)."""
        kwargs: tp.Dict[str, tp.Any] = {}
        if self.generators is not None:
            # Per-item seeds: each item's draws come from its own generator, and its result must not depend on
            # the other items' text lengths, hence the condition padding mask. A single item has no batch-mates:
            # it runs unmasked (Audiocraft's path), which is what the masked batch reproduces for it up to float
            # rounding.
            kwargs["generator"] = self.generators
            kwargs["mask_condition_padding"] = len(self.generators) > 1
        if self.on_frames is not None:
            kwargs["on_frames"] = self.on_frames
        return kwargs


def make_generators(seed: SeedType, batch_size: int, device: torch.device) -> tp.Optional[tp.List[torch.Generator]]:
    """Per-item generators from ``seed``: None -> None; int s -> seeds s, s+1, ...; a list -> one per item."""
    if seed is None:
        return None
    if isinstance(seed, bool):
        raise ArgumentTypeError(f"seed must be None, an int or a list of ints / torch.Generators, got {seed!r}.")
    if isinstance(seed, int):
        seeds: tp.List[tp.Union[int, torch.Generator]] = [seed + i for i in range(batch_size)]
    elif isinstance(seed, (list, tuple)):
        seeds = list(seed)
        if len(seeds) != batch_size:
            raise ArgumentError(f"seed has {len(seeds)} items but the batch has {batch_size}; give one per item.")
    else:
        raise ArgumentTypeError(f"seed must be None, an int or a list of ints / torch.Generators, got "
                                f"{type(seed).__name__}.")
    generators = []
    for i, item in enumerate(seeds):
        if isinstance(item, torch.Generator):
            generators.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < 2 ** 63:
                raise ArgumentError(f"seed[{i}] must be in [0, 2**63), got {item}.")
            generators.append(torch.Generator(device=device).manual_seed(item))
        else:
            raise ArgumentTypeError(f"seed[{i}] must be an int or a torch.Generator, got {type(item).__name__}.")
    return generators


def check_compatible(compression_model: CompressionModel, lm: LMModel) -> None:
    """The LM models the codec's tokens: same number of codebooks (after stereo interleaving) and codebook size;
    a ValueError names both otherwise."""
    n_q, card = int(getattr(lm, "num_codebooks")), int(getattr(lm, "card"))
    if n_q != compression_model.num_codebooks:
        stereo = (" (stereo: both channels' codebooks interleaved)"
                  if compression_model.channels == 2 else "")
        raise ValueError(f"the language model has {n_q} codebooks but its compression model gives "
                         f"{compression_model.num_codebooks}{stereo} for {compression_model.channels} channel(s); "
                         "the LM config and the compression model do not belong together")
    if card != compression_model.cardinality:
        raise ValueError(f"the language model has {card} codes per codebook but its compression model has "
                         f"{compression_model.cardinality}; the LM config and the compression model do not belong "
                         "together")


def generation_params_setter(default_duration: float, default_extend_stride: float) -> tp.Callable[..., None]:
    """The ``set_generation_params`` method of a left-to-right facade whose defaults are ``default_duration`` and
    ``default_extend_stride`` seconds (MusicGen: 30 and 18, AudioGen: 10 and 2); the other defaults are Audiocraft's."""

    def set_generation_params(self: "BaseGenModel", use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = default_duration, cfg_coef: float = 3.0,
                              two_step_cfg: bool = False, extend_stride: float = default_extend_stride) -> None:
        """Check and set the generation parameters.

        Args:
            use_sampling: sample (True) or take the argmax (False).
            top_k: keep the k most likely tokens when sampling (used when ``top_p`` is 0).
            top_p: nucleus sampling threshold in [0, 1]; 0 disables it (top-k is used).
            temperature: softmax temperature, in [1e-3, 1e3].
            duration: seconds of audio to generate, at least one frame (0.02 s). Beyond ``max_duration``
                generation proceeds in windows that overlap by ``max_duration - extend_stride`` seconds.
            cfg_coef: classifier-free guidance coefficient, in [-1e3, 1e3].
            two_step_cfg: run the conditional and unconditional passes separately (same result, slower); unlike
                Audiocraft, ``cfg_coef`` is honoured in that mode too.
            extend_stride: seconds the window advances when extending (0 < extend_stride < max_duration).
        """
        check_bool("use_sampling", use_sampling)
        check_number("top_k", top_k, minimum=0, integer=True)
        check_number("top_p", top_p, minimum=0.0, maximum=1.0)
        # Bounds keep the scaled logits finite in float32 (1e-300 or 1e300 would overflow them to inf / NaN).
        check_number("temperature", temperature, minimum=MIN_TEMPERATURE, maximum=MAX_TEMPERATURE)
        check_number("duration", duration, minimum=0.0, strict_min=True)
        if duration * self.frame_rate < 1:
            raise ArgumentError(f"duration must be at least one frame ({1 / self.frame_rate:g} s at "
                                f"{self.frame_rate:g} Hz), got {duration}.")
        check_number("cfg_coef", cfg_coef, minimum=-MAX_CFG_COEF, maximum=MAX_CFG_COEF)
        check_bool("two_step_cfg", two_step_cfg)
        check_number("extend_stride", extend_stride, minimum=0.0, strict_min=True)
        if extend_stride >= self.max_duration:
            raise ArgumentError(f"extend_stride must be < max_duration ({self.max_duration} s), got {extend_stride}.")
        self.extend_stride = extend_stride
        self.duration = float(duration)
        self.generation_params = {
            "use_sampling": use_sampling,
            "temp": temperature,
            "top_k": int(top_k),
            "top_p": float(top_p),
            "cfg_coef": cfg_coef,
            "two_step_cfg": two_step_cfg,
        }

    set_generation_params.__qualname__ = "set_generation_params"
    return set_generation_params


class BaseGenModel(ABC):
    """Base of the generation facades.

    Args:
        name: name of the model (hub id, folder or short name it was loaded from).
        compression_model: the codec turning audio into tokens and back.
        lm: the language model over the codec's tokens.
        max_duration: longest audio (seconds) generated in one window; longer requests are generated in
            overlapping windows. Defaults to the training segment duration stored in ``lm.cfg``.
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None) -> None:
        self.name = name
        self.compression_model = compression_model
        self.lm = lm
        self.cfg = getattr(lm, "cfg", None)
        # Inference only: no dropout, no gradients.
        self.compression_model.eval()
        self.lm.eval()
        if self.cfg is not None:  # stereo LMs: the mono codec wrapped to interleave both channels' codes
            self.compression_model = get_wrapped_compression_model(self.compression_model, self.cfg)
        check_compatible(self.compression_model, lm)
        if max_duration is None:
            if self.cfg is None:
                raise ArgumentError("max_duration must be given when the LM carries no training config (lm.cfg).")
            max_duration = float(self.cfg.dataset.segment_duration)
        check_number("max_duration", max_duration, minimum=0, strict_min=True)
        self.max_duration: float = max_duration
        self.duration = self.max_duration
        self.extend_stride: tp.Optional[float] = None
        self.device = next(iter(lm.parameters())).device
        self.generation_params: tp.Dict[str, tp.Any] = {}
        self._progress_callback: tp.Optional[ProgressCallback] = None
        if self.device.type == "cpu":
            self.autocast = TorchAutocast(enabled=False)
        else:
            self.autocast = TorchAutocast(enabled=True, device_type=self.device.type, dtype=torch.float16)

    # ---- properties ---------------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        """Token frames per second of audio (50 for MusicGen)."""
        return self.compression_model.frame_rate

    @property
    def sample_rate(self) -> int:
        """Sample rate of the generated audio (32000 for MusicGen)."""
        return self.compression_model.sample_rate

    @property
    def audio_channels(self) -> int:
        """Channels of the generated audio (1 for MusicGen mono)."""
        return self.compression_model.channels

    @property
    def has_melody(self) -> bool:
        """Whether the model is conditioned on melodies (a chroma ``self_wav`` conditioner)."""
        return MELODY_CONDITION in self.lm.condition_provider.conditioners

    def set_custom_progress_callback(self, progress_callback: tp.Optional[ProgressCallback] = None) -> None:
        """Called as ``progress_callback(generated_steps, total_steps)`` during generation."""
        if progress_callback is not None and not callable(progress_callback):
            raise ArgumentTypeError("progress_callback must be callable or None, got "
                                    f"{type(progress_callback).__name__}.")
        self._progress_callback = progress_callback

    @abstractmethod
    def set_generation_params(self, *args: tp.Any, **kwargs: tp.Any) -> None:
        """Set the generation parameters (MusicGen's and AudioGen's: :func:`generation_params_setter`)."""

    @staticmethod
    @abstractmethod
    def get_pretrained(name: str, device: tp.Optional[str] = None) -> "BaseGenModel":
        """Load a pretrained model."""

    # ---- generation entry points --------------------------------------------------------------
    def generate_unconditional(self, num_samples: int, progress: bool = False, return_tokens: bool = False, *,
                               seed: SeedType = None, cancel: tp.Optional[CancelToken] = None) -> AudioAndTokens:
        """Generate ``num_samples`` clips with no text. Returns audio ``[B, C, T]`` (and tokens ``[B, K, F]``).

        ``seed`` and ``cancel`` work as in :meth:`generate`.
        """
        check_number("num_samples", num_samples, minimum=1, maximum=MAX_BATCH_SIZE, integer=True)
        descriptions: tp.List[tp.Optional[str]] = [None] * num_samples
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        return self._run(attributes, prompt_tokens, progress, return_tokens, seed, cancel)

    def generate(self, descriptions: tp.List[tp.Optional[str]], progress: bool = False,
                 return_tokens: bool = False, *, seed: SeedType = None, cancel: tp.Optional[CancelToken] = None
                 ) -> AudioAndTokens:
        """Generate one clip per description (``None`` = no text).

        Args:
            descriptions: one text (or None) per item.
            progress: print progress (a custom callback set with ``set_custom_progress_callback`` is always called;
                if it returns ``False`` generation stops, like ``cancel``).
            return_tokens: also return the tokens.
            seed: None uses torch's global RNG (the official behaviour: seed with ``torch.manual_seed``). An int
                ``s`` gives item i the seed ``s + i``; a list gives one seed (or ``torch.Generator``) per item. With
                per-item seeds an item's result does not depend on the rest of the batch (the padding of the other
                texts is masked out), so the same seed regenerates the same take alone or in any batch.
            cancel: a :class:`~audiocraft.utils.cancel.CancelToken`; once cancelled, generation stops at the next
                step and the audio generated so far is returned (possibly empty).
        Returns:
            audio ``[B, C, T]`` float, and the tokens ``[B, K, F]`` int64 if ``return_tokens``.
        """
        descriptions = check_descriptions("descriptions", descriptions)
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        return self._run(attributes, prompt_tokens, progress, return_tokens, seed, cancel)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: tp.Optional[tp.List[tp.Optional[str]]] = None,
                              progress: bool = False, return_tokens: bool = False, *,
                              seed: SeedType = None, cancel: tp.Optional[CancelToken] = None) -> AudioAndTokens:
        """Continue audio ``prompt`` (``[B, C, T]`` or ``[C, T]`` at ``prompt_sample_rate``).

        The prompt is resampled to the model's rate and channels and encoded; the returned audio and tokens START
        WITH the prompt (total length = the ``duration`` set in ``set_generation_params``). ``seed`` and
        ``cancel`` work as in :meth:`generate`.
        """
        descriptions, prompt_tokens = self._prepare_prompt(prompt, prompt_sample_rate, descriptions)
        attributes, _ = self._prepare_tokens_and_attributes(descriptions, None)
        return self._run(attributes, prompt_tokens, progress, return_tokens, seed, cancel)

    def generate_audio(self, gen_tokens: tp.Union[torch.Tensor, str, Path]) -> torch.Tensor:
        """Decode tokens ``[B, K, F]`` (int), or a tokens file written by ``save_tokens``, into audio
        ``[B, C, F * hop]`` float."""
        if isinstance(gen_tokens, (str, Path)):
            package = load_tokens(gen_tokens)
            if package["sample_rate"] != self.sample_rate or package["frame_rate"] != self.frame_rate:
                raise ArgumentError(f"tokens file {gen_tokens} was made at {package['sample_rate']} Hz / "
                                    f"{package['frame_rate']} fps; this model uses {self.sample_rate} Hz / "
                                    f"{self.frame_rate} fps.")
            gen_tokens = package["tokens"]
        tokens = check_tokens("gen_tokens", gen_tokens, self.compression_model.num_codebooks,
                              self.compression_model.cardinality)
        if tokens.shape[-1] == 0:
            return torch.zeros(tokens.shape[0], self.audio_channels, 0, device=self.device)
        with torch.no_grad():
            return self.compression_model.decode(tokens.to(self.device), None)

    # ---- beyond Audiocraft: streaming output and long-form schedules ------------------------------------
    def generate_stream(self, descriptions: tp.List[tp.Optional[str]], *, chunk_seconds: float = 1.0,
                        first_chunk_seconds: tp.Optional[float] = None,
                        prompt: tp.Optional[torch.Tensor] = None, prompt_sample_rate: tp.Optional[int] = None,
                        melody_wavs: tp.Optional[MelodyType] = None, melody_sample_rate: tp.Optional[int] = None,
                        progress: bool = False, seed: SeedType = None, cancel: tp.Optional[CancelToken] = None,
                        decoder: tp.Any = None) -> tp.Iterator[torch.Tensor]:
        """Yield audio ``[B, C, n]`` chunks of about ``chunk_seconds`` while generation is still running.

        Same inputs as :meth:`generate`, :meth:`generate_continuation` (``prompt``, ``prompt_sample_rate``) or
        ``generate_with_chroma`` (``melody_wavs``, ``melody_sample_rate``). The first chunk arrives after about
        ``chunk_seconds`` of audio has been generated (plus the codec's 3.75-frame look-ahead), not at the end.
        ``first_chunk_seconds`` (default ``chunk_seconds``) sets the first chunk's length alone: a shorter first
        chunk starts playback sooner (e.g. ``first_chunk_seconds=0.5``: about half the wait), later chunks
        keep ``chunk_seconds``.
        The tokens are those :meth:`generate` returns; the concatenated chunks equal its audio within float
        round-off (~1e-6). Closing the iterator early (``break``) cancels the generation. Only the model's own
        codec streams: a ``decoder`` (MultiBandDiffusion, which needs the whole clip) is refused with an error.
        """
        from .stream import generate_stream
        return generate_stream(self, descriptions, chunk_seconds=chunk_seconds,
                               first_chunk_seconds=first_chunk_seconds, prompt=prompt,
                               prompt_sample_rate=prompt_sample_rate, melody_wavs=melody_wavs,
                               melody_sample_rate=melody_sample_rate, progress=progress, seed=seed, cancel=cancel,
                               decoder=decoder)

    def generate_long(self, schedule: tp.Sequence[tp.Tuple[float, tp.Any]], duration: tp.Optional[float] = None, *,
                      melody_schedule: tp.Optional[tp.Sequence[tp.Tuple[float, tp.Optional[torch.Tensor]]]] = None,
                      melody_sample_rate: tp.Optional[int] = None, progress: bool = False,
                      return_tokens: bool = False, seed: SeedType = None, cancel: tp.Optional[CancelToken] = None,
                      crossfade: float = 0.0, decoder: tp.Any = None) -> AudioAndTokens:
        """Long-form generation driven by a schedule of prompts; see :func:`audiocraft.models.long_form.generate_long`.

        ``schedule``: ``[(start_seconds, description or [one per item]), ...]`` from 0 s on; ``duration``: total
        seconds (default: the ``duration`` of ``set_generation_params``); ``melody_schedule``: ``[(start_seconds,
        wav [C, T] or None), ...]`` at ``melody_sample_rate`` (melody models); ``crossfade``: seconds of fade from
        the previous conditions' continuation where they change (0: off); ``decoder``: None (the model's codec) or a
        ``MultiBandDiffusion`` decoding the tokens instead. Returns audio ``[B, C, T]`` (and tokens ``[B, K, F]``).
        """
        from .long_form import generate_long
        return generate_long(self, schedule, duration, melody_schedule=melody_schedule,
                             melody_sample_rate=melody_sample_rate, progress=progress, return_tokens=return_tokens,
                             seed=seed, cancel=cancel, crossfade=crossfade, decoder=decoder)

    # ---- internals ----------------------------------------------------------------------------
    def _options(self, seed: SeedType, cancel: tp.Optional[CancelToken], batch_size: int) -> GenerationOptions:
        if cancel is not None and not isinstance(cancel, CancelToken):
            raise ArgumentTypeError(f"cancel must be a CancelToken or None, got {type(cancel).__name__}.")
        return GenerationOptions(generators=make_generators(seed, batch_size, self.device), cancel=cancel)

    def _threads(self) -> tp.ContextManager[None]:
        """The backend's thread handling around a generation (see :func:`audiocraft.backends.threads`)."""
        return backends.threads()

    def _run(self, attributes: tp.List[ConditioningAttributes], prompt_tokens: tp.Optional[torch.Tensor],
             progress: bool, return_tokens: bool, seed: SeedType, cancel: tp.Optional[CancelToken]) -> AudioAndTokens:
        """Generate tokens for ``attributes`` (and the prompt), decode them, return audio (and tokens)."""
        options = self._options(seed, cancel, len(attributes))
        with self._threads():
            tokens = self._generate_tokens(attributes, prompt_tokens, progress, options)
            audio = self.generate_audio(tokens)
        return (audio, tokens) if return_tokens else audio

    def _output(self, tokens: torch.Tensor, return_tokens: bool) -> AudioAndTokens:
        with self._threads():
            audio = self.generate_audio(tokens)
        return (audio, tokens) if return_tokens else audio

    def _prepare_prompt(self, prompt: torch.Tensor, prompt_sample_rate: int,
                        descriptions: tp.Optional[tp.List[tp.Optional[str]]]
                        ) -> tp.Tuple[tp.List[tp.Optional[str]], torch.Tensor]:
        """Validate, resample and encode an audio prompt: (descriptions, prompt tokens ``[B, K, F]``)."""
        prompt = check_waveform("prompt", prompt, dims=(2, 3))
        check_number("prompt_sample_rate", prompt_sample_rate, minimum=0, strict_min=True, integer=True,
                     maximum=MAX_SAMPLE_RATE)
        if prompt.dim() == 2:
            prompt = prompt[None]
        if descriptions is None:
            descriptions = [None] * len(prompt)
        descriptions = check_descriptions("descriptions", descriptions)
        if len(descriptions) != len(prompt):
            raise ArgumentError(f"descriptions has {len(descriptions)} items but prompt has batch size {len(prompt)}; "
                                "they must match.")
        if prompt.dtype != torch.float32:  # float16 / float64 prompts: the codec computes in float32
            prompt = prompt.float()
        samples = prompt.shape[-1]
        prompt = convert_audio(prompt, prompt_sample_rate, self.sample_rate, self.audio_channels)
        if prompt.shape[-1] < 1:
            raise ArgumentError(f"prompt is too short: {samples} sample(s) at {prompt_sample_rate} Hz is less than one "
                                f"sample at the model's {self.sample_rate} Hz.")
        _, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, prompt)
        assert prompt_tokens is not None
        return descriptions, prompt_tokens

    def _melody_attributes(self, descriptions: tp.List[tp.Optional[str]], melody_wavs: MelodyType,
                           melody_sample_rate: int) -> tp.List[ConditioningAttributes]:
        """Validate melodies, convert them to the model's rate and channels and build the attributes."""
        descriptions = check_descriptions("descriptions", descriptions)
        if not self.has_melody:
            raise ArgumentError(f"Model '{self.name}' ({type(self).__name__}) has no melody (chroma) conditioner; "
                                "following a melody needs a melody model such as 'facebook/musicgen-melody' or "
                                "'facebook/musicgen-stereo-melody'.")
        melodies = check_melodies(melody_wavs, len(descriptions), self.sample_rate, melody_sample_rate,
                                  self.audio_channels)
        attributes, _ = self._prepare_tokens_and_attributes(descriptions, None, melodies)
        return attributes

    @torch.no_grad()
    def _prepare_tokens_and_attributes(
            self, descriptions: tp.Sequence[tp.Optional[str]], prompt: tp.Optional[torch.Tensor],
            melody_wavs: tp.Optional[MelodyList] = None,
    ) -> tp.Tuple[tp.List[ConditioningAttributes], tp.Optional[torch.Tensor]]:
        """Text (and, for melody models, melody) attributes per item, and the prompt encoded to tokens
        ``[B, K, F]`` (or None)."""
        attributes = [ConditioningAttributes(text={"description": description}) for description in descriptions]
        if self.has_melody:
            for i, attr in enumerate(attributes):
                melody = None if melody_wavs is None else melody_wavs[i]
                attr.wav[MELODY_CONDITION] = (null_melody(self.sample_rate, self.device) if melody is None
                                              else melody_condition(melody, self.sample_rate, self.device))
        prompt_tokens = None
        if prompt is not None:
            prompt_tokens, scale = self.compression_model.encode(prompt.to(self.device))
            if scale is not None:
                raise ArgumentError("Compression models that renormalise their input are not supported for prompts.")
        return attributes, prompt_tokens

    def _steps(self, gen_len: int, prompt_len: int) -> int:
        """Number of LM decoding steps to go from ``prompt_len`` to ``gen_len`` frames."""
        pattern = self.lm.pattern_provider.get_pattern(gen_len)
        # The sequence has num_sequence_steps + 1 positions (position 0 is the all-special start step).
        first_step = pattern.get_first_step_with_timesteps(prompt_len)
        if first_step is None:
            raise ArgumentError(f"A prompt of {prompt_len} frames leaves nothing to generate in {gen_len} frames.")
        return pattern.num_sequence_steps + 1 - first_step

    def _melody_window_hook(self, attributes: tp.List[ConditioningAttributes]) -> tp.Optional[WindowHook]:
        """Audiocraft's extension semantics: each window sees the melody tiled periodically from its own start."""
        references = [attr.wav.get(MELODY_CONDITION) for attr in attributes]
        length = int(self.max_duration * self.sample_rate)

        def hook(window: Window, window_attributes: tp.List[ConditioningAttributes]) -> None:
            for attr, ref in zip(window_attributes, references):
                if ref is not None and int(ref.length.max()) > 0:
                    ref_wav = ref.wav[..., :int(ref.length.max())]
                    attr.wav[MELODY_CONDITION] = tiled_melody(ref_wav, int(window.time_offset * self.sample_rate),
                                                              length, self.sample_rate)

        return hook if any(ref is not None for ref in references) else None

    def _generate_tokens(self, attributes: tp.List[ConditioningAttributes],
                         prompt_tokens: tp.Optional[torch.Tensor], progress: bool = False,
                         options: tp.Optional[GenerationOptions] = None, *, duration: tp.Optional[float] = None,
                         on_window: tp.Optional[WindowHook] = None) -> torch.Tensor:
        """Generate tokens ``[B, K, F]`` for ``duration`` seconds (default: ``self.duration``), in overlapping
        windows beyond ``max_duration``; ``on_window`` (default: melody tiling) sees each window first.

        Stops early (returning the frames generated so far) when ``options.cancel`` is set or the progress
        callback returns ``False``.
        """
        options = options or GenerationOptions()
        duration = self.duration if duration is None else duration
        max_prompt_len = int(min(duration, self.max_duration) * self.frame_rate)
        prompt_length = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
        if prompt_length > max_prompt_len:
            raise ArgumentError(f"The prompt ({prompt_length / self.frame_rate:.2f} s) is longer than the audio to "
                                f"generate ({min(duration, self.max_duration):.2f} s); raise `duration` with "
                                "set_generation_params or shorten the prompt.")
        plan = window_plan(duration, self.max_duration, self.extend_stride, self.frame_rate, prompt_length)
        stride_tokens = int(self.frame_rate * (self.extend_stride or 0))
        window_steps = []  # exact progress across windows: every window's steps, counted before starting
        for _, gen_len in plan:
            window_steps.append(self._steps(gen_len, prompt_length))
            prompt_length = gen_len - stride_tokens
        tracker = Progress(sum(window_steps), self._progress_callback, progress, options.cancel)
        if on_window is None and len(plan) > 1:
            on_window = self._melody_window_hook(attributes)
        all_tokens = [] if prompt_tokens is None else [prompt_tokens]
        for index, ((time_offset, max_gen_len), steps) in enumerate(zip(plan, window_steps)):
            prompt_len = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
            if on_window is not None:
                content_start = time_offset + prompt_len / self.frame_rate if index > 0 else 0.0
                on_window(Window(index, time_offset, content_start, max_gen_len, prompt_tokens,
                                 sum(t.shape[-1] for t in all_tokens)), attributes)
            with self.autocast:
                gen_tokens = self.lm.generate(prompt_tokens, attributes, callback=tracker if tracker.active else None,
                                              max_gen_len=max_gen_len, **self.generation_params, **options.lm_kwargs)
            all_tokens.append(gen_tokens[:, :, prompt_len:])
            if tracker.stopped or gen_tokens.shape[-1] < max_gen_len:
                break
            prompt_tokens = gen_tokens[:, :, stride_tokens:]
            tracker.done += steps
        return torch.cat(all_tokens, dim=-1)
