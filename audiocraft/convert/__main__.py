"""``python -m audiocraft.convert``: see :mod:`audiocraft.convert`."""
import sys

from .cli import main

sys.exit(main())
