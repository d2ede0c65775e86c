"""Models: MusicGen (mono and stereo), AudioGen, MAGNeT, their language models, the EnCodec compression model and
MultiBandDiffusion.

>>> from audiocraft.models import MusicGen, AudioGen, MAGNeT, MultiBandDiffusion
>>> from audiocraft.models import get_pretrained   # the facade a checkpoint was trained for
"""
from . import builders, loaders  # noqa: F401
from .audiogen import AudioGen  # noqa: F401
from .encodec import CompressionModel, EncodecModel, InterleaveStereoCompressionModel  # noqa: F401
from .genmodel import BaseGenModel  # noqa: F401
from .lm import LMModel  # noqa: F401
from .lm_magnet import MagnetLMModel  # noqa: F401
from .magnet import MAGNeT  # noqa: F401
from .multibanddiffusion import MultiBandDiffusion  # noqa: F401
from .musicgen import MusicGen  # noqa: F401
from .pretrained import get_pretrained  # noqa: F401
from .unet import DiffusionUnet  # noqa: F401

__all__ = ["builders", "loaders", "AudioGen", "CompressionModel", "EncodecModel", "InterleaveStereoCompressionModel",
           "BaseGenModel", "LMModel", "MusicGen", "MagnetLMModel", "MAGNeT", "get_pretrained", "MultiBandDiffusion",
           "DiffusionUnet"]
