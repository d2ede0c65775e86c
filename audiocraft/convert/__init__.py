"""Convert MusicGen checkpoints between the Audiocraft format and Hugging Face transformers' format.

    python -m audiocraft.convert to-transformers facebook/musicgen-small musicgen-small-hf
    python -m audiocraft.convert from-transformers musicgen-small-hf musicgen-small-audiocraft

``to-transformers`` reads an Audiocraft folder or hub id (``state_dict.bin`` + ``compression_state_dict.bin``)
and writes a ``save_pretrained`` folder that ``MusicgenForConditionalGeneration.from_pretrained`` (text models)
or ``MusicgenMelodyForConditionalGeneration.from_pretrained`` (melody models) loads, with the T5 tokenizer and
processor files. ``from-transformers`` does the reverse; ``MusicGen.get_pretrained(OUT)`` loads the result.
Weights are moved bit for bit both ways. Errors print one line and exit with status 2.

The Python API is :func:`to_transformers` and :func:`from_transformers`. Inside the package: :mod:`.conversion`
(reading, writing, checks), :mod:`.configs` (the configs of both formats), :mod:`.weights` (the key mapping).
"""
from __future__ import annotations

import typing as tp

from .conversion import ConversionError, from_transformers, to_transformers

__all__ = ["ConversionError", "to_transformers", "from_transformers", "build_parser", "main"]


def build_parser() -> tp.Any:
    """The command line's argument parser (see :mod:`.cli`)."""
    from .cli import build_parser as _build_parser
    return _build_parser()


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from .cli import main as _main
    return _main(argv)
