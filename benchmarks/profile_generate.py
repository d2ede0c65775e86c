"""Profile a short generation of the benchmark model (``benchmarks/generate.py`` sizes) with ``torch.profiler``.

Prints the operators taking the most CPU time (self time) over ``--frames`` decoding steps, batch ``--batch``.

    python benchmarks/profile_generate.py [--fixtures DIR] [--frames 50] [--batch 1] [--threads N] [--pack/--no-pack]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=None, help="reuse / keep the model folders here")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fixtures, tmp = bench.prepare_fixtures(args.fixtures)
    from audiocraft.models import MusicGen

    options = {"fp32": {}, "bf16": {"dtype": torch.bfloat16}, "int8": {"quantize": "int8"}}[args.precision]
    model = MusicGen.get_pretrained(str(fixtures / "ours"), device="cpu", pack=args.pack, **options)
    model.set_generation_params(duration=args.frames / bench.FRAME_RATE, top_k=250, cfg_coef=3.0)
    model.generate([bench.PROMPT] * args.batch, seed=0)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model.generate([bench.PROMPT] * args.batch, seed=1)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
