"""Deprecated: moved to :mod:`audiocraft.backends.cpu.kernels` (this path works until the next release)."""
from .deprecation import alias_module

alias_module(__name__, "audiocraft.backends.cpu.kernels")
