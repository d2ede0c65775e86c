"""The ``musicgen`` command line: text (and melody / audio prompt) to a music file.

    musicgen "lofi beat with piano" --duration 8 --model facebook/musicgen-small --out out.wav
    musicgen --batch prompts.txt --out takes/take.mp3 --seed 3
    python -m audiocraft "..."          # same thing

Writes through ``audio_write`` with loudness normalisation. Errors a user can cause print one line and
exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shlex
import sys
import typing as tp

FORMATS = ("wav", "mp3", "ogg", "flac")
# Where the tiny offline checkpoints live in a source checkout (used by `make demo` only).
_DEMO_CACHE = Path(__file__).resolve().parent.parent / "tests" / "reference" / "hf_cache"
_DEMO_ENV = "AUDIOCRAFT_DEMO_OFFLINE"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicgen", description="Generate music from text with MusicGen (Audiocraft-compatible).")
    parser.add_argument("prompt", nargs="?", help="text description of the music to generate")
    parser.add_argument("--batch", type=Path, help="file with one prompt per line (instead of PROMPT)")
    parser.add_argument("--model", default="facebook/musicgen-small",
                        help="hub id, local folder or 'debug' (default: facebook/musicgen-small)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of audio (default: 8)")
    parser.add_argument("--out", type=Path, default=Path("out.wav"),
                        help="output file; its suffix picks the format unless --format is given")
    parser.add_argument("--format", choices=FORMATS, default=None, help="output format")
    parser.add_argument("--melody", type=Path, help="audio file whose melody to follow (melody models)")
    parser.add_argument("--continue", dest="continuation", type=Path, help="audio file to continue")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed; prompt i gets seed N+i and regenerates alone with --seed N+i")
    parser.add_argument("--top-k", type=int, default=250, help="top-k sampling (default: 250)")
    parser.add_argument("--top-p", type=float, default=0.0, help="top-p sampling, overrides top-k when > 0")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    parser.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance coefficient (default: 3)")
    parser.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    parser.add_argument("--extend-stride", type=float, default=None,
                        help="window stride in seconds for durations beyond the model's maximum window "
                             "(default: 18, or half the window if that is shorter)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-metadata", action="store_true",
                        help="do not embed the generation parameters (tag 'comment' + a .json sidecar)")
    parser.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)
    return parser


def _prompts(args: argparse.Namespace) -> tp.List[str]:
    if args.batch is not None:
        if args.prompt is not None:
            raise CLIError("give either PROMPT or --batch FILE, not both")
        if not args.batch.is_file():
            raise CLIError(f"--batch file not found: {args.batch}")
        try:
            text = args.batch.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read --batch file {args.batch}: {_one_line(exc)}") from exc
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise CLIError(f"--batch file {args.batch} has no prompts (one per line)")
        return prompts
    if args.prompt is None:
        if args.melody is None and args.continuation is None:
            raise CLIError("a PROMPT (or --batch FILE, --melody or --continue) is required")
        return [""]
    return [args.prompt]


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type name when it has none)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _output_paths(out: Path, fmt: str, count: int) -> tp.List[Path]:
    stem = out.with_suffix("") if out.suffix.lstrip(".").lower() in FORMATS else out
    if count == 1:
        return [stem]
    return [stem.parent / f"{stem.name}_{i:03d}" for i in range(count)]


def _load_model(args: argparse.Namespace) -> tp.Any:
    from .models import get_pretrained  # MusicGen, or MAGNeT for a MAGNeT checkpoint
    try:
        return get_pretrained(args.model, device=args.device)
    except Exception as exc:  # noqa: BLE001 - turned into one line (or the demo fallback) below
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if args.demo and os.environ.get(_DEMO_ENV) != "1" and _DEMO_CACHE.is_dir():
            print(f"musicgen: could not load '{args.model}' ({message}).", file=sys.stderr)
            print("musicgen: demo fallback: using the TINY OFFLINE TEST CHECKPOINTS shipped with the tests; "
                  "their weights are RANDOM, so the audio is noise, not music.", file=sys.stderr)
            env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(_DEMO_CACHE), **{_DEMO_ENV: "1"})
            os.execve(sys.executable, [sys.executable, "-m", "audiocraft.cli", *sys.argv[1:]], env)
        raise CLIError(f"could not load model '{args.model}': {message}") from exc


def run(args: argparse.Namespace) -> tp.List[Path]:
    from .data.audio import audio_read, audio_write

    fmt = args.format or (args.out.suffix.lstrip(".").lower() if args.out.suffix else "wav")
    if fmt not in FORMATS:
        raise CLIError(f"unknown output format '{fmt}'; use one of {', '.join(FORMATS)}")
    if not args.duration > 0:
        raise CLIError(f"--duration must be > 0, got {args.duration}")
    if args.melody is not None and args.continuation is not None:
        raise CLIError("give at most one of --melody and --continue")
    for flag, path in (("--melody", args.melody), ("--continue", args.continuation)):
        if path is not None and not path.is_file():
            raise CLIError(f"{flag} file not found: {path}")
    prompts = _prompts(args)
    model = _load_model(args)
    stride = args.extend_stride
    if stride is None:
        stride = 18.0 if model.max_duration > 18.0 else model.max_duration / 2
    try:
        _set_generation_params(model, args, stride)
    except (TypeError, ValueError) as exc:
        raise CLIError(_one_line(exc)) from exc
    descriptions: tp.List[tp.Optional[str]] = [p or None for p in prompts]

    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=0, unit="step", desc="generating")

        def _progress(generated: int, total: int) -> None:
            assert bar is not None
            bar.total = total
            bar.n = generated
            bar.refresh()

        model.set_custom_progress_callback(_progress)
    if args.seed is not None and not 0 <= args.seed < 2 ** 63 - len(prompts):
        raise CLIError(f"--seed must be in [0, 2**63), got {args.seed}")
    try:
        if args.melody is not None:
            if not hasattr(model, "generate_with_chroma"):
                raise CLIError(f"--melody needs a melody model; {args.model} ({type(model).__name__}) has none")
            melody, sr = audio_read(args.melody)
            wav = model.generate_with_chroma(descriptions, melody[None].expand(len(prompts), -1, -1), sr,
                                             seed=args.seed)
        elif args.continuation is not None:
            prompt, sr = audio_read(args.continuation)
            wav = model.generate_continuation(prompt[None].expand(len(prompts), -1, -1), sr, descriptions,
                                              seed=args.seed)
        else:
            wav = model.generate(descriptions, seed=args.seed)
    except (TypeError, ValueError, OSError) as exc:
        raise CLIError(_one_line(exc)) from exc
    except RuntimeError as exc:  # e.g. out of memory, or sampling parameters the model cannot use
        raise CLIError(f"generation failed: {_one_line(exc)}") from exc
    finally:
        if bar is not None:
            bar.close()
    written: tp.List[Path] = []
    for index, (path, audio) in enumerate(zip(_output_paths(args.out, fmt, len(prompts)), wav)):
        meta = None if args.no_metadata else _metadata(args, model, prompts[index],
                                                       None if args.seed is None else args.seed + index)
        tags = None if meta is None else {"comment": json.dumps(meta, sort_keys=True)}
        try:
            target = audio_write(path, audio.cpu(), model.sample_rate, format=fmt, strategy="loudness",
                                 loudness_compressor=True, metadata=tags)
            if meta is not None:
                _write_json_atomic(target.with_name(target.name + ".json"), meta)
        except (OSError, ValueError) as exc:  # a folder that cannot be created, no permission, disk full
            done = f" ({len(written)} of {len(prompts)} file(s) written before)" if written else ""
            raise CLIError(f"cannot write {path}: {_one_line(exc)}{done}") from exc
        written.append(target)
    return written


def _set_generation_params(model: tp.Any, args: argparse.Namespace, stride: float) -> None:
    """The command's sampling options, as the model takes them. MAGNeT generates its fixed segment (``--duration``
    other than its length is an error) and keeps its own defaults for the options left at the command's
    (MusicGen's) defaults; ``--cfg`` is its initial guidance (``max_cfg_coef``); ``--top-k`` alone turns top-p off."""
    from .models import MAGNeT
    if not isinstance(model, MAGNeT):
        model.set_generation_params(use_sampling=not args.greedy, top_k=args.top_k, top_p=args.top_p,
                                    temperature=args.temperature, duration=args.duration, cfg_coef=args.cfg,
                                    extend_stride=stride)
        return
    parser = build_parser()
    if args.duration != parser.get_default("duration") and args.duration != model.duration:
        raise CLIError(f"--duration: {args.model} (MAGNeT) generates exactly {model.duration} s, got {args.duration}")
    names = {"top_k": "top_k", "top_p": "top_p", "temperature": "temperature", "cfg": "max_cfg_coef"}
    given = {name: getattr(args, dest) for dest, name in names.items()
             if getattr(args, dest) != parser.get_default(dest)}
    if "top_k" in given and "top_p" not in given:
        given["top_p"] = 0.0  # top-k asked for: MAGNeT's default top-p would override it
    model.set_generation_params(use_sampling=not args.greedy, **given)


def _metadata(args: argparse.Namespace, model: tp.Any, prompt: str, seed: tp.Optional[int]) -> tp.Dict[str, tp.Any]:
    """Everything needed to regenerate a take: model, prompt, seed, sampling parameters, library version."""
    from . import __version__
    return {
        "library": "audiocraft", "version": __version__, "model": model.name, "prompt": prompt, "seed": seed,
        "duration": args.duration, "generation_params": dict(model.generation_params),
        "extend_stride": model.extend_stride,
        "melody": None if args.melody is None else str(args.melody),
        "continuation": None if args.continuation is None else str(args.continuation),
        "command": "musicgen " + " ".join(shlex.quote(a) for a in (sys.argv[1:] or [])),
    }


def _write_json_atomic(path: Path, data: tp.Dict[str, tp.Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for path in run(args):
            print(path)
    except CLIError as exc:
        print(f"musicgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musicgen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
