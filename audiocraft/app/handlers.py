"""What the apps do when a user presses "Generate", as plain functions (no gradio here).

``validate_request`` turns raw form values into a ``GenerationRequest`` (reading the melody upload) or raises
``AppError`` with a message for the page; ``generate_one`` / ``generate_batch`` run the model. The gradio
layer (``ui.py``, ``ui_batched.py``) only maps these to components, ``gr.Error`` and ``gr.Warning``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import numbers
import os
import typing as tp

import torch

from ..utils.cancel import CancelToken
from ..utils.validation import check_text
from .errors import AppError
from .model_cache import ModelCache
from .settings import MODELS

MIN_DURATION = 1.0      # seconds
MAX_DURATION = 120.0    # seconds; beyond the model's 30 s window generation proceeds in overlapping windows
MAX_TOP_K = 2048        # codebook size of every MusicGen checkpoint
MAX_TEXT_CHARS = 2000
# The decoders of the interactive app, as Audiocraft's demo names them: the model's EnCodec, or MultiBand Diffusion
# (which also keeps the EnCodec take, to compare).
DEFAULT_DECODER, MBD_DECODER = "Default", "MultiBand_Diffusion"
DECODERS = (DEFAULT_DECODER, MBD_DECODER)

Melody = tp.Tuple[torch.Tensor, int]  # (wav [C, T] float, sample_rate)
Progress = tp.Callable[[int, int], tp.Any]


@dataclass(eq=False)
class GenerationRequest:
    """A validated request. ``text`` is None when empty; ``melody`` is the decoded upload, if any."""
    model: str
    text: tp.Optional[str]
    melody: tp.Optional[Melody]
    duration: float
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0
    decoder: str = DEFAULT_DECODER


@dataclass(eq=False)
class GenerationResult:
    """Generated audio ``wav`` ``[C, T]`` float at ``sample_rate``, and warnings to show the user.

    ``stopped``: the request was cancelled, ``wav`` holds what was generated until then (possibly nothing).
    ``diffusion``: with the MultiBand Diffusion decoder, the same tokens decoded by it ``[C, T]`` (``wav`` is then
    the EnCodec take); None otherwise, or when the request was stopped.
    """
    wav: torch.Tensor
    sample_rate: int
    warnings: tp.List[str] = field(default_factory=list)
    stopped: bool = False
    diffusion: tp.Optional[torch.Tensor] = None


def is_melody_model(name: str) -> bool:
    """Whether a model name denotes a melody (chroma-conditioned) checkpoint, judged by its name."""
    return "melody" in name.lower()


def _number(label: str, value: tp.Any, *, minimum: float, maximum: tp.Optional[float] = None,
            strict_min: bool = False, integer: bool = False) -> float:
    """Check a form number; messages name the field as the page shows it."""
    kind = "a whole number" if integer else "a number"
    if maximum is not None:
        allowed = f"{kind} from {minimum:g} to {maximum:g}" if not strict_min else \
            f"{kind} above {minimum:g} and at most {maximum:g}"
    else:
        allowed = f"{kind} above {minimum:g}" if strict_min else f"{kind} of at least {minimum:g}"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise AppError(f"{label} must be {allowed}, got '{value}'.") from None
    try:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond the float range (API clients can send 10 ** 400)
        number = math.nan
    if not math.isfinite(number):
        shown = "nothing" if value is None else _shorten(repr(value))
        raise AppError(f"{label} must be {allowed}, got {shown}.")
    if integer and not number.is_integer():
        raise AppError(f"{label} must be {allowed}, got {number:g}.")
    too_low = number <= minimum if strict_min else number < minimum
    if too_low or (maximum is not None and number > maximum):
        raise AppError(f"{label} must be {allowed}, got {number:g}.")
    return number


def _shorten(shown: str, limit: int = 40) -> str:
    """``shown`` cut to ``limit`` characters (a 400-digit number does not belong in a page message)."""
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def clean_text(text: tp.Any) -> tp.Optional[str]:
    """The description stripped of surrounding blanks; None when empty."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise AppError(f"The description must be text, got {type(text).__name__}.")
    try:
        check_text("The description", text)
    except ValueError as exc:
        raise AppError(str(exc)) from None
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise AppError(f"The description is too long ({len(text)} characters); keep it under {MAX_TEXT_CHARS}.")
    return text or None


