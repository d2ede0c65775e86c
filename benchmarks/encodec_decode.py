"""Benchmark: EnCodec decoding, ours vs transformers' ``EncodecModel`` on the same weights.

Both models get the real MusicGen 32 kHz EnCodec sizes (``encodec_large_nq4_s640``: n_filters 64, dimension 128,
ratios [8, 5, 4, 4], 2 LSTM layers, residual kernel 3, 4 x 2048 RVQ, weight norm, non-causal, constant padding)
with random weights; ours are copied into the transformers model so that both compute the same function.

Rows (each a median of alternating repetitions, wall time and this process's CPU time):

- ``ours`` : the model as ``MusicGen.get_pretrained`` gives it (decoder prepared by ``backends.prepare_codec``);
- ``ours plain``: the plain PyTorch modules (no preparation);
- ``transformers``: ``EncodecModel.decode``;
- ``ours stream``: the incremental decoding of ``generate_stream(chunk_seconds=--chunk-seconds)`` (``with
  model.streaming()``, ``decode`` of the frames received each time they complete the next chunk of audio, then
  ``flush_decoder``), prepared decoder; ``ours plain stream`` likewise unprepared.

For batch 1 and 4 (``--batches``); ``--seconds`` of codes (default 5). The max abs difference of each of our
outputs to the plain one-shot decoding is printed; ``ratio`` lines give transformers / ours (> 1: ours faster).

    python benchmarks/encodec_decode.py [--seconds 5] [--reps 5] [--threads N] [--batches 1,4] [--chunk-seconds 1]
"""
from __future__ import annotations

import argparse
import copy
import os
import queue
import re
import statistics
import time
import types
import typing as tp

import torch

from audiocraft.models.encodec import EncodecModel
from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder
from audiocraft.quantization import ResidualVectorQuantizer

SEANET = dict(channels=1, dimension=128, n_filters=64, n_residual_layers=1, ratios=[8, 5, 4, 4], activation="ELU",
              activation_params={"alpha": 1.0}, norm="weight_norm", norm_params={}, kernel_size=7,
              residual_kernel_size=3, last_kernel_size=7, dilation_base=2, causal=False, pad_mode="constant",
              true_skip=True, compress=2, lstm=2, disable_norm_outer_blocks=0)


def build_ours() -> EncodecModel:
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(dimension=128, n_q=4, bins=2048, kmeans_init=False)
    model = EncodecModel(SEANetEncoder(**SEANET), SEANetDecoder(**SEANET, trim_right_ratio=1.0), quantizer,
                         frame_rate=50, sample_rate=32000, channels=1)
    return model.eval()


def build_transformers() -> tp.Any:
    from transformers import EncodecConfig, EncodecModel as HFEncodecModel
    config = EncodecConfig(target_bandwidths=[2.2], sampling_rate=32000, audio_channels=1, normalize=False,
                           chunk_length_s=None, overlap=None, hidden_size=128, num_filters=64,
                           num_residual_layers=1, upsampling_ratios=[8, 5, 4, 4], norm_type="weight_norm",
                           kernel_size=7, last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2,
                           use_causal_conv=False, pad_mode="constant", compress=2, num_lstm_layers=2,
                           trim_right_ratio=1.0, codebook_size=2048, codebook_dim=128, use_conv_shortcut=False)
    return HFEncodecModel(config).eval()


