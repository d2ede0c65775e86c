"""Deprecated: moved to :mod:`audiocraft.backends.cpu.packing` (this path works until the next release)."""
from .deprecation import alias_module

alias_module(__name__, "audiocraft.backends.cpu.packing")