def read_melody(path: tp.Any, max_seconds: tp.Optional[float] = None) -> tp.Optional[Melody]:
    """Decode a melody upload (a file path from gradio; None when nothing was uploaded).

    Reads at most ``max_seconds`` seconds. Returns ``(wav [C, T] float, sample_rate)``.
    """
    if path is None or (isinstance(path, str) and not path.strip()):
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise AppError(f"The melody upload is not a file (got {type(path).__name__}); upload it again.")
    name = os.path.basename(os.fspath(path))
    if not os.path.isfile(path):
        raise AppError(f"The melody file '{name}' is no longer on the server; upload it again.")
    from ..data.audio import audio_read  # lazy: PyAV

    try:
        wav, sample_rate = audio_read(path, duration=max_seconds if max_seconds else -1.0)
    except Exception as exc:  # noqa: BLE001 - FFmpeg raises many kinds; all mean "not audio we can read"
        # FFmpeg's reason, without the server-side path of the upload.
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = reason.replace(os.fspath(path), name)
        raise AppError(f"Could not read the melody file '{name}': it is not an audio file that FFmpeg can "
                       f"decode ({reason}).") from exc
    if wav.shape[-1] == 0:
        raise AppError(f"The melody file '{name}' holds no audio samples.")
    if not torch.isfinite(wav).all():
        raise AppError(f"The melody file '{name}' holds invalid (NaN or infinite) samples.")
    return wav, int(sample_rate)


def validate_request(model: tp.Any, text: tp.Any, melody: tp.Any, duration: tp.Any, top_k: tp.Any = 250,
                     top_p: tp.Any = 0.0, temperature: tp.Any = 1.0, cfg_coef: tp.Any = 3.0,
                     decoder: tp.Any = DEFAULT_DECODER, *,
                     models: tp.Sequence[str] = MODELS, min_duration: float = MIN_DURATION,
                     max_duration: float = MAX_DURATION) -> GenerationRequest:
    """Check the form values of the interactive app and decode the melody upload.

    Args:
        model: one of ``models``.
        text: the description (may be empty when a melody is given to a melody model).
        melody: path of the uploaded / recorded melody, or None.
        duration: seconds, in ``[min_duration, max_duration]``.
        top_k, top_p, temperature, cfg_coef: sampling parameters (see ``MusicGen.set_generation_params``).
        decoder: one of ``DECODERS`` (``'MultiBand_Diffusion'`` also decodes the tokens with MultiBand Diffusion).
    Raises:
        AppError: with a message naming the field, the value and what is allowed.
    """
    if model not in models:
        raise AppError(f"Unknown model {model!r}; choose one of: {', '.join(models)}.")
    if decoder not in DECODERS:
        raise AppError(f"Unknown decoder {_shorten(repr(decoder))}; choose one of: {', '.join(DECODERS)}.")
    description = clean_text(text)
    seconds = _number("Duration (seconds)", duration, minimum=min_duration, maximum=max_duration)
    k = int(_number("Top-k", top_k, minimum=0, maximum=MAX_TOP_K, integer=True))
    p = _number("Top-p", top_p, minimum=0.0, maximum=1.0)
    temp = _number("Temperature", temperature, minimum=0.0, strict_min=True)
    cfg = _number("Classifier-free guidance", cfg_coef, minimum=0.0)
    if melody is not None and not is_melody_model(model):
        if description is None:
            raise AppError(f"{model} cannot follow a melody: enter a description, or choose a melody model "
                           "such as facebook/musicgen-melody.")
    if description is None and melody is None:
        raise AppError("Enter a description of the music to generate (or upload a melody and choose a melody "
                       "model).")
    melody_audio = read_melody(melody, max_seconds=seconds) if is_melody_model(model) else None
    return GenerationRequest(model, description, melody_audio, seconds, k, p, temp, cfg, decoder)


def _extend_stride(max_duration: float) -> float:
    """Seconds each extra window advances: Audiocraft's 18 s, or half the window on short-window models."""
    return 18.0 if max_duration > 18.0 else max_duration / 2


def _has_melody_conditioner(model: tp.Any) -> bool:
    return "self_wav" in model.lm.condition_provider.conditioners


def _run(model: tp.Any, texts: tp.List[tp.Optional[str]], melodies: tp.List[tp.Optional[Melody]],
         progress: tp.Optional[Progress], cancel: tp.Optional[CancelToken] = None, return_tokens: bool = False
         ) -> tp.Any:
    """Generate ``[B, C, T]`` (and the tokens ``[B, K, F]``) for a batch; melodies are resampled to the model's
    rate first."""
    from ..data.audio_utils import convert_audio

    model.set_custom_progress_callback(progress)
    extra: tp.Dict[str, tp.Any] = {} if cancel is None else {"cancel": cancel}
    if return_tokens:
        extra["return_tokens"] = True
    try:
        if any(m is not None for m in melodies):
            wavs: tp.List[tp.Optional[torch.Tensor]] = [
                None if m is None else convert_audio(m[0], m[1], model.sample_rate, model.audio_channels)
                for m in melodies]
            return model.generate_with_chroma(texts, wavs, model.sample_rate, **extra)
        return model.generate(texts, **extra)
    except (TypeError, ValueError) as exc:
        raise AppError(f"Generation failed: {exc}") from exc
    finally:
        model.set_custom_progress_callback(None)


