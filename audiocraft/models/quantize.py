"""Deprecated: moved to :mod:`audiocraft.backends.cpu.formats` (this path works until the next release)."""
from ..utils.deprecation import alias_module

alias_module(__name__, "audiocraft.backends.cpu.formats")
