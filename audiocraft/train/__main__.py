"""``python -m audiocraft.train`` and ``torchrun --nproc_per_node N -m audiocraft.train``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
