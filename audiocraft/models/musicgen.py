"""MusicGen: text (and melody) to music, the facade users call.

>>> from audiocraft.models import MusicGen
>>> model = MusicGen.get_pretrained('facebook/musicgen-small')
>>> model.set_generation_params(duration=8)
>>> wav = model.generate(['lofi beat with a mellow piano'])   # [1, 1, 8 * 32000]
"""
from __future__ import annotations

import contextlib
import copy
import typing as tp
import warnings

import torch

from ..data.audio_utils import MAX_SAMPLE_RATE, convert_audio
from ..modules.conditioners import ConditioningAttributes, WavCondition
from ..utils import native_kernels
from ..utils.cancel import CancelToken
from ..utils.validation import check_bool, check_descriptions, check_number, check_waveform
from ._crossfade import apply_crossfades, preserved_random_state
from .encodec import CompressionModel
from .genmodel import BaseGenModel, GenerationOptions, SeedType
from .lm import LMModel
from .loaders import load_compression_model, load_lm_model
from .quantize import prepare_lm_for_inference, weight_format

# Short names of Audiocraft's first release; still accepted, with a deprecation warning.
_HF_MODEL_CHECKPOINTS_MAP = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}

# Sampling parameters beyond these overflow float32 logits (Audiocraft lets them through to a NaN failure).
MIN_TEMPERATURE, MAX_TEMPERATURE, MAX_CFG_COEF = 1e-3, 1e3, 1e3

MelodyList = tp.List[tp.Optional[torch.Tensor]]
MelodyType = tp.Union[torch.Tensor, MelodyList]


def _entry_in_force(schedule: tp.Optional[tp.Sequence[tp.Tuple[float, tp.Any]]], time: float) -> int:
    """Index of the schedule entry in force at ``time`` seconds (-1 without a schedule)."""
    if not schedule:
        return -1
    return max(i for i, (start, _) in enumerate(schedule) if start <= time + 1e-9 or i == 0)


