"""MusicGen: text (and melody) to music, the facade users call.

>>> from audiocraft.models import MusicGen
>>> model = MusicGen.get_pretrained('facebook/musicgen-small')
>>> model.set_generation_params(duration=8)
>>> wav = model.generate(['lofi beat with a mellow piano'])   # [1, 1, 8 * 32000]
"""
from __future__ import annotations

import typing as tp
import warnings

import torch

from .. import backends
from ..utils.cancel import CancelToken
from ..utils.validation import ArgumentError, ArgumentTypeError, check_bool, check_number
from .encodec import CompressionModel
from .genmodel import AudioAndTokens, BaseGenModel, SeedType
from .lm import LMModel
from .loaders import load_compression_model, load_lm_model
from .melody import MELODY_CONDITION, MelodyList, MelodyType

# Short names of Audiocraft's first release; still accepted, with a deprecation warning.
_HF_MODEL_CHECKPOINTS_MAP = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}

# Sampling parameters beyond these overflow float32 logits (Audiocraft lets them through to a NaN failure).
MIN_TEMPERATURE, MAX_TEMPERATURE, MAX_CFG_COEF = 1e-3, 1e3, 1e3

__all__ = ["MusicGen", "MelodyList", "MelodyType"]


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
            See :mod:`audiocraft.backends.cpu.formats` for the accuracy of each option.
        """
        if not isinstance(name, str) or not name:
            raise ArgumentTypeError(f"name must be a non-empty str (hub id, folder or 'debug'), got {name!r}.")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        check_bool("pack", pack)
        with backends.preparing(device, dtype=dtype, quantize=quantize, pack=pack) as preparation:
            if name == "debug":
                from .builders import get_debug_compression_model, get_debug_lm_model
                compression_model = get_debug_compression_model(device)
                lm = get_debug_lm_model(device)
                backends.prepare(lm, dtype=dtype, quantize=quantize, pack=pack)
                preparation.prepare_codec(compression_model)
                return MusicGen(name, compression_model, lm, max_duration=30)
            if name in _HF_MODEL_CHECKPOINTS_MAP:
                warnings.warn("MusicGen pretrained model relying on deprecated checkpoint mapping. "
                              f"Please use full pre-trained id instead: facebook/musicgen-{name}", DeprecationWarning,
                              stacklevel=2)
                name = _HF_MODEL_CHECKPOINTS_MAP[name]
            lm = tp.cast(LMModel, load_lm_model(name, device=device, for_generation=True,
                                                on_state_loaded=preparation.on_state_loaded))
            compression_model = load_compression_model(name, device=device)
            conditioners = lm.condition_provider.conditioners
            if MELODY_CONDITION in conditioners:
                chroma: tp.Any = conditioners[MELODY_CONDITION]
                chroma.match_len_on_eval = True
                chroma._use_masking = False
                chroma.stem_separation = stem_separation
            preparation.prepare(lm)
            preparation.prepare_codec(compression_model)
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

    # ---- melody ---------------------------------------------------------------------------------
    def generate_with_chroma(self, descriptions: tp.List[tp.Optional[str]], melody_wavs: MelodyType,
                             melody_sample_rate: int, progress: bool = False, return_tokens: bool = False, *,
                             seed: SeedType = None, cancel: tp.Optional[CancelToken] = None
                             ) -> AudioAndTokens:
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
        return self._run(attributes, None, progress, return_tokens, seed, cancel)
