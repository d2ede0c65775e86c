"""Generating the takes of a ``musicgen`` plan, in one process or shared out over several (``torchrun``).

Take ``i`` of the prompt list goes to process ``i % world_size`` and gets seed ``seed + i``; every file is decoded
from its own tokens alone, so the files do not depend on how many processes ran or on how the takes were
batched: a one-process run and a run over any number of processes write the same samples. Takes whose file an
earlier run wrote are skipped (``Take.finished``). Progress is one bar of takes (counted fractionally while a
batch generates), summed over all processes and shown by rank 0.
"""
from __future__ import annotations

from dataclasses import dataclass
import json
import os
from pathlib import Path
import secrets
import shlex
import sys
import threading
import typing as tp

from .cli_plan import CLIError, Plan, Take, one_line

if tp.TYPE_CHECKING:  # pragma: no cover
    import torch

SEED_RANGE = 2 ** 32  # a drawn seed: short enough to type back in


@dataclass(frozen=True)
class Shard:
    """This process's part of the work: takes ``i`` with ``i % world_size == rank``."""
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def takes(self, plan: Plan) -> tp.List[Take]:
        return [take for take in plan.pending if take.index % self.world_size == self.rank]


def shard_from_env() -> Shard:
    """``RANK`` / ``WORLD_SIZE`` as ``torchrun`` sets them (one process when they are absent)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE") or 1)
        rank = int(os.environ.get("RANK") or 0)
    except ValueError as exc:
        raise CLIError(f"RANK / WORLD_SIZE must be integers (as torchrun sets them): {exc}") from exc
    if world_size < 1 or not 0 <= rank < world_size:
        raise CLIError(f"RANK={rank} and WORLD_SIZE={world_size} do not describe a process of a group")
    return Shard(rank, world_size)


def base_seed(plan: Plan, shard: Shard) -> int:
    """``--seed``, or one drawn now (by rank 0, shared with the others): every take can be regenerated."""
    if plan.seed is not None:
        return plan.seed
    seed = secrets.randbelow(SEED_RANGE)
    if shard.distributed:
        from .train.distributed import broadcast_object
        seed = int(broadcast_object(seed if shard.rank == 0 else None, src=0))
    return seed


class TakeProgress:
    """Takes done over all processes; a batch being generated counts for its share of decoding steps.

    With several processes a thread all-reduces this process's count every ``interval`` seconds (on a gloo
    group of its own) until every process has called ``close``; rank 0 draws the bar.
    """

    def __init__(self, plan: Plan, shard: Shard, show: bool, interval: float = 0.5) -> None:
        self.shard = shard
        self.interval = interval
        self._before = len(plan.takes) - len(plan.pending)  # written by earlier runs
        self._done = 0.0        # takes finished here, batch in progress included
        self._completed = 0     # takes finished here
        self._closed = threading.Event()
        self._bar: tp.Any = None
        if show and shard.rank == 0 and plan.pending:
            from tqdm import tqdm
            self._bar = tqdm(total=len(plan.takes), initial=self._before, unit="take", desc="generating",
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} takes "
                                        "[{elapsed}<{remaining}]")
        self._thread: tp.Optional[threading.Thread] = None
        if shard.distributed:
            import torch.distributed as dist
            self._group = dist.new_group(backend="gloo")  # collective: every rank builds it
            self._thread = threading.Thread(target=self._sync, name="musicgen-progress", daemon=True)
            self._thread.start()

    def step(self, batch: int, done: int, total: int) -> None:
        """The model's progress callback for a batch of ``batch`` takes: ``done`` of ``total`` steps."""
        self._done = self._completed + batch * min(done, total) / max(total, 1)
        if not self.shard.distributed:
            self._show(self._done)

    def finished(self, count: int) -> None:
        self._completed += count
        self._done = float(self._completed)
        if not self.shard.distributed:
            self._show(self._done)

    def _show(self, done_everywhere: float) -> None:
        if self._bar is not None:
            self._bar.update(self._before + done_everywhere - self._bar.n)

    def _sync(self) -> None:
        import torch
        import torch.distributed as dist
        while True:
            values = torch.tensor([self._done, float(self._closed.is_set())], dtype=torch.float64)
            dist.all_reduce(values, group=self._group)
            self._show(float(values[0]))
            if values[1] >= self.shard.world_size:  # every process is done: all leave at this same round
                return
            self._closed.wait(self.interval)

    def abort(self) -> None:
        """Stop drawing (this process is failing; the others are not waited for)."""
        if self._bar is not None:
            self._bar.close()

    def close(self) -> None:
        """This process is done; with several, wait until all are."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.close()


def generate_batch(model: tp.Any, plan: Plan, takes: tp.List[Take], seeds: tp.List[int],
                   decoder: tp.Any = None) -> tp.List[torch.Tensor]:
    """Audio ``[C, T]`` of each take; each decoded from its own tokens (batch-independent samples), by the model's
    codec or by ``decoder`` (MultiBandDiffusion, its randomness seeded with the take's seed)."""
    descriptions: tp.List[tp.Optional[str]] = [take.prompt or None for take in takes]
    audio = plan.audio
    try:
        if audio is not None and audio.kind == "melody":
            wav, tokens = model.generate_with_chroma(descriptions, audio.wav[None].expand(len(takes), -1, -1),
                                                     audio.sample_rate, return_tokens=True, seed=seeds)
        elif audio is not None:
            wav, tokens = model.generate_continuation(audio.wav[None].expand(len(takes), -1, -1),
                                                      audio.sample_rate, descriptions, return_tokens=True,
                                                      seed=seeds)
        else:
            wav, tokens = model.generate(descriptions, return_tokens=True, seed=seeds)
        if decoder is not None:
            from .cli_decoder import decode_take
            return [decode_take(decoder, tokens[i:i + 1], seed) for i, seed in enumerate(seeds)]
        if len(takes) == 1:
            return [wav[0]]
        # Decoding a batch gives samples that differ from a lone decode by ~1e-6 (float sums in another order);
        # decoding each take alone makes its file a function of its tokens only.
        return [model.generate_audio(tokens[i:i + 1])[0] for i in range(len(takes))]
    except (TypeError, ValueError, OSError) as exc:
        raise CLIError(one_line(exc)) from exc
    except RuntimeError as exc:  # e.g. out of memory
        raise CLIError(f"generation failed: {one_line(exc)}") from exc


def metadata(args: tp.Any, model: tp.Any, plan: Plan, take: Take, seed: int,
             extra: tp.Optional[tp.Dict[str, tp.Any]] = None) -> tp.Dict[str, tp.Any]:
    """Everything needed to regenerate a take: model, prompt, seed, sampling parameters, library version."""
    from . import __version__
    audio = plan.audio
    meta = {
        "library": "audiocraft", "version": __version__, "model": model.name, "prompt": take.prompt, "seed": seed,
        "duration": getattr(model, "duration", args.duration), "generation_params": dict(model.generation_params),
        "extend_stride": getattr(model, "extend_stride", None),
        "melody": str(audio.path) if audio is not None and audio.kind == "melody" else None,
        "continuation": str(audio.path) if audio is not None and audio.kind == "continuation" else None,
        "decoder": getattr(args, "decoder", "encodec"),
        "command": "musicgen " + " ".join(shlex.quote(a) for a in (sys.argv[1:] or [])),
    }
    meta.update(extra or {})
    return meta


def write_json_atomic(path: Path, data: tp.Dict[str, tp.Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_take(take: Take, audio: torch.Tensor, sample_rate: int, fmt: str,
               meta: tp.Optional[tp.Dict[str, tp.Any]]) -> Path:
    """Write one take (loudness-normalised) and, with ``meta``, its tag and ``.json`` sidecar."""
    from .data.audio import audio_write
    tags = None if meta is None else {"comment": json.dumps(meta, sort_keys=True)}
    try:
        target = audio_write(take.path.with_suffix(""), audio.cpu(), sample_rate, format=fmt, strategy="loudness",
                             loudness_compressor=True, metadata=tags)
        if meta is not None:
            write_json_atomic(target.with_name(target.name + ".json"), meta)
    except (OSError, ValueError) as exc:  # no permission, disk full
        raise CLIError(f"cannot write {take.path}: {one_line(exc)}") from exc
    return target


def run_takes(model: tp.Any, plan: Plan, shard: Shard, args: tp.Any, *, seed: int, show_progress: bool = True,
              extra_metadata: tp.Optional[tp.Dict[str, tp.Any]] = None, decoder: tp.Any = None) -> tp.List[Path]:
    """Generate and write this process's takes in batches of ``args.batch_size``; returns the files written.
    ``decoder``: None (the model's codec) or the MultiBandDiffusion of ``--decoder mbd``."""
    mine = shard.takes(plan)
    progress = TakeProgress(plan, shard, show_progress)
    written: tp.List[Path] = []
    try:
        for start in range(0, len(mine), args.batch_size):
            batch = mine[start:start + args.batch_size]
            written += _run_batch(model, plan, args, batch, seed, progress, extra_metadata, len(written), decoder)
    except BaseException:
        progress.abort()  # this process exits at once (torchrun then stops the others), not waiting for them
        raise
    progress.close()
    return written


def _run_batch(model: tp.Any, plan: Plan, args: tp.Any, batch: tp.List[Take], seed: int, progress: TakeProgress,
               extra_metadata: tp.Optional[tp.Dict[str, tp.Any]], written_before: int,
               decoder: tp.Any = None) -> tp.List[Path]:
    model.set_custom_progress_callback(lambda done, total: progress.step(len(batch), done, total))
    audios = generate_batch(model, plan, batch, [seed + take.index for take in batch], decoder)
    written: tp.List[Path] = []
    for take, audio in zip(batch, audios):
        meta = None if args.no_metadata else metadata(args, model, plan, take, seed + take.index, extra_metadata)
        try:
            written.append(write_take(take, audio, model.sample_rate, plan.fmt, meta))
        except CLIError as exc:
            count = written_before + len(written)
            raise CLIError(f"{exc}{f' ({count} file(s) written before)' if count else ''}") from exc
    progress.finished(len(batch))
    return written
