"""Benchmark: text encoding for generation, ours (``T5Conditioner``) vs transformers' ``T5EncoderModel``.

Both read the same random T5-base-size encoder (d_model 768, 12 layers, 12 heads, d_ff 3072; the tokenizer is the
tiny T5 one of ``tests/reference/hf_cache``), written once to a temporary hub cache. The workload is what each
library's MusicGen runs before the first decoding step, with classifier-free guidance, for ``B`` prompts of about
10 tokens:

- ``ours``: ``T5Conditioner.forward`` of the tokenized ``B`` prompts plus ``B`` rows without text (the
  unconditional half), output projection to the LM's width included (what ``MusicGen.generate`` times as text
  encoding); ``ours tokenize`` is the tokenizer call alone;
- ``transformers``: ``T5EncoderModel(input_ids, attention_mask)`` of the ``B`` prompts (transformers' MusicGen
  encodes the prompts once and uses zeros for the unconditional half; its projection runs in the decoder).

Alternating repetitions, medians of wall and this process's CPU time; ``ratio`` = transformers / ours (> 1: ours
faster). The outputs are compared (max abs difference of the prompt rows before projection).

    python benchmarks/t5.py [--reps 20] [--threads N] [--batches 1,4]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time
import typing as tp

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import PROMPT, _write_t5_cache  # noqa: E402  (benchmarks/ is not a package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--batches", default="1,4")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="t5-bench-") as tmp:
        os.environ["HF_HUB_CACHE"] = tmp  # before transformers (and the hub client) are imported
        os.environ["HF_HUB_OFFLINE"] = "1"
        _write_t5_cache(Path(tmp))
        from transformers import T5EncoderModel
        from audiocraft.modules.conditioners.text import T5Conditioner
        ours = T5Conditioner("t5-base", output_dim=1024, finetune=False, device="cpu").eval()
        hf = T5EncoderModel.from_pretrained("t5-base").eval()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads {torch.get_num_threads()}, prompt {PROMPT!r}, {args.reps} alternating reps, medians; "
          f"load average {load:.2f}", flush=True)
    for batch in [int(b) for b in args.batches.split(",")]:
        texts: tp.List[tp.Optional[str]] = [PROMPT] * batch + [None] * batch
        tokens = ours.tokenize(texts)
        hf_inputs = {k: v[:batch] for k, v in tokens.items()}
        runs: tp.Dict[str, tp.Callable[[], tp.Any]] = {
            "ours": lambda: ours(tokens),
            "ours tokenize": lambda: ours.tokenize(texts),
            "transformers": lambda: hf(**hf_inputs).last_hidden_state,
        }
        with torch.inference_mode():
            ref = hf(**hf_inputs).last_hidden_state
            got = ours.t5(**hf_inputs).last_hidden_state
            print(f"  batch {batch}: {hf_inputs['input_ids'].shape[1]} tokens, max |ours T5 - transformers| = "
                  f"{(got - ref).abs().max().item():.2e}", flush=True)
            times: tp.Dict[str, tp.List[tp.Tuple[float, float]]] = {name: [] for name in runs}
            for fn in runs.values():
                fn()
            for rep in range(max(3, args.reps)):
                for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
                    start, cpu = time.perf_counter(), time.process_time()
                    runs[name]()
                    times[name].append((time.perf_counter() - start, time.process_time() - cpu))
        med = {name: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
               for name, v in times.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"batch {batch} (load average {load:.2f}):")
        for name, (wall, cpu) in med.items():
            print(f"  {name:14s} {1000 * wall:7.1f} ms wall, {1000 * cpu:7.1f} ms CPU")
        print(f"  ratio transformers / ours (batch {batch}): {med['transformers'][0] / med['ours'][0]:.2f} wall, "
              f"{med['transformers'][1] / med['ours'][1]:.2f} CPU")


if __name__ == "__main__":
    main()
