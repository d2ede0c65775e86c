"""Benchmark: peak memory of a long batched generation on CPU, against the weights' bytes and the activation budget.

The model is the one of ``benchmarks/generate.py`` (musicgen-small sizes, random weights, the real 32 kHz EnCodec;
``--size medium`` for the 1.5B decoder). Each precision runs in its own fresh process: load with
``MusicGen.get_pretrained`` (``dtype`` / ``quantize`` as in ``generate.py``), then ``generate`` ``--seconds`` of
audio (default 30) for ``--batch`` prompts (default 4) with classifier-free guidance (2 rows per item), top-k 250,
one global seed. Reported, from the kernel's own counters (``VmRSS`` / ``VmHWM``):

- weights: the bytes of every parameter and buffer as held in memory (packed LM weights at their packed size,
  the T5 encoder, EnCodec);
- budget: what the generation itself must hold at its peak (README, "Memory"), at the end of the LM's run: the
  self-attention key/value cache (2 x layers x rows x steps x dim; 4 bytes per value for float32 weights, 2 for
  bf16 / int8, whose cache is float16), the cross-attention keys/values (2 x layers x rows x text tokens x dim x
  4), the codes and the audio (batch x channels x samples x 4). EnCodec decodes after the cache is released, in
  bounded blocks (``audiocraft/backends/cpu/codec.py``): the codec peak is reported beside it (for scale, the
  plain PyTorch decoder would hold its two widest activations, 2 x batch x 64 channels x samples x 4);
- base: the resident set of the process before loading (Python, torch, transformers, this package);
- load peak, generation peak and codec peak: the highest resident set size while loading, while generating
  (tokens and audio), and while decoding the same tokens again with ``generate_audio`` alone (the counter is
  reset before each), each less the base; the target is ``generation peak - base <= 1.3 x weights + budget``.

    python benchmarks/memory.py [--seconds 30] [--batch 4] [--precisions fp32,bf16,int8] [--size small|medium]
                                [--fixtures DIR]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import typing as tp

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as bench  # noqa: E402  (model fixtures, sizes and machine description of the main benchmark)

OPTIONS: tp.Dict[str, tp.Dict[str, tp.Any]] = {
    "fp32": {}, "bf16": {"dtype": torch.bfloat16}, "int8": {"quantize": "int8"}}


def _status(key: str) -> float:
    """A ``/proc/self/status`` memory counter, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _held_bytes(model: tp.Any) -> int:
    """Bytes of the parameters and buffers of the LM, the conditioners and the codec, packed weights as packed."""
    total = 0
    seen: tp.Set[int] = set()
    roots = [model.lm, model.compression_model]
    for conditioner in model.lm.condition_provider.conditioners.values():  # T5 is held outside the state dict
        t5 = conditioner.__dict__.get("t5")
        if isinstance(t5, torch.nn.Module):
            roots.append(t5)
    for root in roots:
        for module in root.modules():
            packed = module.__dict__.get("_packed", None)
            for piece in (packed.values() if isinstance(packed, dict) else ()):
                if not getattr(piece, "shares_parameter", False):  # else counted with the parameter
                    total += int(getattr(piece, "nbytes", 0))
            for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                if tensor.data_ptr() in seen or tensor.numel() == 0:
                    continue
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    return total


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM back to the current RSS


def worker(precision: str, folder: Path, seconds: float, batch: int) -> tp.Dict[str, float]:
    import transformers  # noqa: F401  (imported by the T5 conditioner anyway: part of the base, not the model)
    from audiocraft.models import MusicGen

    base = _status("VmRSS")
    model = MusicGen.get_pretrained(str(folder), device="cpu", **OPTIONS[precision])
    load_peak = _status("VmHWM")
    _reset_peak()
    weights = _held_bytes(model)
    model.set_generation_params(duration=seconds, top_k=250, cfg_coef=3.0)
    lm = model.lm
    layers = len(lm.transformer.layers)
    dim = lm.dim
    rows = 2 * batch
    steps = int(round(seconds * model.frame_rate)) + bench.DELAY_STEPS
    text_tokens = len(lm.condition_provider.conditioners["description"].t5_tokenizer(bench.PROMPT)["input_ids"])
    cache_bytes = 4 if precision == "fp32" else 2
    samples = int(round(seconds * model.sample_rate))
    budget = {
        "kv_cache": 2 * layers * rows * steps * dim * cache_bytes,
        "cross_kv": 2 * layers * rows * text_tokens * dim * 4,
        "audio": batch * model.audio_channels * samples * 4 + batch * lm.num_codebooks * steps * 8,
    }
    torch.manual_seed(0)  # one global seed, as generate.py
    wav, tokens = model.generate([bench.PROMPT] * batch, return_tokens=True)
    assert wav.shape[-1] == samples, wav.shape
    peak = _status("VmHWM")
    del wav
    _reset_peak()
    model.generate_audio(tokens)  # the codec alone, for its share of the peak
    codec_peak = _status("VmHWM")
    result = {"base": base, "weights": float(weights), "load_peak": load_peak, "peak": peak, "codec_peak": codec_peak}
    result.update({f"budget_{k}": float(v) for k, v in budget.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--size", choices=sorted(bench.SIZES), default="small")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fixtures", type=Path, default=None, help="reuse / keep the model folders here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        os.environ["HF_HUB_OFFLINE"] = "1"
        result = worker(args.worker, args.fixtures, args.seconds, args.batch)
        print(json.dumps(result), flush=True)
        return
    bench.configure(False, args.size)
    fixtures, tmp = bench.prepare_fixtures(args.fixtures)
    print(bench.describe_machine(), flush=True)
    rows = []
    for precision in args.precisions.split(","):
        command = [sys.executable, __file__, "--worker", precision, "--fixtures", str(bench._folder(fixtures, "ours")),
                   "--seconds", str(args.seconds), "--batch", str(args.batch), "--threads", str(args.threads)]
        proc = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_CACHE": str(fixtures / "hf_cache")})
        if proc.returncode != 0:
            raise RuntimeError(f"{precision} worker failed:\n{proc.stderr[-3000:]}")
        rows.append((precision, json.loads(proc.stdout.strip().splitlines()[-1])))
        print(f"  {precision}: {rows[-1][1]}", flush=True)
    if tmp is not None:
        tmp.cleanup()
    gb = 1e9
    print()
    print(f"{args.seconds:g} s of audio, batch {args.batch} (CFG: {2 * args.batch} rows), {args.size} sizes")
    print("| precision | base GB | weights GB | budget GB (KV cache + cross + audio) | load peak GB | "
          "generation peak GB | codec peak GB | 1.3 x weights + budget GB | within |")
    print("|---|---|---|---|---|---|---|---|---|")
    for precision, r in rows:
        budget = r["budget_kv_cache"] + r["budget_cross_kv"] + r["budget_audio"]
        limit = 1.3 * r["weights"] + budget
        used = r["peak"] - r["base"]
        cells = [r["base"], r["weights"], budget, r["load_peak"] - r["base"], used, r["codec_peak"] - r["base"],
                 limit]
        print(f"| {precision} | " + " | ".join(f"{c / gb:.2f}" for c in cells)
              + f" | {'yes' if used <= limit else 'NO'} |")
    print("(peaks less the base; the codec peak, decoding the same tokens alone, includes the resident weights)")


if __name__ == "__main__":
    main()
