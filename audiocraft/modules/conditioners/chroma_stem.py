"""The melody conditioner of MusicGen-melody: chroma of the melodic stems of a waveform."""
from __future__ import annotations

import logging
import math
import typing as tp
import warnings

import torch

from ..chroma import ChromaExtractor
from .attributes import WavCondition
from .base import WaveformConditioner
from ...utils.validation import ArgumentError

logger = logging.getLogger(__name__)


class ChromaStemConditioner(WaveformConditioner):
    """Chroma of the 'vocals' + 'other' stems of the melody, projected to the LM width (Audiocraft 1.3).

    Pipeline for a melody ``wav [B, C, T]`` at ``sample_rate[0]`` (all items must share it):

    1. source separation with demucs' ``htdemucs`` (imported lazily, loaded on first use): the audio is
       converted to the separator's rate / channels with ``demucs.audio.convert_audio``, separated with
       ``demucs.apply.apply_model``, the 'vocals' and 'other' stems are summed and converted back to
       ``self.sample_rate`` mono with :func:`audiocraft.data.audio_utils.convert_audio`;
       when separation is off (``stem_separation=False``) or demucs is not installed (warned once), the full mix
       is used instead, only converted to ``self.sample_rate`` mono;
    2. :class:`ChromaExtractor` -> chroma ``[B, frames, n_chroma]``;
    3. with ``match_len_on_eval``, chroma is tiled (repeated from the start) or truncated to ``chroma_len`` frames,
       the number of frames of ``duration`` seconds of audio.

    A null melody (``wav.shape[-1] == 1``, see ``nullify_wav``) skips separation: its chroma is all zeros, so the
    argmax chroma is a one-hot of bin 0 on every frame.

    Args:
        output_dim: width expected by the language model.
        sample_rate: rate the chroma is computed at (the model's rate).
        n_chroma: number of chroma bins.
        radix2_exp: chroma window is ``2 ** radix2_exp`` samples.
        duration: training segment duration in seconds (sets ``chroma_len``).
        match_len_on_eval: tile / truncate chroma to ``chroma_len`` (also disables masking).
        eval_wavs: evaluation wavs of Audiocraft's training solver: not supported, must be None.
        n_eval_wavs: ignored (goes with ``eval_wavs``).
        cache_path: Audiocraft's training-time chroma cache: not supported; a warning is given and chroma is
            computed on the fly (same values).
        device: device of the chroma buffers and of the separator.
        stem_separation: run demucs (True, Audiocraft's behaviour) or use the full mix (False).
        **kwargs: passed to :class:`ChromaExtractor` (``argmax``, ``norm``, ``nfft``, ``winlen``, ``winhop``).
    """

    STEMS = ("vocals", "other")
    _separator: tp.Any  # demucs model, False (not installed) or None (not loaded yet); not a submodule

    def __init__(self, output_dim: int, sample_rate: int, n_chroma: int, radix2_exp: int, duration: float,
                 match_len_on_eval: bool = True, eval_wavs: tp.Optional[str] = None, n_eval_wavs: int = 0,
                 cache_path: tp.Optional[str] = None, device: tp.Union[torch.device, str] = "cpu",
                 stem_separation: bool = True, **kwargs: tp.Any) -> None:
        super().__init__(dim=n_chroma, output_dim=output_dim, device=device)
        if eval_wavs is not None:
            raise NotImplementedError("ChromaStemConditioner(eval_wavs=...) needs Audiocraft's training datasets "
                                      "and is not supported; pass eval_wavs=None.")
        if cache_path is not None:
            warnings.warn(f"ChromaStemConditioner ignores cache_path={cache_path!r}: chroma is computed on the fly.",
                          stacklevel=2)
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration <= 0:
            raise ArgumentError(f"duration must be a positive number of seconds, got {duration!r}.")
        self.sample_rate = sample_rate
        self.duration = float(duration)
        self.match_len_on_eval = match_len_on_eval
        if match_len_on_eval:
            self._use_masking = False
        self.stem_separation = stem_separation
        self.eval_wavs = None
        self.cache = None
        self.chroma = ChromaExtractor(sample_rate=sample_rate, n_chroma=n_chroma, radix2_exp=radix2_exp,
                                      device=device, **kwargs)
        self.chroma_len = self.get_chroma_len()
        # The separator is loaded on first use and kept outside the module tree (no weights in checkpoints).
        # None: not tried yet; False: demucs is not installed.
        self.__dict__["_separator"] = None

    def get_chroma_len(self) -> int:
        """Chroma frames of ``duration`` seconds of audio at ``sample_rate`` (235 for 30 s at 32 kHz)."""
        return self.chroma.num_frames(int(self.sample_rate * self.duration))

    _get_chroma_len = get_chroma_len

    def _downsampling_factor(self) -> int:
        return self.chroma.winhop

    # ---- source separation -------------------------------------------------------------------------------------
    @property
    def demucs(self) -> tp.Any:
        """The demucs separator (loaded on first access), or None when demucs is not installed."""
        if self._separator is None:
            try:
                from demucs import pretrained
            except ImportError:
                warnings.warn("demucs is not installed: the melody conditioner uses the full mix instead of the "
                              "'vocals' + 'other' stems (install demucs for Audiocraft's behaviour).", stacklevel=3)
                self.__dict__["_separator"] = False
            else:
                self.__dict__["_separator"] = pretrained.get_model("htdemucs").to(self.device)
        return self._separator or None

    def _get_stemmed_wav(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav [B, C, T] at sample_rate -> melodic part [B, 1, T'] at self.sample_rate."""
        from ...data.audio_utils import convert_audio

        separator: tp.Any = self.demucs if self.stem_separation else None
        if separator is None:
            return convert_audio(wav, sample_rate, self.sample_rate, 1)
        from demucs.apply import apply_model
        from demucs.audio import convert_audio as demucs_convert_audio

        sources = list(separator.sources)
        indices = [sources.index(stem) for stem in self.STEMS]
        mix = demucs_convert_audio(wav, sample_rate, separator.samplerate, separator.audio_channels)
        stems = apply_model(separator, mix, device=self.device)  # [B, S, C, T]
        melodic = stems[:, indices].sum(dim=1)  # [B, C, T]
        return convert_audio(melodic, separator.samplerate, self.sample_rate, 1)

    # ---- embedding -----------------------------------------------------------------------------------------------
    def _compute_wav_embedding(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """wav [B, C, T] -> chroma [B, frames, n_chroma] (no separation for null [.., 1] wavs)."""
        if wav.shape[-1] > 1:
            wav = self._get_stemmed_wav(wav, sample_rate)
        elif wav.shape[1] != 1:
            wav = wav.mean(dim=1, keepdim=True)
        with torch.no_grad():
            return self.chroma(wav)

    def _get_wav_embedding(self, x: WavCondition) -> torch.Tensor:
        """WavCondition -> chroma [B, frames, n_chroma] (frames = chroma_len when match_len_on_eval)."""
        rates = list(x.sample_rate)
        if not rates or any(int(sr) != int(rates[0]) for sr in rates):
            raise ArgumentError(f"All melodies of a batch must share one sample rate, got {rates}.")
        if x.wav.dim() != 3:
            raise ArgumentError(f"WavCondition.wav must have shape [B, C, T], got {list(x.wav.shape)}.")
        chroma = self._compute_wav_embedding(x.wav, int(rates[0]))
        if self.match_len_on_eval:
            frames = chroma.shape[1]
            if frames > self.chroma_len:
                chroma = chroma[:, :self.chroma_len]
            elif frames < self.chroma_len:
                chroma = chroma.repeat(1, math.ceil(self.chroma_len / frames), 1)[:, :self.chroma_len]
        return chroma