def _hf_key(key: str) -> str:
    """Our decoder / quantizer parameter name -> transformers' name."""
    key = re.sub(r"^decoder\.model\.", "decoder.layers.", key)
    key = re.sub(r"\.(conv|convtr)\.(conv|convtr)\.", ".conv.", key)
    key = key.replace("conv.weight_g", "conv.parametrizations.weight.original0")
    key = key.replace("conv.weight_v", "conv.parametrizations.weight.original1")
    key = re.sub(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook.", key)
    return key


def copy_weights(ours: EncodecModel, hf: tp.Any) -> None:
    hf_state = hf.state_dict()
    update = {}
    for key, value in ours.state_dict().items():
        if key.startswith("encoder."):
            continue
        name = _hf_key(key)
        if name not in hf_state or hf_state[name].shape != value.shape:
            raise KeyError(f"no transformers parameter for {key} (tried {name})")
        update[name] = value
    hf.load_state_dict(update, strict=False)


def _stream(model: EncodecModel, codes: torch.Tensor, chunk_seconds: float) -> torch.Tensor:
    """What ``generate_stream(chunk_seconds=...)`` does with the frames the LM reports one by one."""
    from audiocraft.models.stream import _StreamDecoder
    out: "queue.Queue[torch.Tensor]" = queue.Queue()
    host = types.SimpleNamespace(compression_model=model, sample_rate=model.sample_rate,
                                 frame_rate=model.frame_rate, device=codes.device)
    decoder = _StreamDecoder(tp.cast(tp.Any, host), int(round(chunk_seconds * model.sample_rate)), out)
    with model.streaming():
        for frame in range(codes.shape[-1]):
            decoder.on_frames(codes[..., frame:frame + 1])
        decoder.finish()
    return torch.cat(list(out.queue), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--chunk-seconds", type=float, default=1.0,
                        help="generate_stream's chunk_seconds for the streamed rows (default 1)")
    parser.add_argument("--no-plain", action="store_true", help="leave out the unprepared rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from audiocraft import backends

    plain, hf = build_ours(), build_transformers()
    copy_weights(plain, hf)
    ours = copy.deepcopy(plain)
    prepared = backends.prepare_codec(ours)
    frames = int(args.seconds * 50)
    batches = [int(b) for b in args.batches.split(",")]
    reps = max(3, args.reps)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads {torch.get_num_threads()}, {args.seconds:g} s of codes ({frames} frames), stream chunks of "
          f"{args.chunk_seconds:g} s, {reps} alternating reps, medians; decoder prepared: {prepared}; "
          f"load average {load:.2f}", flush=True)

    for batch in batches:
        codes = torch.randint(0, 2048, (batch, 4, frames), generator=torch.Generator().manual_seed(batch))
        runs: tp.Dict[str, tp.Callable[[], torch.Tensor]] = {
            "ours": lambda: ours.decode(codes),
            "transformers": lambda: hf.decode(codes[None], [None]).audio_values,
            "ours stream": lambda: _stream(ours, codes, args.chunk_seconds),
        }
        if not args.no_plain:
            runs["ours plain"] = lambda: plain.decode(codes)
            runs["ours plain stream"] = lambda: _stream(plain, codes, args.chunk_seconds)
        times: tp.Dict[str, tp.List[tp.Tuple[float, float]]] = {name: [] for name in runs}
        with torch.inference_mode():
            reference = plain.decode(codes)
            for name, fn in runs.items():  # warm-up, and a check that all compute the same thing
                diff = (fn() - reference).abs().max().item()
                print(f"  batch {batch} {name:18s} max |out - ours plain| = {diff:.2e}", flush=True)
            for rep in range(reps):
                order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
                for name in order:
                    start, cpu = time.perf_counter(), time.process_time()
                    runs[name]()
                    times[name].append((time.perf_counter() - start, time.process_time() - cpu))
        med = {name: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
               for name, v in times.items()}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"batch {batch}, {args.seconds:g} s (load average {load:.2f}):")
        for name, (wall, cpu) in med.items():
            print(f"  {name:18s} {1000 * wall:7.0f} ms wall, {1000 * cpu:7.0f} ms CPU  "
                  f"(all wall: {', '.join(f'{1000 * t[0]:.0f}' for t in times[name])})")
        for name in ("ours", "ours stream"):
            print(f"  ratio transformers / {name} (batch {batch}): {med['transformers'][0] / med[name][0]:.2f} "
                  f"wall, {med['transformers'][1] / med[name][1]:.2f} CPU")


if __name__ == "__main__":
    main()
