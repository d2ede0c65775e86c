"""Models: MusicGen, the language model and the EnCodec compression model.

>>> from audiocraft.models import MusicGen
"""
from . import builders, loaders  # noqa: F401
from .encodec import CompressionModel, EncodecModel  # noqa: F401
from .genmodel import BaseGenModel  # noqa: F401
from .lm import LMModel  # noqa: F401
from .musicgen import MusicGen  # noqa: F401

__all__ = ["builders", "loaders", "CompressionModel", "EncodecModel", "BaseGenModel", "LMModel", "MusicGen"]
