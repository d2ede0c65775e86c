"""`python -m audiocraft ...` runs the `musicgen` command line."""
import sys

from .cli import main

sys.exit(main())