def set_params(model: tp.Any, request: GenerationRequest) -> None:
    """Apply the request's sampling parameters and duration to ``model`` (a bad value becomes an ``AppError``)."""
    try:
        model.set_generation_params(use_sampling=True, top_k=request.top_k, top_p=request.top_p,
                                    temperature=request.temperature, duration=request.duration,
                                    cfg_coef=request.cfg_coef, extend_stride=_extend_stride(model.max_duration))
    except (TypeError, ValueError) as exc:
        raise AppError(str(exc)) from exc


def usable_melody(model: tp.Any, request: GenerationRequest, warnings: tp.List[str]) -> tp.Optional[Melody]:
    """The request's melody if ``model`` can follow one (else a warning is added); checks there is an input."""
    melody = request.melody
    if melody is not None and not _has_melody_conditioner(model):
        warnings.append(f"{request.model} has no melody conditioning; the melody was ignored.")
        melody = None
    if request.text is None and melody is None:
        raise AppError(f"{request.model} cannot follow a melody: enter a description.")
    return melody


def generate_one(cache: ModelCache, request: GenerationRequest, progress: tp.Optional[Progress] = None,
                 cancel: tp.Optional[CancelToken] = None, status: tp.Optional[tp.Callable[[str], tp.Any]] = None
                 ) -> GenerationResult:
    """Generate one clip for ``request``; ``progress(done_steps, total_steps)`` is called along the way.

    Once ``cancel`` is set, generation stops at its next step and the result holds the audio made so far. With the
    MultiBand Diffusion decoder the tokens are also decoded by it (loaded before generating; ``status(text)`` is
    called before the slow stages), unless the request was stopped.
    """
    warnings: tp.List[str] = []
    with cache.use(request.model) as model:
        melody = usable_melody(model, request, warnings)
        set_params(model, request)
        decoder = None
        if request.decoder == MBD_DECODER:
            if status is not None and not cache.diffusion_loaded:
                status("Loading MultiBand Diffusion")
            decoder = cache.diffusion(model)
        if decoder is None:
            wav, tokens = _run(model, [request.text], [melody], progress, cancel), None
        else:
            wav, tokens = _run(model, [request.text], [melody], progress, cancel, return_tokens=True)
        sample_rate = int(model.sample_rate)
        stopped = cancel is not None and cancel.cancelled
        diffusion = None
        if tokens is not None and stopped:
            warnings.append("Stopped: the MultiBand Diffusion decoding was skipped.")
        elif tokens is not None and tokens.shape[-1]:
            if status is not None:
                status("Decoding with MultiBand Diffusion")
            diffusion = _decode(model, tokens, decoder)[0].detach().cpu()
    return GenerationResult(wav[0].detach().cpu(), sample_rate, warnings, stopped, diffusion)


def _decode(model: tp.Any, tokens: torch.Tensor, decoder: tp.Any) -> torch.Tensor:
    from ..models.decoders import decode
    try:
        return decode(model, tokens, decoder)
    except (TypeError, ValueError) as exc:
        raise AppError(f"MultiBand Diffusion decoding failed: {exc}") from exc


def generate_batch(cache: ModelCache, model_name: str, texts: tp.Sequence[tp.Optional[str]],
                   melodies: tp.Sequence[tp.Optional[Melody]], duration: float
                   ) -> tp.Tuple[tp.List[torch.Tensor], int]:
    """Generate one clip per (text, melody) pair in a single batched call, default sampling parameters.

    Returns a list of ``[C, T]`` float tensors and the model's sample rate.
    """
    if len(texts) != len(melodies):
        raise AppError(f"Got {len(texts)} descriptions but {len(melodies)} melodies; they must match.")
    request = GenerationRequest(model_name, None, None, duration)
    with cache.use(model_name) as model:
        if not _has_melody_conditioner(model):
            melodies = [None] * len(texts)
        set_params(model, request)
        wav = _run(model, list(texts), list(melodies), None) if texts else torch.zeros(0)
        sample_rate = int(model.sample_rate)
    return [item.detach().cpu() for item in wav], sample_rate


def validate_batch_item(text: tp.Any, melody: tp.Any, duration: float) -> tp.Tuple[tp.Optional[str],
                                                                                   tp.Optional[Melody]]:
    """Check one request of the batched app: a description or a melody (or both)."""
    description = clean_text(text)
    melody_audio = read_melody(melody, max_seconds=duration)
    if description is None and melody_audio is None:
        raise AppError("Enter a description of the music to generate, or upload a melody.")
    return description, melody_audio
