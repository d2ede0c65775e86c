"""Models: MusicGen, MAGNeT, their language models, the EnCodec compression model and MultiBandDiffusion.

>>> from audiocraft.models import MusicGen, MAGNeT, MultiBandDiffusion
"""
from . import builders, loaders  # noqa: F401
from .encodec import CompressionModel, EncodecModel  # noqa: F401
from .genmodel import BaseGenModel  # noqa: F401
from .lm import LMModel  # noqa: F401
from .lm_magnet import MagnetLMModel  # noqa: F401
from .magnet import MAGNeT  # noqa: F401
from .multibanddiffusion import MultiBandDiffusion  # noqa: F401
from .musicgen import MusicGen  # noqa: F401
from .pretrained import get_pretrained  # noqa: F401
from .unet import DiffusionUnet  # noqa: F401

__all__ = ["builders", "loaders", "CompressionModel", "EncodecModel", "BaseGenModel", "LMModel", "MusicGen",
           "MagnetLMModel", "MAGNeT", "get_pretrained", "MultiBandDiffusion", "DiffusionUnet"]
