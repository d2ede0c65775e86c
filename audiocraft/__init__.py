"""audiocraft: MusicGen in PyTorch, exact to the official checkpoints and fast on a plain CPU.

Import what you need from the subpackages, e.g. ``from audiocraft.models import MusicGen``.
Importing this package is light: the subpackages (``data``, ``models``, ``modules``, ``quantization``,
``utils``) load on first access, and transformers, gradio, demucs and xformers only when used.
"""
import importlib
import typing as tp

__version__ = "1.4.0.dev0"

_SUBPACKAGES = ("data", "models", "modules", "quantization", "utils")
__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> tp.Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'audiocraft' has no attribute {name!r}")
