"""Deprecated: moved to :mod:`audiocraft.convert` (this path works until the next release)."""
from .deprecation import alias_module

alias_module(__name__, "audiocraft.convert.conversion")
