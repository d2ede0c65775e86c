"""Old import paths that keep working for one release after a module moved."""
from __future__ import annotations

import importlib
import sys
import warnings


def alias_module(old: str, new: str) -> None:
    """Make the module being imported as ``old`` an alias of ``new`` (same module object), with a
    ``DeprecationWarning`` naming the new path. Call it as the whole body of the old module."""
    warnings.warn(f"{old} has moved to {new}; the old import path will be removed in the next release.",
                  DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
