"""Benchmark: what bounds the native matrix-vector kernels on this CPU, memory or arithmetic.

For each weight format (fp32, bf16, int8) and number of rows (2: batch 1 with classifier-free guidance; 8: batch 4),
the kernel of a decoding step runs over

- **streamed**: as many distinct 4096 x 1024 weights (the shape of a feed-forward map) as one musicgen-small step
  reads bytes (84: 352 MB in int8), so that they come from main memory, one pass per repetition;
- **in cache**: one such weight (4 MB in int8, 16 MB in fp32) read as many times, so that it stays in the
  last-level cache: about the rate the arithmetic alone allows (where that cache is faster than the kernel).

One kernel call per weight from Python (~10-20 us each, the same in both rows; the decoding step itself runs all
its maps in one native call).

Rates are weight bytes per second (GB/s) of the fastest of ``--reps`` passes (a ceiling: on a shared machine the
slower passes measure the neighbours). When the streamed rate comes near the in-cache rate (0.85 of it or more),
arithmetic bounds the kernel, not memory: faster memory would not help, fewer instructions per weight would (e.g.
VNNI's one-instruction int16 dot products, which AVX2 machines lack); otherwise memory does.

    python benchmarks/kernel_ceiling.py [--reps 15] [--threads N] [--formats fp32,bf16,int8] [--rows 2,8]
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
import generate as bench  # noqa: E402  (the model sizes and machine description of the main benchmark)

SHAPE = (4096, 1024)


def _count() -> int:
    """How many weights of SHAPE hold the bytes of the linear maps of one step (24 layers of musicgen-small)."""
    E, F = bench.DIM, bench.FFN
    per_layer = 3 * E * E + E * E + E * E + E * E + 2 * F * E
    return round(bench.LAYERS * per_layer / (SHAPE[0] * SHAPE[1]))


def _weight(shape: tp.Tuple[int, int], fmt: str) -> tp.Any:
    from audiocraft.backends.cpu.packing import NativeBF16Weight, NativeInt8Weight, NativeWeight
    cls = {"fp32": NativeWeight, "bf16": NativeBF16Weight, "int8": NativeInt8Weight}[fmt]
    return cls(torch.randn(shape) * 0.02, 2)


def _rate(weights: tp.Sequence[tp.Any], rows: int, reps: int) -> float:
    """GB/s of the fastest of ``reps`` passes over ``weights`` (each read once per pass)."""
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}
    total = sum(w.nbytes for w in weights)
    times = []
    for rep in range(reps + 2):
        start = time.perf_counter()
        for w in weights:
            w.linear(inputs[w.shape[1]], None)
        if rep >= 2:  # warm-up passes left out
            times.append(time.perf_counter() - start)
    return total / min(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15, help="passes per measurement (the fastest counts)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    parser.add_argument("--formats", default="fp32,bf16,int8")
    parser.add_argument("--rows", default="2,8")
    args = parser.parse_args()
    from audiocraft.backends.cpu import kernels
    if not kernels.available():
        raise SystemExit("The native kernels are not built here (no C++ compiler?): nothing to measure.")
    torch.set_num_threads(args.threads)
    print(bench.describe_machine(), flush=True)
    bandwidth = statistics.median(bench.measure_bandwidth(args.threads))
    print(f"threads {args.threads}; memory read bandwidth {bandwidth:.1f} GB/s (median)", flush=True)
    rows_list = [int(r) for r in args.rows.split(",")]
    lines = []
    with torch.inference_mode():
        for fmt in args.formats.split(","):
            streamed = [_weight(SHAPE, fmt) for _ in range(_count())]
            repeated = [streamed[0]] * len(streamed)
            for rows in rows_list:
                mem = _rate(streamed, rows, args.reps)
                cache = _rate(repeated, rows, args.reps)
                bound = "arithmetic" if mem >= 0.85 * cache else "memory"
                line = (f"| {fmt} | {rows} | {mem:.1f} | {cache:.1f} | {mem / bandwidth:.2f} | "
                        f"{cache / bandwidth:.2f} | {bound} |")
                print(line, flush=True)
                lines.append(line)
            del streamed
    print()
    print("| format | rows | streamed GB/s | in cache GB/s | streamed / bandwidth | in cache / bandwidth | bound by |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
