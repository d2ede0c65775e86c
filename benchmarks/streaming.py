"""Benchmark: time to first audio, ``MusicGen.generate_stream`` vs ``MusicGen.generate``, on CPU.

The model is the one of ``benchmarks/generate.py`` (musicgen-small sizes, random weights, the real 32 kHz EnCodec;
written to a temporary folder, or reused with ``--fixtures``). Workload: one text prompt, classifier-free guidance
(coef 3), top-k 250 sampling with a fixed seed, 10 s of audio, batch 1. Time to first audio is when the caller
holds playable audio: the first chunk of ``generate_stream(chunk_seconds=...)``, or the return of ``generate``;
a third row streams with a shorter first chunk (``first_chunk_seconds=--first-chunk-seconds``, default 0.5; 0
leaves the row out). The rows alternate, median of ``--reps``. ``--precisions`` runs each weight format in turn
(``fp32``, ``bf16``: ``get_pretrained(dtype=torch.bfloat16)``, ``int8``: ``get_pretrained(quantize='int8')``). The
real-time factor is the wall time over the seconds of audio (below 1: generated faster than it plays).

    python benchmarks/streaming.py [--seconds 10] [--chunk-seconds 1] [--first-chunk-seconds 0.5] [--reps 3]
                                   [--precisions fp32,bf16,int8] [--fixtures DIR]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import statistics
import sys
import time
import typing as tp

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as bench  # noqa: E402  (the model fixtures and machine description of the main benchmark)


def _plain(model: tp.Any, seed: int) -> tp.Dict[str, float]:
    start = time.perf_counter()
    wav = model.generate([bench.PROMPT], seed=seed)
    end = time.perf_counter()
    return {"first_s": end - start, "total_s": end - start, "audio_s": wav.shape[-1] / model.sample_rate}


def _stream(model: tp.Any, seed: int, chunk_seconds: float,
            first_chunk_seconds: tp.Optional[float] = None) -> tp.Dict[str, float]:
    start = time.perf_counter()
    first = None
    samples = 0
    for chunk in model.generate_stream([bench.PROMPT], chunk_seconds=chunk_seconds,
                                       first_chunk_seconds=first_chunk_seconds, seed=seed):
        if first is None:
            first = time.perf_counter() - start
            first_chunk_s = chunk.shape[-1] / model.sample_rate
        samples += chunk.shape[-1]
    total = time.perf_counter() - start
    assert first is not None
    return {"first_s": first, "total_s": total, "audio_s": samples / model.sample_rate,
            "first_chunk_s": first_chunk_s}


FIRST = "generate_stream, shorter first chunk"
OPTIONS: tp.Dict[str, tp.Dict[str, tp.Any]] = {
    "fp32": {}, "bf16": {"dtype": torch.bfloat16}, "int8": {"quantize": "int8"}}


def _measure(folder: Path, precision: str, args: argparse.Namespace) -> tp.Dict[str, tp.List[tp.Dict[str, float]]]:
    from audiocraft.models import MusicGen

    model = MusicGen.get_pretrained(str(folder), device="cpu", **OPTIONS[precision])
    model.set_generation_params(duration=args.seconds, top_k=250, cfg_coef=3.0)
    model.generate([bench.PROMPT], seed=0)  # warm-up (kernels, allocator)
    runs: tp.Dict[str, tp.Callable[[int], tp.Dict[str, float]]] = {
        "generate": lambda rep: _plain(model, rep),
        "generate_stream": lambda rep: _stream(model, rep, args.chunk_seconds)}
    if args.first_chunk_seconds > 0:
        runs[FIRST] = lambda rep: _stream(model, rep, args.chunk_seconds, args.first_chunk_seconds)
    rows: tp.Dict[str, tp.List[tp.Dict[str, float]]] = {name: [] for name in runs}
    for rep in range(max(1, args.reps)):
        order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
        for name in order:
            row = runs[name](rep)
            rows[name].append(row)
            print(f"  {precision} {name:16s} rep {rep}: first audio after {row['first_s']:.2f} s, done after "
                  f"{row['total_s']:.2f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio to generate (default 10)")
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="generate_stream chunk size (default 1)")
    parser.add_argument("--first-chunk-seconds", type=float, default=0.5,
                        help="first_chunk_seconds of the third row (default 0.5; 0: no such row)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    parser.add_argument("--fixtures", type=Path, default=None, help="reuse / keep the model folders here")
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated: fp32, bf16, int8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fixtures, tmp = bench.prepare_fixtures(args.fixtures)
    print(bench.describe_machine(), flush=True)
    results = {precision: _measure(fixtures / "ours", precision, args) for precision in args.precisions.split(",")}
    if tmp is not None:
        tmp.cleanup()

    def median(rows: tp.List[tp.Dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print()
    print(f"{args.seconds:g} s of audio, batch 1, chunk_seconds {args.chunk_seconds:g} (first_chunk_seconds "
          f"{args.first_chunk_seconds:g} in the third row), "
          f"{torch.get_num_threads()} threads, medians of {max(1, args.reps)}")
    print("| precision | API | time to first audio (s) | total (s) | real-time factor |")
    print("|---|---|---|---|---|")
    for precision, rows in results.items():
        for name, done in rows.items():
            total = median(done, "total_s")
            label = f"`generate_stream(first_chunk_seconds={args.first_chunk_seconds:g})`" if name == FIRST \
                else f"`{name}`"
            print(f"| {precision} | {label} | {median(done, 'first_s'):.2f} | {total:.2f} | "
                  f"{total / median(done, 'audio_s'):.2f} |")
    for precision, rows in results.items():
        print(f"time_to_first_audio[{precision}]: {median(rows['generate_stream'], 'first_s'):.2f} s "
              f"(generate_stream), {median(rows['generate'], 'first_s'):.2f} s (generate); first chunk holds "
              f"{median(rows['generate_stream'], 'first_chunk_s'):.2f} s of audio")
        if FIRST in rows:
            print(f"time_to_first_audio[{precision}, first_chunk_seconds={args.first_chunk_seconds:g}]: "
                  f"{median(rows[FIRST], 'first_s'):.2f} s")


if __name__ == "__main__":
    main()
