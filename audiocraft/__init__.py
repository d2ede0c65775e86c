"""audiocraft: MusicGen in PyTorch, exact to the official checkpoints and fast on a plain CPU.

Import what you need from the subpackages, e.g. ``from audiocraft.models import MusicGen``.
Importing this package is light: transformers, gradio, demucs and xformers load only when used.
"""
__version__ = "1.4.0.dev0"

from . import data, models, modules, quantization, utils  # noqa: E402,F401
