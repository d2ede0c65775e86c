"""MAGNeT: masked, non-autoregressive text-to-music and text-to-audio generation, the facade users call.

>>> from audiocraft.models import MAGNeT
>>> model = MAGNeT.get_pretrained('facebook/magnet-small-10secs')
>>> model.set_generation_params(temperature=3.0, decoding_steps=[20, 10, 10, 10])
>>> wav = model.generate(['80s pop track with bassy drums and synth'])   # [1, 1, ~10 * 32000]

MAGNeT always generates one whole segment (the checkpoint's ``dataset.segment_duration``: 10 s or 30 s) in
``sum(decoding_steps)`` forward passes over the whole sequence, codebook after codebook (see
:mod:`audiocraft.models.lm_magnet`). With the default non-overlapping spans of 3 frames the sequence is cut to a
multiple of 3 frames (10 s: 498 frames instead of 500), exactly as Audiocraft does.
"""
from __future__ import annotations

import typing as tp

import torch

from .. import backends
from ..modules.conditioners import ConditioningAttributes
from ..utils.validation import ArgumentError, ArgumentTypeError, check_bool, check_number
from .encodec import CompressionModel
from .genmodel import MAX_CFG_COEF, MAX_TEMPERATURE, MIN_TEMPERATURE, BaseGenModel, GenerationOptions, WindowHook
from .lm_magnet import SPAN_ARRANGEMENTS, MagnetLMModel, check_decoding_steps
from .loaders import load_compression_model, load_lm_model_magnet
from .windows import Progress

__all__ = ["MAGNeT"]

_NOT_FOR_MAGNET = ("MAGNeT generates a whole segment at once by iterative masked decoding; {what} needs left-to-right"
                   " generation (MusicGen / AudioGen).")


