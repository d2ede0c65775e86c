"""Benchmark: decode 10 s of EnCodec codes, ours vs transformers' ``EncodecModel``.

Both models get the real MusicGen 32 kHz EnCodec sizes (``encodec_large_nq4_s640``: n_filters 64, dimension 128,
ratios [8, 5, 4, 4], 2 LSTM layers, residual kernel 3, 4 x 2048 RVQ, weight norm, non-causal, constant padding)
with random weights; ours are copied into the transformers model so that both compute the same function (the
max abs difference of the outputs is printed). Repetitions alternate between the two; medians are reported, and
the ratio ours / transformers is the last line (< 1: ours is faster).

    python benchmarks/encodec_decode.py [--seconds 10] [--reps 5] [--threads N]
"""
from __future__ import annotations

import argparse
import re
import statistics
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ours, hf = build_ours(), build_transformers()
    copy_weights(ours, hf)
    frames = int(args.seconds * 50)
    codes = torch.randint(0, 2048, (1, 4, frames), generator=torch.Generator().manual_seed(0))

    def run_ours() -> torch.Tensor:
        return ours.decode(codes)

    def run_hf() -> torch.Tensor:
        return hf.decode(codes[None], [None]).audio_values

    with torch.inference_mode():
        a, b = run_ours(), run_hf()  # warm-up, and a check that both compute the same thing
        print(f"output {list(a.shape)}; max |ours - transformers| = {(a - b).abs().max().item():.2e}")
        times: tp.Dict[str, tp.List[float]] = {"ours": [], "transformers": []}
        for _ in range(max(3, args.reps)):
            for name, fn in (("ours", run_ours), ("transformers", run_hf)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"threads {torch.get_num_threads()}, {args.seconds:g} s of codes ({frames} frames), "
          f"{max(3, args.reps)} alternating reps, median:")
    print(f"ours:         {med['ours']:.3f} s  (all: {', '.join(f'{t:.3f}' for t in times['ours'])})")
    print(f"transformers: {med['transformers']:.3f} s  (all: {', '.join(f'{t:.3f}' for t in times['transformers'])})")
    print(f"ratio ours / transformers: {med['ours'] / med['transformers']:.3f}")


if __name__ == "__main__":
    main()