class MusicGen(BaseGenModel):
    """MusicGen: a language model over EnCodec tokens conditioned on text (and, for melody models, chroma).

    Args:
        name: name of the model.
        compression_model: EnCodec model (audio <-> 4 codebooks at 50 Hz).
        lm: the language model.
        max_duration: longest single generation window in seconds (default: the training segment, 30 s).
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None) -> None:
        super().__init__(name, compression_model, lm, max_duration)
        self.set_generation_params(duration=15)  # Audiocraft's default duration.

    @staticmethod
    def get_pretrained(name: str = "facebook/musicgen-melody", device: tp.Optional[str] = None,
                       *, stem_separation: bool = True, dtype: tp.Optional[torch.dtype] = None,
                       quantize: tp.Optional[str] = None, pack: bool = True) -> "MusicGen":
        """Load a pretrained MusicGen.

        Args:
            name: a hub id (``facebook/musicgen-small``, ``-medium``, ``-melody``, ``-large`` or any repo with
                ``state_dict.bin`` and ``compression_state_dict.bin``), a local folder holding those two files, or
                ``'debug'`` for a tiny random model. The short names small/medium/melody/large still work but are
                deprecated.
            device: ``'cuda'`` when available, else ``'cpu'``.
            stem_separation: for melody models, isolate the melody with demucs (when the ``demucs`` extra is
                installed) before extracting chroma, as the official model was trained. ``False`` uses the full mix.
            dtype: weights of the language model. ``None`` / ``torch.float32``: exact float32 (the default).
                ``torch.bfloat16``: bf16 weights, float32 activations (on CPU ~2x less memory read per step;
                elsewhere the LM is converted with ``lm.to(dtype)``, e.g. ``torch.float16`` on a GPU).
            quantize: ``None`` or ``'int8'`` (CPU only): int8 weights for the LM's linear layers, one scale per
                output channel; activations quantized per row to int16 and the products summed exactly (~4x less
                memory read per step).
            pack: on CPU, run the LM's linear maps on the native kernels with the float32 weights rearranged once
                (same math, ~3-4x faster decoding steps than PyTorch's default; packed while T5 loads, one copy in
                memory; ``state_dict()`` and training still see plain weights). ``False`` keeps PyTorch's layout
                and kernels.
            See :mod:`audiocraft.models.quantize` for the accuracy of each option.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str (hub id, folder or 'debug'), got {name!r}.")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_bool("pack", pack)
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be None or a torch.dtype (torch.float32, torch.bfloat16), got {dtype!r}.")
        on_cpu = torch.device(device).type == "cpu"
        cpu_format = weight_format(dtype, quantize) if on_cpu else None  # refuses what the CPU path cannot do
        if not on_cpu and quantize is not None:
            raise ValueError(f"quantize={quantize!r} is only implemented for CPU inference; device is {device!r}.")
        if name == "debug":
            from .builders import get_debug_compression_model, get_debug_lm_model
            compression_model = get_debug_compression_model(device)
            lm = get_debug_lm_model(device)
            prepare_lm_for_inference(lm, dtype=dtype, quantize=quantize, pack=pack)
            return MusicGen(name, compression_model, lm, max_duration=30)
        if name in _HF_MODEL_CHECKPOINTS_MAP:
            warnings.warn("MusicGen pretrained model relying on deprecated checkpoint mapping. "
                          f"Please use full pre-trained id instead: facebook/musicgen-{name}", DeprecationWarning,
                          stacklevel=2)
            name = _HF_MODEL_CHECKPOINTS_MAP[name]
        with contextlib.ExitStack() as stack:
            def prepack(state: tp.Mapping[str, tp.Any]) -> None:
                # the float32 weights are packed on a thread of their own while T5 is imported and built
                if pack and cpu_format == "native":
                    stack.enter_context(native_kernels.Prepacking(
                        [v for k, v in state.items() if isinstance(v, torch.Tensor) and v.dtype == torch.float32
                         and str(k).startswith(("transformer.", "linears."))], release_sources=True))

            lm = tp.cast(LMModel, load_lm_model(name, device=device, for_generation=True, on_state_loaded=prepack))
            compression_model = load_compression_model(name, device=device)
            conditioners = lm.condition_provider.conditioners
            if "self_wav" in conditioners:
                chroma: tp.Any = conditioners["self_wav"]
                chroma.match_len_on_eval = True
                chroma._use_masking = False
                chroma.stem_separation = stem_separation
            prepare_lm_for_inference(lm, dtype=dtype, quantize=quantize, pack=pack, release_sources=True)
        native_kernels.release_openmp_threads()  # the loading thread's pool: generation may run on another thread
        return MusicGen(name, compression_model, lm)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 30.0, cfg_coef: float = 3.0,
                              two_step_cfg: bool = False, extend_stride: float = 18) -> None:
        """Set the generation parameters.

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
            raise ValueError(f"duration must be at least one frame ({1 / self.frame_rate:g} s at "
                             f"{self.frame_rate:g} Hz), got {duration}.")
        check_number("cfg_coef", cfg_coef, minimum=-MAX_CFG_COEF, maximum=MAX_CFG_COEF)
        check_bool("two_step_cfg", two_step_cfg)
        check_number("extend_stride", extend_stride, minimum=0.0, strict_min=True)
        if extend_stride >= self.max_duration:
            raise ValueError(f"extend_stride must be < max_duration ({self.max_duration} s), got {extend_stride}.")
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

    # ---- melody ---------------------------------------------------------------------------------
    def generate_with_chroma(self, descriptions: tp.List[tp.Optional[str]], melody_wavs: MelodyType,
                             melody_sample_rate: int, progress: bool = False, return_tokens: bool = False, *,
                             seed: SeedType = None, cancel: tp.Optional[CancelToken] = None
                             ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Generate music following each melody's chroma (melody models only).

        Args:
            descriptions: one text (or None) per item.
            melody_wavs: a tensor ``[B, C, T]`` (or ``[C, T]`` for one item), or a list of ``[C, T]`` tensors or
                None (no melody for that item), at ``melody_sample_rate``.
            melody_sample_rate: sample rate of the melodies (> 0).
            seed, cancel: as in :meth:`generate`.
        Returns:
            audio ``[B, C, T]`` (and tokens ``[B, K, F]`` if ``return_tokens``).
        """
        attributes = self._melody_attributes(descriptions, melody_wavs, melody_sample_rate)
        tokens = self._generate_tokens(attributes, None, progress, self._options(seed, cancel, len(attributes)))
        return self._output(tokens, return_tokens)

    def _melody_attributes(self, descriptions: tp.List[tp.Optional[str]], melody_wavs: MelodyType,
                           melody_sample_rate: int) -> tp.List[ConditioningAttributes]:
        """Validate melodies, resample them to the model rate and build the attributes."""
        descriptions = check_descriptions("descriptions", descriptions)
        check_number("melody_sample_rate", melody_sample_rate, minimum=0, strict_min=True, integer=True,
                     maximum=MAX_SAMPLE_RATE)
        if "self_wav" not in self.lm.condition_provider.conditioners:
            raise ValueError(f"Model '{self.name}' has no melody (chroma) conditioner; generate_with_chroma needs a "
                             "melody model such as 'facebook/musicgen-melody'.")
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
            raise TypeError("melody_wavs must be a tensor [B, C, T] or a list of [C, T] tensors or None, "
                            f"got {type(melody_wavs).__name__}.")
        if len(melodies) != len(descriptions):
            raise ValueError(f"melody_wavs has {len(melodies)} items but descriptions has {len(descriptions)}; "
                             "they must match.")
        melodies = [None if wav is None else convert_audio(wav, melody_sample_rate, self.sample_rate,
                                                           self.audio_channels)
                    for wav in melodies]
        attributes, _ = self._prepare_tokens_and_attributes(descriptions, None, melodies)
        return attributes

    # ---- beyond Audiocraft: streaming output and long-form schedules ------------------------------------
    def generate_stream(self, descriptions: tp.List[tp.Optional[str]], *, chunk_seconds: float = 1.0,
                        prompt: tp.Optional[torch.Tensor] = None, prompt_sample_rate: tp.Optional[int] = None,
                        melody_wavs: tp.Optional[MelodyType] = None, melody_sample_rate: tp.Optional[int] = None,
                        progress: bool = False, seed: SeedType = None, cancel: tp.Optional[CancelToken] = None
                        ) -> tp.Iterator[torch.Tensor]:
        """Yield audio ``[B, C, n]`` chunks of about ``chunk_seconds`` while generation is still running.

        Same inputs as :meth:`generate`, :meth:`generate_continuation` (``prompt``, ``prompt_sample_rate``) or
        :meth:`generate_with_chroma` (``melody_wavs``, ``melody_sample_rate``). The first chunk arrives after about
        ``chunk_seconds`` of audio has been generated (plus the codec's 3.75-frame look-ahead), not at the end. The
        concatenated chunks equal the audio :meth:`generate` returns for the same tokens (up to float round-off).
        Closing the iterator early (``break``) cancels the generation.
        """
        check_number("chunk_seconds", chunk_seconds, minimum=0.0, strict_min=True)
        prompt_tokens = None
        if prompt is not None:
            if prompt_sample_rate is None:
                raise ValueError("prompt_sample_rate is required with prompt.")
            descriptions, prompt_tokens = self._prepare_prompt(prompt, prompt_sample_rate, descriptions)
        if melody_wavs is not None:
            if melody_sample_rate is None:
                raise ValueError("melody_sample_rate is required with melody_wavs.")
            attributes = self._melody_attributes(descriptions, melody_wavs, melody_sample_rate)
        else:
            descriptions = check_descriptions("descriptions", descriptions)
            attributes, _ = self._prepare_tokens_and_attributes(descriptions, None)
        options = self._options(seed, cancel, len(attributes))
        from ._stream import stream_audio
        return stream_audio(self, lambda opts: self._generate_tokens(attributes, prompt_tokens, progress, opts),
                            options, prompt_tokens, chunk_seconds)

    def generate_long(self, schedule: tp.Sequence[tp.Tuple[float, tp.Any]], duration: tp.Optional[float] = None, *,
                      melody_schedule: tp.Optional[tp.Sequence[tp.Tuple[float, tp.Optional[torch.Tensor]]]] = None,
                      melody_sample_rate: tp.Optional[int] = None, progress: bool = False,
                      return_tokens: bool = False, seed: SeedType = None, cancel: tp.Optional[CancelToken] = None,
                      crossfade: float = 0.0
                      ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Long-form generation driven by a schedule of prompts.

        Args:
            schedule: ``[(start_seconds, description), ...]`` sorted by time, first at 0; a description may be a
                str, None, or a list with one str/None per item (that list's length is the batch size).
            duration: total seconds (default: the ``duration`` of ``set_generation_params``). Beyond
                ``max_duration`` the usual extension windows are used; each window takes the description (and
                melody) in force when its new content starts.
            melody_schedule: ``[(start_seconds, wav [C, T] or None), ...]`` at ``melody_sample_rate`` (melody
                models): each melody is tiled from its start time to cover the windows it is in force for.
            progress, return_tokens, seed, cancel: as in :meth:`generate`. The progress total is exact across
                windows.
            crossfade: seconds (0 <= crossfade <= ``extend_stride``; 0: off). Where a window's description or
                melody changed, the previous conditions also continue for this long and the audio fades from
                that continuation into the new one (raised cosine). The tokens are those of ``crossfade=0``; the
                audio differs from ``generate_audio(tokens)`` only inside the crossfades. The extra short
                generations are not counted in the progress.
        Returns:
            audio ``[B, C, T]`` (and tokens ``[B, K, F]``).
        """
        entries = self._check_schedule("schedule", schedule)
        stride = self.extend_stride if self.extend_stride is not None else self.max_duration
        check_number("crossfade", crossfade, minimum=0.0, maximum=stride)
        batch = 1
        for _, description in entries:
            if isinstance(description, (list, tuple)):
                batch = len(description)
        for i, (_, description) in enumerate(entries):
            items = description if isinstance(description, (list, tuple)) else [description] * batch
            if len(items) != batch:
                raise ValueError(f"schedule[{i}] has {len(items)} descriptions but the batch has {batch}.")
            check_descriptions(f"schedule[{i}] descriptions", list(items))
        melodies: tp.Optional[tp.List[tp.Tuple[float, tp.Optional[torch.Tensor]]]] = None
        if melody_schedule is not None:
            if "self_wav" not in self.lm.condition_provider.conditioners:
                raise ValueError(f"Model '{self.name}' has no melody (chroma) conditioner; melody_schedule needs a "
                                 "melody model.")
            if melody_sample_rate is None:
                raise ValueError("melody_sample_rate is required with melody_schedule.")
            check_number("melody_sample_rate", melody_sample_rate, minimum=0, strict_min=True, integer=True,
                         maximum=MAX_SAMPLE_RATE)
            melodies = []
            for i, (start, wav) in enumerate(self._check_schedule("melody_schedule", melody_schedule)):
                if wav is not None:
                    check_waveform(f"melody_schedule[{i}] wav", wav, dims=(2,))
                    wav = convert_audio(wav, melody_sample_rate, self.sample_rate, self.audio_channels)
                melodies.append((start, wav))
        old_duration = self.duration
        if duration is not None:
            check_number("duration", duration, minimum=0.0, strict_min=True)
            self.duration = float(duration)
        try:
            first = entries[0][1]
            first_items = list(first) if isinstance(first, (list, tuple)) else [first] * batch
            attributes, _ = self._prepare_tokens_and_attributes(first_items, None)
            options = self._options(seed, cancel, batch)
            options.schedule = entries
            options.melody_schedule = melodies
            options.crossfade = float(crossfade)
            tokens = self._generate_tokens(attributes, None, progress, options)
        finally:
            self.duration = old_duration
        audio = apply_crossfades(self, tokens, self.generate_audio(tokens), options.crossfades)
        return (audio, tokens) if return_tokens else audio

    @staticmethod
    def _check_schedule(name: str, schedule: tp.Any) -> tp.List[tp.Tuple[float, tp.Any]]:
        if not isinstance(schedule, (list, tuple)) or not schedule:
            raise TypeError(f"{name} must be a non-empty list of (start_seconds, value) pairs, got {schedule!r}.")
        entries = []
        previous = -1.0
        for i, entry in enumerate(schedule):
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise TypeError(f"{name}[{i}] must be a (start_seconds, value) pair, got {entry!r}.")
            start = check_number(f"{name}[{i}] start", entry[0], minimum=0.0)
            if start <= previous:
                raise ValueError(f"{name} start times must increase, got {start} after {previous}.")
            previous = float(start)
            entries.append((float(start), entry[1]))
        if entries[0][0] != 0.0:
            raise ValueError(f"{name} must start at 0 s, got {entries[0][0]}.")
        return entries

    # ---- internals ------------------------------------------------------------------------------
    def _null_melody(self) -> WavCondition:
        return WavCondition(torch.zeros((1, 1, 1), device=self.device), torch.tensor([0], device=self.device),
                            sample_rate=[self.sample_rate], path=[None])

    @torch.no_grad()
    def _prepare_tokens_and_attributes(  # type: ignore[override]
            self, descriptions: tp.Sequence[tp.Optional[str]], prompt: tp.Optional[torch.Tensor],
            melody_wavs: tp.Optional[MelodyList] = None,
    ) -> tp.Tuple[tp.List[ConditioningAttributes], tp.Optional[torch.Tensor]]:
        attributes, prompt_tokens = super()._prepare_tokens_and_attributes(descriptions, prompt)
        if "self_wav" in self.lm.condition_provider.conditioners:
            for i, attr in enumerate(attributes):
                melody = None if melody_wavs is None else melody_wavs[i]
                if melody is None:
                    attr.wav["self_wav"] = self._null_melody()
                else:
                    attr.wav["self_wav"] = WavCondition(
                        melody[None].to(device=self.device), torch.tensor([melody.shape[-1]], device=self.device),
                        sample_rate=[self.sample_rate], path=[None])
        return attributes, prompt_tokens

    def _window_plan(self, prompt_length: int) -> tp.List[tp.Tuple[float, int]]:
        """Windows of an extended generation: (time offset in s, frames to generate incl. prompt) each."""
        total_gen_len = int(self.duration * self.frame_rate)
        if self.duration <= self.max_duration:
            return [(0.0, total_gen_len)]
        assert self.extend_stride is not None
        stride_tokens = int(self.frame_rate * self.extend_stride)
        plan = []
        offset = 0
        while offset + prompt_length < total_gen_len:
            time_offset = offset / self.frame_rate
            chunk_duration = min(self.duration - time_offset, self.max_duration)
            max_gen_len = int(chunk_duration * self.frame_rate)
            plan.append((time_offset, max_gen_len))
            # The next window is prompted by this window's tokens from `stride_tokens` on.
            prompt_length = max_gen_len - stride_tokens
            offset += stride_tokens
        return plan

    def _steps(self, gen_len: int, prompt_len: int) -> int:
        """Number of LM decoding steps to go from ``prompt_len`` to ``gen_len`` frames."""
        pattern = self.lm.pattern_provider.get_pattern(gen_len)
        # The sequence has num_sequence_steps + 1 positions (position 0 is the all-special start step).
        first_step = pattern.get_first_step_with_timesteps(prompt_len)
        if first_step is None:
            raise ValueError(f"A prompt of {prompt_len} frames leaves nothing to generate in {gen_len} frames.")
        return pattern.num_sequence_steps + 1 - first_step

    def _generate_tokens(self, attributes: tp.List[ConditioningAttributes],
                         prompt_tokens: tp.Optional[torch.Tensor], progress: bool = False,
                         options: tp.Optional[GenerationOptions] = None) -> torch.Tensor:
        """Generate tokens ``[B, K, F]``, in overlapping windows when ``duration > max_duration``.

        Stops early (returning the frames generated so far) when ``options.cancel`` is set or the progress
        callback returns ``False``.
        """
        options = options or GenerationOptions()
        max_prompt_len = int(min(self.duration, self.max_duration) * self.frame_rate)
        prompt_length = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
        if prompt_length > max_prompt_len:
            raise ValueError(f"The prompt ({prompt_length / self.frame_rate:.2f} s) is longer than the audio to "
                             f"generate ({min(self.duration, self.max_duration):.2f} s); raise `duration` with "
                             "set_generation_params or shorten the prompt.")
        plan = self._window_plan(prompt_length)
        stride_tokens = int(self.frame_rate * (self.extend_stride or 0))
        # Exact progress across windows: total = every window's steps, counted before starting.
        window_steps = []
        p = prompt_length
        for _, gen_len in plan:
            window_steps.append(self._steps(gen_len, p))
            p = gen_len - stride_tokens
        total_steps = sum(window_steps)
        done_steps = 0
        stopped = False

        def _progress_callback(generated: int, _window_total: int) -> tp.Optional[bool]:
            nonlocal stopped
            generated += done_steps
            keep_going: tp.Any = None
            if self._progress_callback is not None:
                keep_going = self._progress_callback(generated, total_steps)
            elif progress:
                print(f"{generated: 6d} / {total_steps: 6d}", end="\r")
            if keep_going is False or (options.cancel is not None and options.cancel.cancelled):
                stopped = True
                return False
            return None

        use_callback = progress or self._progress_callback is not None or options.cancel is not None
        callback: tp.Any = _progress_callback if use_callback else None
        ref_wavs = [attr.wav.get("self_wav") for attr in attributes]
        all_tokens = [] if prompt_tokens is None else [prompt_tokens]
        last_in_force, last_content_start = (-1, -1), 0.0
        for index, ((time_offset, max_gen_len), steps) in enumerate(zip(plan, window_steps)):
            prompt_len = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
            if len(plan) > 1 or options.schedule or options.melody_schedule:
                # Time (s) at which this window's new content starts: what the schedules are looked up at.
                content_start = time_offset + prompt_len / self.frame_rate if index > 0 else 0.0
                self._apply_schedules(attributes, ref_wavs, options, time_offset, content_start)
                in_force = (_entry_in_force(options.schedule, content_start),
                            _entry_in_force(options.melody_schedule, content_start))
                if options.crossfade > 0 and index > 0 and in_force != last_in_force:
                    # The previous conditions, for this window's times: what the music would have continued as.
                    previous = copy.deepcopy(attributes)
                    self._apply_schedules(previous, ref_wavs, options, time_offset, last_content_start)
                    assert prompt_tokens is not None
                    frame = sum(t.shape[-1] for t in all_tokens)
                    old = self._continue_with(previous, prompt_tokens, max_gen_len, options)
                    options.crossfades.append((frame, old))
                last_in_force, last_content_start = in_force, content_start
            with self.autocast:
                gen_tokens = self.lm.generate(prompt_tokens, attributes, callback=callback, max_gen_len=max_gen_len,
                                              **self.generation_params, **options.lm_kwargs)
            all_tokens.append(gen_tokens[:, :, prompt_len:])
            if stopped or gen_tokens.shape[-1] < max_gen_len:
                break
            prompt_tokens = gen_tokens[:, :, stride_tokens:]
            done_steps += steps
        return torch.cat(all_tokens, dim=-1)

    def _continue_with(self, attributes: tp.List[ConditioningAttributes], prompt_tokens: torch.Tensor,
                       max_gen_len: int, options: GenerationOptions) -> torch.Tensor:
        """The crossfade continuation: ``options.crossfade`` s of new frames ``[B, K, n]`` after
        ``prompt_tokens`` under ``attributes``, leaving the random streams of the main generation untouched."""
        prompt_len = prompt_tokens.shape[-1]
        gen_len = min(max_gen_len, prompt_len + max(1, int(round(options.crossfade * self.frame_rate))))

        def _cancel_only(*_: tp.Any) -> tp.Optional[bool]:
            return False if options.cancel is not None and options.cancel.cancelled else None

        kwargs = {k: v for k, v in options.lm_kwargs.items() if k != "on_frames"}
        with preserved_random_state(options.generators, self.device), self.autocast:
            tokens = self.lm.generate(prompt_tokens, attributes, callback=_cancel_only, max_gen_len=gen_len,
                                      **self.generation_params, **kwargs)
        return tokens[:, :, prompt_len:]

    def _apply_schedules(self, attributes: tp.List[ConditioningAttributes],
                         ref_wavs: tp.List[tp.Optional[WavCondition]], options: GenerationOptions,
                         time_offset: float, content_start: float) -> None:
        """Set each item's description and melody for the window starting at ``time_offset`` seconds."""
        if options.schedule:
            active = [entry for entry in options.schedule if entry[0] <= content_start + 1e-9]
            description = (active[-1] if active else options.schedule[0])[1]
            for i, attr in enumerate(attributes):
                attr.text["description"] = description[i] if isinstance(description, (list, tuple)) else description
        wav_target_length = int(self.max_duration * self.sample_rate)
        initial_position = int(time_offset * self.sample_rate)
        if options.melody_schedule:
            active_melodies = [entry for entry in options.melody_schedule if entry[0] <= content_start + 1e-9]
            start, melody = active_melodies[-1] if active_melodies else options.melody_schedule[0]
            for attr in attributes:
                if melody is None:
                    attr.wav["self_wav"] = self._null_melody()
                    continue
                # The melody plays from its own start time, tiled periodically to cover the window.
                offset = max(0, initial_position - int(start * self.sample_rate))
                positions = torch.arange(offset, offset + wav_target_length, device=self.device)
                attr.wav["self_wav"] = WavCondition(
                    melody.to(self.device)[None][..., positions % melody.shape[-1]],
                    torch.tensor([wav_target_length], device=self.device), [self.sample_rate], [None], [0.0])
            return
        for attr, ref_wav in zip(attributes, ref_wavs):
            if ref_wav is None or int(ref_wav.length.max()) == 0:
                continue
            # Tile the melody periodically so it covers this window (Audiocraft's extension semantics).
            wav_length = int(ref_wav.length.max())
            positions = torch.arange(initial_position, initial_position + wav_target_length, device=self.device)
            attr.wav["self_wav"] = WavCondition(
                ref_wav.wav[..., positions % wav_length], torch.full_like(ref_wav.length, wav_target_length),
                [self.sample_rate] * ref_wav.wav.size(0), [None], [0.0])
