"""Benchmark: MultiBandDiffusion ``tokens_to_wav`` at the real model sizes, random weights, on CPU.

Sizes (Audiocraft 1.3 ``config/model/score/basic.yaml`` with the ``grids/diffusion/4_bands_base_32khz.py``
settings): U-Net hidden 48, depth 4, growth 4 (channels 48, 192, 768, 3072), max_channels 10000, kernel 8,
stride 4, 1 residual block, 4 norm groups, step embeddings at every layer, bottleneck transformer (d_model 3072,
8 heads, 6 layers, feed-forward 2048, dropout 0.1, training mode as in Audiocraft), condition = the 128-dim
latent of the real 32 kHz EnCodec (n_filters 64, ratios [8, 5, 4, 4], 4 x 2048 codebooks), 4 bands (bands 2
and 3 with an 8-band MultiBandProcessor), 20 model calls per band (80 per decode). To save memory the 4 bands
share one U-Net (same computation as 4 distinct ones: ~1.9 GB of weights each); ``--distinct-bands`` builds 4.

Two implementations run on the same weights, alternating: "optimized" (this package: convolutions as one matrix
product each, the exact dropout kernel, attention written out) and "baseline" (the same model with PyTorch's own
kernels patched back in: oneDNN convolutions on a padded copy, ``F.dropout``, ``F.scaled_dot_product_attention``,
out-of-place ReLU, i.e. a plain PyTorch port; the few in-place residual additions stay). With the same seed both
give the same audio (max difference printed).

Reports the wall and CPU time of one ``tokens_to_wav`` call on ``--seconds`` of tokens at batch 1 (after a short
warm-up), the real-time factor (wall time / audio duration) and the time per U-Net call. ``--unet-only`` times
single U-Net calls instead (quick A/B); ``--profile`` prints a per-operator table of one optimized U-Net call.

    python benchmarks/mbd.py [--seconds 5] [--threads 2] [--reps 1] [--unet-only] [--profile] [--distinct-bands]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import platform
import time
import typing as tp

import torch
from torch.nn import functional as F

from audiocraft.models.encodec import EncodecModel
from audiocraft.models.multibanddiffusion import DiffusionProcess, MultiBandDiffusion
from audiocraft import backends
from audiocraft.backends.diffusion import TORCH_DIFFUSION_OPS
from audiocraft.models import unet as unet_module
from audiocraft.models.unet import BottleneckAttention, DiffusionUnet
from audiocraft.modules.diffusion_schedule import MultiBandProcessor, NoiseSchedule, SampleProcessor
from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder
from audiocraft.quantization import ResidualVectorQuantizer

UNET = dict(chin=1, hidden=48, depth=4, growth=4.0, max_channels=10_000, num_steps=1000, emb_all_layers=True,
            bilstm=False, transformer=True, codec_dim=128, cross_attention=False, res_blocks=1, norm_groups=4,
            kernel=8, stride=4, dropout=0.0)
SCHEDULE = dict(beta_t0=1e-5, beta_t1=2.9e-2, beta_exp=7.5, num_steps=1000, variance="beta", clip=5.0,
                rescale=1.0, repartition="power", noise_scale=1.0)
POWER_STD = [None, None, 0.4, 0.75]  # per band: no processor, no processor, MultiBandProcessor 0.4 / 0.75
SEANET = dict(channels=1, dimension=128, n_filters=64, n_residual_layers=1, ratios=[8, 5, 4, 4], activation="ELU",
              activation_params={"alpha": 1.0}, norm="weight_norm", norm_params={}, kernel_size=7,
              residual_kernel_size=3, last_kernel_size=7, dilation_base=2, causal=False, pad_mode="constant",
              true_skip=True, compress=2, lstm=2, disable_norm_outer_blocks=0)


def build_codec() -> EncodecModel:
    quantizer = ResidualVectorQuantizer(dimension=128, n_q=4, bins=2048, kmeans_init=False)
    model = EncodecModel(SEANetEncoder(**SEANET), SEANetDecoder(**SEANET, trim_right_ratio=1.0), quantizer,
                         frame_rate=50, sample_rate=32000, channels=1)
    return model.eval()


def build_unet() -> DiffusionUnet:
    model = DiffusionUnet(**UNET)  # left in training mode, as MultiBandDiffusion runs it
    with torch.no_grad():  # keep activations in a sane range through the 4 levels (the default init grows them)
        for name, param in model.named_parameters():
            if param.dim() > 1 and "embedding" not in name:
                param.mul_(0.5)
    return model


def build_processor(power_std: tp.Optional[float]) -> SampleProcessor:
    if power_std is None:
        return SampleProcessor()
    processor = MultiBandProcessor(n_bands=8, sample_rate=32000, num_samples=10_000, power_std=power_std)
    processor.counts.fill_(10_000)
    processor.sum_x.zero_()
    processor.sum_x2.fill_(10_000 * 0.01)
    processor.sum_target_x2.fill_(10_000 * 0.125)
    return processor


def build_mbd(distinct: bool) -> MultiBandDiffusion:
    torch.manual_seed(0)
    codec = build_codec()
    shared = None if distinct else build_unet()
    dps = []
    for power_std in POWER_STD:
        unet = shared if shared is not None else build_unet()
        schedule = NoiseSchedule(**SCHEDULE, sample_processor=build_processor(power_std), device="cpu")
        dps.append(DiffusionProcess(model=unet, noise_schedule=schedule))
    return MultiBandDiffusion(DPs=dps, codec_model=codec)


def _sdpa_attention(self: BottleneckAttention, x: torch.Tensor) -> torch.Tensor:
    """The attention through ``F.scaled_dot_product_attention`` (as ``nn.MultiheadAttention`` computes it)."""
    mha = self.mha
    B, T, E = x.shape
    H = mha.num_heads
    proj = F.linear(x.transpose(0, 1), mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = proj.view(T, B, 3, H, E // H).permute(2, 1, 3, 0, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=mha.dropout if self.training else 0.0)
    out = out.permute(2, 0, 1, 3).reshape(T, B, E)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias).transpose(0, 1)


def _unets(mbd: MultiBandDiffusion) -> tp.List[DiffusionUnet]:
    return [tp.cast(DiffusionUnet, dp.model) for dp in mbd.DPs]


@contextlib.contextmanager
def baseline(mbd: MultiBandDiffusion) -> tp.Iterator[None]:
    """PyTorch's own kernels in the U-Net: oneDNN convolutions, F.dropout (backends.diffusion's default ops), SDPA
    attention, no in-place activation."""
    saved = unet_module._norm_act, BottleneckAttention.forward
    for unet in _unets(mbd):
        unet.set_ops(TORCH_DIFFUSION_OPS)
    unet_module._norm_act = lambda norm, activation, x: activation(norm(x))  # type: ignore[assignment]
    BottleneckAttention.forward = _sdpa_attention  # type: ignore[method-assign]
    try:
        yield
    finally:
        unet_module._norm_act, BottleneckAttention.forward = saved  # type: ignore[method-assign]


@contextlib.contextmanager
def optimized(mbd: MultiBandDiffusion) -> tp.Iterator[None]:
    """What MultiBandDiffusion.get_mbd_musicgen gives on CPU: backends.prepare_diffusion."""
    for unet in _unets(mbd):
        backends.prepare_diffusion(unet)
    yield


MODES = {"baseline": baseline, "optimized": optimized}


def _timed(fn: tp.Callable[[], torch.Tensor]) -> tp.Tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def unet_only(mbd: MultiBandDiffusion, seconds: float, batch: int, reps: int) -> None:
    model = mbd.DPs[0].model
    x = torch.randn(batch, 1, int(seconds * 32000))
    condition = torch.randn(batch, 128, int(seconds * 50))
    results: tp.Dict[str, tp.List[tp.Tuple[float, float]]] = {mode: [] for mode in MODES}
    outputs = {}
    with torch.no_grad():
        for rep in range(reps + 1):  # the first round is a warm-up
            for mode, context in MODES.items():
                with context(mbd):
                    torch.manual_seed(0)
                    out, wall, cpu = _timed(lambda: model(x, 949, condition=condition).sample)
                if rep:
                    results[mode].append((wall, cpu))
                outputs[mode] = out
    for mode, times in results.items():
        print(f"U-Net call ({seconds:g} s, batch {batch}) {mode}: wall {min(t[0] for t in times):.2f} s, "
              f"cpu {min(t[1] for t in times):.2f} s (best of {reps})")
    diff = (outputs["baseline"] - outputs["optimized"]).abs().max().item()
    print(f"max |baseline - optimized| = {diff:.2e}")


def profile_one_call(mbd: MultiBandDiffusion, seconds: float, batch: int) -> None:
    model = mbd.DPs[0].model
    x = torch.randn(batch, 1, int(seconds * 32000))
    condition = torch.randn(batch, 128, int(seconds * 50))
    with torch.no_grad():
        model(x, 999, condition=condition)
        with torch.profiler.profile() as prof:
            model(x, 999, condition=condition)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch default)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--modes", default="baseline,optimized", help="comma-separated: baseline, optimized")
    parser.add_argument("--unet-only", action="store_true", help="time single U-Net calls instead")
    parser.add_argument("--profile", action="store_true", help="print an operator profile of one U-Net call")
    parser.add_argument("--distinct-bands", action="store_true", help="4 U-Nets instead of one shared")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {_cpu_name()} "
          f"({platform.machine()})")
    t0 = time.perf_counter()
    mbd = build_mbd(args.distinct_bands)
    n_params = sum(p.numel() for p in mbd.DPs[0].model.parameters())
    print(f"built in {time.perf_counter() - t0:.1f} s; U-Net parameters per band: {n_params / 1e6:.1f} M")
    if args.profile:
        profile_one_call(mbd, args.seconds, args.batch)
        return
    if args.unet_only:
        unet_only(mbd, args.seconds, args.batch, args.reps)
        return
    frames = int(round(args.seconds * 50))
    tokens = torch.randint(0, 2048, (args.batch, 4, frames), generator=torch.Generator().manual_seed(1))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    calls = 20 * len(mbd.DPs)
    outputs = {}
    for mode in modes:
        with MODES[mode](mbd):
            torch.manual_seed(2)
            mbd.tokens_to_wav(tokens[..., :10])  # warm-up (0.2 s)
    for rep in range(args.reps):
        for mode in modes:
            with MODES[mode](mbd):
                torch.manual_seed(3)
                wav, wall, cpu = _timed(lambda: mbd.tokens_to_wav(tokens))
            outputs[mode] = wav
            duration = wav.shape[-1] / 32000
            print(f"[{mode}] tokens_to_wav, batch {args.batch}, {duration:.2f} s of audio: wall {wall:.1f} s "
                  f"(real-time factor {wall / duration:.2f}), cpu {cpu:.1f} s, {wall / calls * 1000:.0f} ms per "
                  f"U-Net call ({calls} calls); output rms {wav.pow(2).mean().sqrt().item():.4f}", flush=True)
    if len(outputs) == 2:
        a, b = outputs.values()
        diff = (a - b).abs().max().item()
        print(f"max |baseline - optimized| = {diff:.2e}" + ("" if math.isfinite(diff) else " (not finite!)"))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
