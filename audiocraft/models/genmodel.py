"""BaseGenModel: what every generative model facade shares (MusicGen derives from it).

It owns a compression model (audio <-> tokens) and a language model over those tokens, turns user
inputs (descriptions, audio prompts) into ``ConditioningAttributes`` and prompt tokens, asks the LM for
tokens and decodes them to audio.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import typing as tp

import torch

from ..data.audio_utils import convert_audio
from ..modules.conditioners import ConditioningAttributes
from ..utils.autocast import TorchAutocast
from ..utils.validation import check_descriptions, check_number, check_tokens, check_waveform
from .encodec import CompressionModel
from .lm import LMModel

ProgressCallback = tp.Callable[[int, int], tp.Any]


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
        if max_duration is None:
            if self.cfg is None:
                raise ValueError("max_duration must be given when the LM carries no training config (lm.cfg).")
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

    def set_custom_progress_callback(self, progress_callback: tp.Optional[ProgressCallback] = None) -> None:
        """Called as ``progress_callback(generated_steps, total_steps)`` during generation."""
        if progress_callback is not None and not callable(progress_callback):
            raise TypeError(f"progress_callback must be callable or None, got {type(progress_callback).__name__}.")
        self._progress_callback = progress_callback

    @abstractmethod
    def set_generation_params(self, *args: tp.Any, **kwargs: tp.Any) -> None:
        """Set the generation parameters."""

    @staticmethod
    @abstractmethod
    def get_pretrained(name: str, device: tp.Optional[str] = None) -> "BaseGenModel":
        """Load a pretrained model."""

    # ---- generation entry points --------------------------------------------------------------
    def generate_unconditional(self, num_samples: int, progress: bool = False,
                               return_tokens: bool = False) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Generate ``num_samples`` clips with no text. Returns audio ``[B, C, T]`` (and tokens ``[B, K, F]``)."""
        check_number("num_samples", num_samples, minimum=1, integer=True)
        descriptions: tp.List[tp.Optional[str]] = [None] * num_samples
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        tokens = self._generate_tokens(attributes, prompt_tokens, progress)
        return self._output(tokens, return_tokens)

    def generate(self, descriptions: tp.List[tp.Optional[str]], progress: bool = False,
                 return_tokens: bool = False) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Generate one clip per description (``None`` = no text).

        Returns audio ``[B, C, T]`` float, and the tokens ``[B, K, F]`` int64 if ``return_tokens``.
        """
        descriptions = check_descriptions("descriptions", descriptions)
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, None)
        tokens = self._generate_tokens(attributes, prompt_tokens, progress)
        return self._output(tokens, return_tokens)

    def generate_continuation(self, prompt: torch.Tensor, prompt_sample_rate: int,
                              descriptions: tp.Optional[tp.List[tp.Optional[str]]] = None,
                              progress: bool = False, return_tokens: bool = False
                              ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        """Continue audio ``prompt`` (``[B, C, T]`` or ``[C, T]`` at ``prompt_sample_rate``).

        The prompt is resampled to the model's rate and encoded; the returned audio and tokens START WITH the
        prompt (total length = the ``duration`` set in ``set_generation_params``).
        """
        prompt = check_waveform("prompt", prompt, dims=(2, 3))
        check_number("prompt_sample_rate", prompt_sample_rate, minimum=0, strict_min=True, integer=True)
        if prompt.dim() == 2:
            prompt = prompt[None]
        if descriptions is None:
            descriptions = [None] * len(prompt)
        descriptions = check_descriptions("descriptions", descriptions)
        if len(descriptions) != len(prompt):
            raise ValueError(f"descriptions has {len(descriptions)} items but prompt has batch size {len(prompt)}; "
                             "they must match.")
        prompt = convert_audio(prompt, prompt_sample_rate, self.sample_rate, self.audio_channels)
        attributes, prompt_tokens = self._prepare_tokens_and_attributes(descriptions, prompt)
        tokens = self._generate_tokens(attributes, prompt_tokens, progress)
        return self._output(tokens, return_tokens)

    def generate_audio(self, gen_tokens: torch.Tensor) -> torch.Tensor:
        """Decode tokens ``[B, K, F]`` (int) into audio ``[B, C, F * hop]`` float."""
        check_tokens("gen_tokens", gen_tokens, self.compression_model.num_codebooks,
                     self.compression_model.cardinality)
        with torch.no_grad():
            return self.compression_model.decode(gen_tokens.to(self.device), None)

    # ---- internals ----------------------------------------------------------------------------
    def _output(self, tokens: torch.Tensor, return_tokens: bool
                ) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, torch.Tensor]]:
        audio = self.generate_audio(tokens)
        if return_tokens:
            return audio, tokens
        return audio

    @torch.no_grad()
    def _prepare_tokens_and_attributes(
            self, descriptions: tp.Sequence[tp.Optional[str]], prompt: tp.Optional[torch.Tensor],
    ) -> tp.Tuple[tp.List[ConditioningAttributes], tp.Optional[torch.Tensor]]:
        """Text attributes per item, and the prompt encoded to tokens ``[B, K, F]`` (or None)."""
        attributes = [ConditioningAttributes(text={"description": description}) for description in descriptions]
        prompt_tokens = None
        if prompt is not None:
            prompt_tokens, scale = self.compression_model.encode(prompt.to(self.device))
            if scale is not None:
                raise ValueError("Compression models that renormalise their input are not supported for prompts.")
        return attributes, prompt_tokens

    @abstractmethod
    def _generate_tokens(self, attributes: tp.List[ConditioningAttributes],
                         prompt_tokens: tp.Optional[torch.Tensor], progress: bool = False) -> torch.Tensor:
        """Generate tokens ``[B, K, F]`` for the given attributes and optional prompt."""
