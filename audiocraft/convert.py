"""Convert MusicGen checkpoints between the Audiocraft format and Hugging Face transformers' format.

    python -m audiocraft.convert to-transformers facebook/musicgen-small musicgen-small-hf
    python -m audiocraft.convert from-transformers musicgen-small-hf musicgen-small-audiocraft

``to-transformers`` reads an Audiocraft folder or hub id (``state_dict.bin`` + ``compression_state_dict.bin``)
and writes a ``save_pretrained`` folder that ``MusicgenForConditionalGeneration.from_pretrained`` (text models)
or ``MusicgenMelodyForConditionalGeneration.from_pretrained`` (melody models) loads, with the T5 tokenizer and
processor files. ``from-transformers`` does the reverse; ``MusicGen.get_pretrained(OUT)`` loads the result.
Weights are moved bit for bit both ways. Errors print one line and exit with status 2.

The Python API is :func:`to_transformers` and :func:`from_transformers` (from
:mod:`audiocraft.utils.convert_transformers`).
"""
from __future__ import annotations

import argparse
import sys
import typing as tp

from .utils.convert_transformers import ConversionError, from_transformers, to_transformers

__all__ = ["ConversionError", "to_transformers", "from_transformers", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m audiocraft.convert",
                                     description="Convert MusicGen checkpoints between Audiocraft and transformers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    to_hf = commands.add_parser("to-transformers", help="Audiocraft folder / hub id -> transformers folder")
    to_hf.add_argument("source", metavar="DIR", help="Audiocraft checkpoint folder or hub id")
    to_hf.add_argument("out", metavar="OUT", help="output folder (created; must be empty)")
    to_hf.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    from_hf = commands.add_parser("from-transformers", help="transformers folder / hub id -> Audiocraft folder")
    from_hf.add_argument("source", metavar="DIR", help="transformers save_pretrained folder or hub id")
    from_hf.add_argument("out", metavar="OUT", help="output folder (created; must be empty)")
    from_hf.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    from_hf.add_argument("--template", metavar="DIR", default=None,
                         help="Audiocraft checkpoint whose xp.cfg files to start from (default: built-in layout)")
    from_hf.add_argument("--t5-name", default=None,
                         help="T5 model of the text encoder (default: the name in the text encoder config)")
    from_hf.add_argument("--keep-t5", action="store_true",
                         help="store the T5 weights in state_dict.bin (finetune: true) instead of naming the T5")
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0, or 2 on an error the user can fix)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "to-transformers":
            out = to_transformers(args.source, args.out, overwrite=args.overwrite)
        else:
            out = from_transformers(args.source, args.out, overwrite=args.overwrite, template=args.template,
                                    t5_name=args.t5_name, keep_t5=args.keep_t5)
    except (ConversionError, ValueError, TypeError, OSError) as err:  # CheckpointError is a ValueError
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
