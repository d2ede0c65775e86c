"""The ``python -m audiocraft.convert`` command line (see :mod:`audiocraft.convert`)."""
from __future__ import annotations

import argparse
import sys
import typing as tp

from .conversion import ConversionError, from_transformers, to_transformers

__all__ = ["build_parser", "main"]


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
