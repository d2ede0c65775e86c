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

from ..utils.cancel import CancelToken
from ..utils.config import select
from ..utils.validation import ArgumentError
from .encodec import CompressionModel
from .genmodel import AudioAndTokens, BaseGenModel, SeedType, generation_params_setter
from .genmodel import MAX_CFG_COEF, MAX_TEMPERATURE, MIN_TEMPERATURE  # noqa: F401  (their old home, still read)
from .lm import LMModel
from .melody import MELODY_CONDITION, MelodyList, MelodyType
from .pretrained import check_name, load_pretrained

# Short names of Audiocraft's first release; still accepted, with a deprecation warning.
_HF_MODEL_CHECKPOINTS_MAP = {
    "small": "facebook/musicgen-small",
    "medium": "facebook/musicgen-medium",
    "large": "facebook/musicgen-large",
    "melody": "facebook/musicgen-melody",
}

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
            name: a hub id (``facebook/musicgen-small``, ``-medium``, ``-large``, ``-melody``, ``-melody-large``, the
                stereo ``facebook/musicgen-stereo-small``, ``-medium``, ``-large``, ``-melody``, ``-melody-large``, or
                any repo with ``state_dict.bin`` and ``compression_state_dict.bin``), a local folder holding those two
                files, or ``'debug'`` for a tiny random model. The short names small/medium/melody/large still work
                but are deprecated. Stereo checkpoints (``channels: 2`` in their config) give a model whose
                ``compression_model`` interleaves the two channels' codes and whose audio is ``[B, 2, T]``.
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
        Raises:
            ValueError: an AudioGen or MAGNeT checkpoint (load it with ``AudioGen.get_pretrained`` /
                ``MAGNeT.get_pretrained``), or a checkpoint whose LM and compression model do not fit together
                (codebooks, channels).
        """
        name = check_name(name)
        if name in _HF_MODEL_CHECKPOINTS_MAP:
            warnings.warn("MusicGen pretrained model relying on deprecated checkpoint mapping. "
                          f"Please use full pre-trained id instead: facebook/musicgen-{name}", DeprecationWarning,
                          stacklevel=2)
            name = _HF_MODEL_CHECKPOINTS_MAP[name]

        def setup_lm(lm: LMModel) -> None:
            if select(getattr(lm, "cfg"), "solver") == "audiogen":
                raise ArgumentError(f"{name!r} is an AudioGen checkpoint (solver: audiogen): load it with "
                                    "AudioGen.get_pretrained (or audiocraft.models.get_pretrained).")
            conditioners = lm.condition_provider.conditioners
            if MELODY_CONDITION in conditioners:
                chroma: tp.Any = conditioners[MELODY_CONDITION]
                chroma.match_len_on_eval = True
                chroma._use_masking = False
                chroma.stem_separation = stem_separation

        return load_pretrained(MusicGen, name, device, dtype=dtype, quantize=quantize, pack=pack, setup_lm=setup_lm)

    set_generation_params = generation_params_setter(default_duration=30.0, default_extend_stride=18)

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
