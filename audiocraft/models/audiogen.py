"""AudioGen: text to sound effects (16 kHz), MusicGen's machinery with its own checkpoint and defaults.

>>> from audiocraft.models import AudioGen
>>> model = AudioGen.get_pretrained('facebook/audiogen-medium')
>>> model.set_generation_params(duration=5)
>>> wav = model.generate(['dog barking in the rain'])   # [1, 1, 5 * 16000]
"""
from __future__ import annotations

import typing as tp

import torch

from ..utils.validation import ArgumentError
from .encodec import CompressionModel
from .genmodel import BaseGenModel, generation_params_setter
from .lm import LMModel
from .melody import MELODY_CONDITION
from .pretrained import check_name, load_pretrained

__all__ = ["AudioGen"]


class AudioGen(BaseGenModel):
    """AudioGen: a language model over 16 kHz EnCodec tokens conditioned on text (T5).

    Generation (``generate``, ``generate_continuation``, ``generate_unconditional``, ``generate_audio``), extended
    generation beyond ``max_duration`` (10 s), seeds, cancel, streaming (``generate_stream``) and long-form schedules
    (``generate_long``) are those of :class:`BaseGenModel`. There is no melody conditioning.

    Args:
        name: name of the model.
        compression_model: the 16 kHz EnCodec (audio <-> 4 codebooks at 50 Hz).
        lm: the language model.
        max_duration: longest single generation window in seconds (default: the training segment, 10 s).
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None) -> None:
        super().__init__(name, compression_model, lm, max_duration)
        self.set_generation_params(duration=5)  # Audiocraft's default duration for AudioGen.

    @staticmethod
    def get_pretrained(name: str = "facebook/audiogen-medium", device: tp.Optional[str] = None, *,
                       dtype: tp.Optional[torch.dtype] = None, quantize: tp.Optional[str] = None,
                       pack: bool = True) -> "AudioGen":
        """Load a pretrained AudioGen.

        Args:
            name: ``'facebook/audiogen-medium'`` (1.5B parameters, text to sound), another hub id or a local folder
                holding ``state_dict.bin`` and ``compression_state_dict.bin``, or ``'debug'`` for a tiny random model
                (16 kHz codec, 10 s window).
            device: ``'cuda'`` when available, else ``'cpu'``.
            dtype, quantize, pack: the language model's weights and CPU kernels, as in ``MusicGen.get_pretrained``.
        Raises:
            ValueError: a checkpoint with melody (waveform) conditioning, which AudioGen cannot feed, or a MAGNeT
                checkpoint (load it with ``MAGNeT.get_pretrained``).
        """
        name = check_name(name)

        def setup_lm(lm: LMModel) -> None:
            if MELODY_CONDITION in lm.condition_provider.conditioners:
                raise ArgumentError(f"{name!r} conditions on a waveform ('{MELODY_CONDITION}', melody); AudioGen does "
                                    "not support waveform conditioning: load it with MusicGen.get_pretrained.")

        return load_pretrained(AudioGen, name, device, dtype=dtype, quantize=quantize, pack=pack,
                               debug_sample_rate=16000, debug_max_duration=10.0, setup_lm=setup_lm)

    set_generation_params = generation_params_setter(default_duration=10.0, default_extend_stride=2)
