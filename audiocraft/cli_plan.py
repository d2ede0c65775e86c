"""What a ``musicgen`` command will generate, checked before any model is loaded.

``make_plan(args)`` reads the prompts, checks every number, reads the ``--melody`` / ``--continue`` audio, works out
the output files and makes sure their folder can be written, so that a mistake costs no model load and no
generation. It raises ``CLIError`` (one line for the user) on anything wrong.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import tempfile
import typing as tp

if tp.TYPE_CHECKING:  # pragma: no cover
    import torch

FORMATS = ("wav", "mp3", "ogg", "flac")
MAX_SEED = 2 ** 63


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type name when it has none)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


@dataclass
class Take:
    """One file to generate: item ``index`` of the prompt list, written to ``path`` (with its suffix)."""
    index: int
    prompt: str
    path: Path
    finished: bool = False  # already written by an earlier run (skipped)


@dataclass
class AudioInput:
    """The ``--melody`` or ``--continue`` audio: ``wav`` ``[C, T]`` at ``sample_rate``."""
    kind: str  # 'melody' or 'continuation'
    path: Path
    wav: torch.Tensor
    sample_rate: int


@dataclass
class Plan:
    """Everything a run needs besides the model."""
    takes: tp.List[Take]
    fmt: str
    seed: tp.Optional[int]  # item i gets seed + i; None: drawn at run time (and recorded)
    audio: tp.Optional[AudioInput] = None

    @property
    def pending(self) -> tp.List[Take]:
        return [take for take in self.takes if not take.finished]


def read_prompts(args: argparse.Namespace) -> tp.List[str]:
    """The prompt list: ``PROMPT``, the lines of ``--batch FILE``, or one empty prompt (audio input only)."""
    if args.batch is not None:
        if args.prompt is not None:
            raise CLIError("give either PROMPT or --batch FILE, not both")
        if not args.batch.is_file():
            raise CLIError(f"--batch file not found: {args.batch}")
        try:
            text = args.batch.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read --batch file {args.batch}: {one_line(exc)}") from exc
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise CLIError(f"--batch file {args.batch} has no prompts (one per line)")
        for number, prompt in enumerate(prompts, 1):
            _check_text(f"prompt {number} of --batch file {args.batch}", prompt)
        return prompts
    if args.prompt is None:
        if args.melody is None and args.continuation is None:
            raise CLIError("a PROMPT (or --batch FILE, --melody or --continue) is required")
        return [""]
    return [_check_text("PROMPT", args.prompt)]


def _check_text(name: str, text: str) -> str:
    from .utils.validation import check_text
    try:
        return check_text(name, text)
    except ValueError as exc:
        raise CLIError(one_line(exc)) from exc


def _check(flag: str, value: tp.Any, **bounds: tp.Any) -> None:
    from .utils.validation import check_number
    try:
        check_number(flag, value, **bounds)
    except (TypeError, ValueError) as exc:
        raise CLIError(one_line(exc)) from exc


def check_numbers(args: argparse.Namespace, count: int) -> None:
    """Check the sampling flags (the bounds of ``MusicGen.set_generation_params``)."""
    from .models.musicgen import MAX_CFG_COEF, MAX_TEMPERATURE, MIN_TEMPERATURE
    _check("--duration", args.duration, minimum=0.0, strict_min=True)
    _check("--top-k", args.top_k, minimum=0, integer=True)
    _check("--top-p", args.top_p, minimum=0.0, maximum=1.0)
    _check("--temperature", args.temperature, minimum=MIN_TEMPERATURE, maximum=MAX_TEMPERATURE)
    _check("--cfg", args.cfg, minimum=-MAX_CFG_COEF, maximum=MAX_CFG_COEF)
    if args.extend_stride is not None:
        _check("--extend-stride", args.extend_stride, minimum=0.0, strict_min=True)
    _check("--batch-size", args.batch_size, minimum=1, integer=True)
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED - count:
        uses = "" if count == 1 else f" ({count} prompts use seeds N to N + {count - 1})"
        raise CLIError(f"--seed must be in [0, 2**63 - {count}]{uses}, got {args.seed}")


def read_audio_input(args: argparse.Namespace) -> tp.Optional[AudioInput]:
    """The ``--melody`` / ``--continue`` file, decoded now (so an unreadable file costs no model load)."""
    if args.melody is not None and args.continuation is not None:
        raise CLIError("give at most one of --melody and --continue")
    flag, kind, path = ("--melody", "melody", args.melody) if args.melody is not None else \
        ("--continue", "continuation", args.continuation)
    if path is None:
        return None
    if not path.is_file():
        raise CLIError(f"{flag} file not found: {path}")
    from .data.audio import audio_read
    try:
        wav, sample_rate = audio_read(path)
    except Exception as exc:  # noqa: BLE001 - FFmpeg raises many kinds; all mean "not audio we can read"
        reason = getattr(exc, "strerror", None) or one_line(exc)
        raise CLIError(f"{flag} file {path} is not readable audio ({reason})") from exc
    if wav.shape[-1] == 0:
        raise CLIError(f"{flag} file {path} holds no audio samples")
    return AudioInput(kind, path, wav, int(sample_rate))


def output_format(args: argparse.Namespace) -> str:
    fmt = args.format or (args.out.suffix.lstrip(".").lower() if args.out.suffix else "wav")
    if fmt not in FORMATS:
        raise CLIError(f"unknown output format '{fmt}' (from --out {args.out}); use one of {', '.join(FORMATS)}")
    return fmt


def output_stems(out: Path, count: int) -> tp.List[Path]:
    """``out`` without its audio suffix, or ``<stem>_000``, ``<stem>_001``... for several prompts."""
    stem = out.with_suffix("") if out.suffix.lstrip(".").lower() in FORMATS else out
    if count == 1:
        return [stem]
    return [stem.parent / f"{stem.name}_{i:03d}" for i in range(count)]


def check_output_folder(out: Path) -> None:
    """Create the folder of ``out`` if needed and make sure a file can be created in it."""
    if out.is_dir():
        raise CLIError(f"--out {out} is a folder; give a file name, e.g. {out / 'take.wav'}")
    folder = out.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if existing.exists() and not existing.is_dir():
        raise CLIError(f"--out {out}: '{existing}' is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out {out}: cannot create the folder '{folder}' ({exc.strerror or one_line(exc)})") from exc
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".musicgen-", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise CLIError(f"--out {out}: cannot create files in the folder '{folder}' "
                       f"({exc.strerror or one_line(exc)})") from exc


def _recorded_prompt(path: Path) -> tp.Optional[str]:
    """The prompt in the ``.json`` sidecar of a take, if it has a readable one."""
    try:
        meta = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    prompt = meta.get("prompt") if isinstance(meta, dict) else None
    return prompt if isinstance(prompt, str) else None


def mark_finished(takes: tp.List[Take]) -> None:
    """Mark the takes whose file exists; a file whose sidecar records another prompt stops the run."""
    for take in takes:
        if take.path.is_dir():
            raise CLIError(f"{take.path} is a folder; choose another --out")
        if not take.path.is_file():
            continue
        recorded = _recorded_prompt(take.path)
        if recorded is not None and recorded != take.prompt:
            raise CLIError(f"{take.path} holds a take of another prompt ({recorded!r}, not {take.prompt!r}); "
                           "choose another --out, or add --overwrite to replace it")
        take.finished = True


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the arguments and the output folder, read prompts and audio input: no model is loaded."""
    fmt = output_format(args)
    prompts = read_prompts(args)
    check_numbers(args, len(prompts))
    audio = read_audio_input(args)
    check_output_folder(args.out)
    stems = output_stems(args.out, len(prompts))
    takes = [Take(i, prompt, Path(f"{stem}.{fmt}")) for i, (prompt, stem) in enumerate(zip(prompts, stems))]
    if args.batch is not None and not args.overwrite:
        mark_finished(takes)
    else:
        for take in takes:
            if take.path.is_dir():
                raise CLIError(f"{take.path} is a folder; choose another --out")
    return Plan(takes, fmt, args.seed, audio)