class MAGNeT(BaseGenModel):
    """MAGNeT: a masked language model over EnCodec tokens, conditioned on text.

    Args:
        name: name of the model.
        compression_model: the codec (``facebook/encodec_32khz`` for the official checkpoints: 4 codebooks at 50 Hz).
        lm: the masked language model (:class:`~audiocraft.models.lm_magnet.MagnetLMModel`).
        max_duration: the segment length in seconds (default: the checkpoint's ``dataset.segment_duration``).
            ``duration`` equals it: MAGNeT always generates exactly one segment.

    Not supported (a clear error is raised): streaming output (``generate_stream``) and long-form schedules
    (``generate_long``), which need left-to-right generation; melody conditioning. ``seed`` gives each item its
    own draws (one multinomial per item and step) and hides the condition padding, as for MusicGen; ``cancel`` and
    a progress callback returning ``False`` stop generation, and since no frame is complete before the last
    codebook is decoded, the result then holds only the prompt frames (none for :meth:`generate`).
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: MagnetLMModel,
                 max_duration: tp.Optional[float] = None) -> None:
        if not isinstance(lm, MagnetLMModel):
            raise ArgumentTypeError(f"lm must be a MagnetLMModel, got {type(lm).__name__}; MusicGen / AudioGen "
                                    "language models go with their own facade.")
        super().__init__(name, compression_model, lm, max_duration)
        # MAGNeT operates over the fixed sequence length of its training segment.
        self.duration = self.max_duration if self.cfg is None else self.cfg.dataset.segment_duration
        self.set_generation_params()

    @staticmethod
    def get_pretrained(name: str = "facebook/magnet-small-10secs", device: tp.Optional[str] = None, *,
                       pack: bool = True) -> "MAGNeT":
        """Load a pretrained MAGNeT.

        Args:
            name: a hub id: ``facebook/magnet-small-10secs`` (300M), ``facebook/magnet-medium-10secs`` (1.5B),
                ``facebook/magnet-small-30secs``, ``facebook/magnet-medium-30secs`` (text to music, 10 or 30 s),
                ``facebook/audio-magnet-small``, ``facebook/audio-magnet-medium`` (text to sound effects, 10 s), or
                any repo / local folder with a MAGNeT ``state_dict.bin`` and a ``compression_state_dict.bin`` (the
                official ones point to the transformers EnCodec ``facebook/encodec_32khz``).
            device: ``'cuda'`` when available, else ``'cpu'``.

            pack: on CPU, run the LM's linear maps on this package's packed kernels (the default: each output summed
                in one fixed order, which reproduces every official golden here, including a continuation whose
                sampling hinges on a ~1e-6 near-tie). ``False`` keeps PyTorch's layout and matrix-matrix kernels:
                every MAGNeT step is a forward pass over the whole sequence (``2 * B * T`` rows, ~1000 for one 10 s
                item), where they are ~4x faster than the packed kernels (written for MusicGen's one-frame steps);
                tokens then follow MKL's round-off (the same math, a different order of the sums).
        """
        if not isinstance(name, str) or not name:
            raise ArgumentTypeError(f"name must be a non-empty str (hub id or folder), got {name!r}.")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_bool("pack", pack)
        with backends.preparing(device, pack=pack) as preparation:
            compression_model = load_compression_model(name, device=device)
            lm = tp.cast(MagnetLMModel, load_lm_model_magnet(
                name, compression_model_frame_rate=int(compression_model.frame_rate), device=device,
                on_state_loaded=preparation.on_state_loaded))
            conditioners = lm.condition_provider.conditioners
            if "self_wav" in conditioners:
                self_wav: tp.Any = conditioners["self_wav"]
                self_wav.match_len_on_eval = True
            preparation.prepare(lm)
            preparation.prepare_codec(compression_model)
        return MAGNeT(name, compression_model, lm)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 0, top_p: float = 0.9,
                              temperature: float = 3.0, max_cfg_coef: float = 10.0, min_cfg_coef: float = 1.0,
                              decoding_steps: tp.Sequence[int] = (20, 10, 10, 10),
                              span_arrangement: str = "nonoverlap") -> None:
        """Set the generation parameters (Audiocraft's defaults).

        Args:
            use_sampling: sample (True) or take the argmax of the guided logits (False).
            top_k: keep the k most likely tokens when sampling (used when ``top_p`` is 0; 0: no truncation).
            top_p: nucleus sampling threshold in [0, 1]; 0 disables it.
            temperature: initial softmax temperature in [1e-3, 1e3], annealed linearly to 0 within each codebook's
                decoding (floored at 0.01).
            max_cfg_coef, min_cfg_coef: classifier-free guidance coefficient at the first (everything masked) and
                last decoding step of each codebook, in [-1e3, 1e3].
            decoding_steps: decoding iterations for each codebook: one positive int per codebook (4).
            span_arrangement: ``'nonoverlap'`` (masked spans are fixed chunks of ``span_len`` frames; the
                sequence is cut to a multiple of it) or ``'stride1'`` (overlapping spans; full length).
        """
        check_bool("use_sampling", use_sampling)
        check_number("top_k", top_k, minimum=0, integer=True)
        check_number("top_p", top_p, minimum=0.0, maximum=1.0)
        check_number("temperature", temperature, minimum=MIN_TEMPERATURE, maximum=MAX_TEMPERATURE)
        check_number("max_cfg_coef", max_cfg_coef, minimum=-MAX_CFG_COEF, maximum=MAX_CFG_COEF)
        check_number("min_cfg_coef", min_cfg_coef, minimum=-MAX_CFG_COEF, maximum=MAX_CFG_COEF)
        steps = check_decoding_steps(decoding_steps, self.lm.n_q)
        if span_arrangement not in SPAN_ARRANGEMENTS:
            raise ArgumentError(f"span_arrangement must be one of {SPAN_ARRANGEMENTS}, got {span_arrangement!r}.")
        self.generation_params = {
            "use_sampling": use_sampling,
            "temp": temperature,
            "top_k": int(top_k),
            "top_p": float(top_p),
            "max_cfg_coef": max_cfg_coef,
            "min_cfg_coef": min_cfg_coef,
            "decoding_steps": steps,
            "span_arrangement": span_arrangement,
        }

    # ---- what a non-autoregressive model cannot do -----------------------------------------------------
    def generate_stream(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Iterator[torch.Tensor]:
        """Not supported: no frame is final before the last decoding step. Use :meth:`generate`."""
        raise NotImplementedError(_NOT_FOR_MAGNET.format(what="streaming output (generate_stream)"))

    def generate_long(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        """Not supported: MAGNeT generates exactly one segment (``max_duration``)."""
        raise NotImplementedError(_NOT_FOR_MAGNET.format(what="long-form generation (generate_long)"))

    # ---- token generation ---------------------------------------------------------------------------------
    def _generate_tokens(self, attributes: tp.List[ConditioningAttributes],
                         prompt_tokens: tp.Optional[torch.Tensor], progress: bool = False,
                         options: tp.Optional[GenerationOptions] = None, *, duration: tp.Optional[float] = None,
                         on_window: tp.Optional[WindowHook] = None) -> torch.Tensor:
        """Tokens ``[B, K, T]`` of one segment (``T = int(duration * frame_rate)``, cut to a multiple of the span
        length with non-overlapping spans), the prompt included."""
        options = options or GenerationOptions()
        if on_window is not None or options.on_frames is not None:
            raise NotImplementedError(_NOT_FOR_MAGNET.format(what="windowed or streaming generation"))
        if duration is not None and duration != self.duration:
            raise ArgumentError(f"MAGNeT generates exactly its segment ({self.duration} s), got duration={duration}.")
        total_gen_len = int(self.duration * self.frame_rate)
        prompt_length = 0 if prompt_tokens is None else prompt_tokens.shape[-1]
        if prompt_length >= total_gen_len:
            raise ArgumentError(f"The prompt ({prompt_length / self.frame_rate:.2f} s, {prompt_length} frames) must be "
                                f"shorter than the segment MAGNeT generates ({self.duration} s, {total_gen_len} "
                                "frames).")
        steps = sum(self.generation_params["decoding_steps"])
        tracker = Progress(steps, self._progress_callback, progress, options.cancel)
        with self.autocast:
            return self.lm.generate(prompt_tokens, attributes, callback=tracker if tracker.active else None,
                                    max_gen_len=total_gen_len, **self.generation_params, **options.lm_kwargs)
