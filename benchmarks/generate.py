"""Benchmark: MusicGen generation on CPU, ours vs transformers' ``MusicgenForConditionalGeneration``.

Both get musicgen-small sizes with random weights: a decoder of 24 layers (dim 1024, 16 heads, FFN 4096, 4
codebooks x 2048, delay pattern, cross-attention), a T5-base-size text encoder (d_model 768, 12 layers, 12 heads,
d_ff 3072) and the real 32 kHz EnCodec (n_filters 64, dimension 128, ratios [8, 5, 4, 4], 2 LSTM layers, 4 x 2048).
The models are written to a temporary folder first (ours: the official exported layout, loaded with
``MusicGen.get_pretrained(folder)``; transformers: ``save_pretrained``, loaded with ``from_pretrained``), which
also times loading. The tokenizer is the tiny T5 one of ``tests/reference/hf_cache``.

``--size medium``: the decoder of musicgen-medium (48 layers, dim 1536, 24 heads, FFN 6144; 1.5B parameters),
the same T5 and EnCodec. ``--stereo``: the stereo sizes instead (musicgen-stereo-small: the same decoder with 8
codebooks, the left and right channels' codes interleaved, delays [0, 0, 1, 1, 2, 2, 3, 3], the mono EnCodec run
once per channel), beside transformers' stereo MusicGen (decoder ``audio_channels=2``).

Workload: one text prompt of about 10 tokens, classifier-free guidance (coef 3), top-k 250 sampling with a fixed
seed, 5 s of audio (250 frames, 253 decoding steps with the delay pattern), batch 1 and 4. Each implementation
(and precision) runs in its own worker process (so peak RSS is per implementation); the parent alternates the
repetitions between workers and reports medians.

    python benchmarks/generate.py [--quick] [--reps 3] [--threads N] [--precisions fp32,bf16,int8] [--stereo]
                                  [--size small|medium]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import typing as tp

import torch

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_CACHE = ROOT / "tests" / "reference" / "hf_cache"
PROMPT = "happy rock song with electric guitar"  # 10 tokens with the reference tokenizer
SAMPLE_RATE = 32000
FRAME_RATE = 50
N_Q = 4           # codebooks the LM predicts (8 with --stereo: 4 per channel)
DELAY_STEPS = 3   # extra decoding steps of the delay pattern (the last codebook level is 3 frames late)
STEREO = False
CARD = 2048
DIM = 1024
LAYERS = 24
HEADS = 16
FFN = 4096
T5_SIZES = dict(d_model=768, num_layers=12, num_heads=12, d_ff=3072, d_kv=64, vocab_size=32128)
SEANET = dict(dimension=128, n_filters=64, ratios=[8, 5, 4, 4], lstm=2)
T5_COMMIT = "0" * 40


# ---------------------------------------------------------------------------------------------- fixtures
SIZES = {"small": (1024, 24, 16, 4096), "medium": (1536, 48, 24, 6144)}  # dim, layers, heads, FFN
SIZE = "small"


def configure(stereo: bool, size: str = "small") -> None:
    """Switch the module to the stereo sizes (8 interleaved codebooks, 2 channels) or back, and to the decoder
    of musicgen-``size`` (``small``: 24 layers of 1024; ``medium``: 48 layers of 1536, 24 heads, FFN 6144)."""
    global N_Q, STEREO, SIZE, DIM, LAYERS, HEADS, FFN
    N_Q, STEREO = (8, True) if stereo else (4, False)
    SIZE = size
    DIM, LAYERS, HEADS, FFN = SIZES[size]


def _folder(root: Path, impl: str) -> Path:
    """Where the model of ``impl`` ('ours' / 'transformers') lives under the fixtures root."""
    return root / (impl + ("_stereo" if STEREO else "") + ("" if SIZE == "small" else f"_{SIZE}"))


def _reference_package(filename: str, repo_name: str = "musicgen-small") -> tp.Dict[str, tp.Any]:
    repo = REFERENCE_CACHE / f"models--facebook--{repo_name}"
    commit = (repo / "refs" / "main").read_text().strip()
    return torch.load(repo / "snapshots" / commit / filename, map_location="cpu", weights_only=True)


def _write_t5_cache(cache: Path) -> None:
    """A hub cache holding a random T5-base-size encoder under 't5-base' (tokenizer files: the reference's)."""
    from transformers import T5Config, T5EncoderModel
    src_repo = REFERENCE_CACHE / "models--t5-base"
    src = src_repo / "snapshots" / (src_repo / "refs" / "main").read_text().strip()
    repo = cache / "models--t5-base"
    snapshot = repo / "snapshots" / T5_COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(T5_COMMIT)
    for path in src.iterdir():
        if path.name not in ("model.safetensors", "config.json"):
            (snapshot / path.name).write_bytes(path.read_bytes())
    torch.manual_seed(1)
    config = T5Config(**T5_SIZES, feed_forward_proj="relu", is_encoder_decoder=True)
    T5EncoderModel(config).eval().save_pretrained(snapshot)


def _write_ours(folder: Path) -> None:
    """Our exported checkpoint folder (``state_dict.bin`` + ``compression_state_dict.bin``), random weights."""
    from omegaconf import OmegaConf
    from audiocraft.models.builders import get_compression_model, get_lm_model
    from audiocraft.utils.export import _atomic_save

    lm_pkg = _reference_package("state_dict.bin", "musicgen-stereo-small" if STEREO else "musicgen-small")
    cfg = OmegaConf.create(lm_pkg["xp.cfg"])  # the stereo one: channels 2, interleaved codebooks, delays 0,0,1,1,..
    cfg.transformer_lm.dim, cfg.transformer_lm.num_heads, cfg.transformer_lm.num_layers = DIM, HEADS, LAYERS
    cfg.transformer_lm.n_q, cfg.transformer_lm.card = N_Q, CARD
    cfg.device, cfg.dtype = "cpu", "float32"
    torch.manual_seed(2)
    lm = get_lm_model(cfg)
    state = {k: v.detach().contiguous() for k, v in lm.state_dict().items()}
    _atomic_save({"best_state": state, "xp.cfg": OmegaConf.to_yaml(cfg), "version": "1.3.0", "exported": True},
                 folder / "state_dict.bin")
    del lm, state

    comp_pkg = _reference_package("compression_state_dict.bin")
    ccfg = OmegaConf.create(comp_pkg["xp.cfg"])
    for key, value in SEANET.items():
        ccfg.seanet[key] = value
    ccfg.rvq.n_q, ccfg.rvq.bins = N_Q // (2 if STEREO else 1), CARD
    ccfg.device = "cpu"
    torch.manual_seed(3)
    comp = get_compression_model(ccfg)
    state = {k: v.detach().contiguous() for k, v in comp.state_dict().items()}
    _atomic_save({"best_state": state, "xp.cfg": OmegaConf.to_yaml(ccfg), "version": "1.3.0", "exported": True},
                 folder / "compression_state_dict.bin")


def _write_transformers(folder: Path) -> None:
    from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, T5Config)
    text = T5Config(**T5_SIZES, feed_forward_proj="relu")
    # 2.2 kbps: 4 codebooks (per channel when stereo: the mono EnCodec runs once per channel)
    audio = EncodecConfig(target_bandwidths=[2.2], sampling_rate=SAMPLE_RATE, audio_channels=1, normalize=False,
                          chunk_length_s=None, overlap=None, hidden_size=SEANET["dimension"],
                          num_filters=SEANET["n_filters"], num_residual_layers=1,
                          upsampling_ratios=SEANET["ratios"], norm_type="weight_norm", kernel_size=7,
                          last_kernel_size=7, residual_kernel_size=3, dilation_growth_rate=2, use_causal_conv=False,
                          pad_mode="constant", compress=2, num_lstm_layers=SEANET["lstm"], trim_right_ratio=1.0,
                          codebook_size=CARD, codebook_dim=SEANET["dimension"], use_conv_shortcut=False)
    decoder = MusicgenDecoderConfig(vocab_size=CARD, hidden_size=DIM, num_hidden_layers=LAYERS,
                                    num_attention_heads=HEADS, ffn_dim=FFN, num_codebooks=N_Q,
                                    activation_function="gelu", dropout=0.0, audio_channels=2 if STEREO else 1)
    # sub-configs as dicts: the form transformers 4.x and 5.x (which removed from_sub_models_config) both accept
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    torch.manual_seed(4)
    model = MusicgenForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = CARD
    model.generation_config.decoder_start_token_id = CARD
    model.save_pretrained(folder)


def write_fixtures(root: Path) -> None:
    """``root/hf_cache`` (T5), ``root/ours``, ``root/transformers`` (``*_stereo`` with ``--stereo``, ``*_medium``
    with ``--size medium``)."""
    os.environ["HF_HUB_CACHE"] = str(root / "hf_cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    if not (root / "hf_cache").exists():
        _write_t5_cache(root / "hf_cache")
    _folder(root, "ours").mkdir(parents=True, exist_ok=True)
    _write_ours(_folder(root, "ours"))
    _write_transformers(_folder(root, "transformers"))


def prepare_fixtures(folder: tp.Optional[Path]) -> tp.Tuple[Path, tp.Optional[tempfile.TemporaryDirectory]]:
    """The model folders in ``folder`` (written there when missing), or in a temporary folder when None (returned
    too, to clean up). Points ``HF_HUB_CACHE`` at its T5 cache, offline."""
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="musicgen-bench-")
        folder = Path(tmp.name)
    if not _folder(folder, "transformers").exists():
        print(f"writing random-weight models to {folder} ...", flush=True)
        write_fixtures(folder)
    os.environ["HF_HUB_CACHE"] = str(folder / "hf_cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    return folder, tmp


# ---------------------------------------------------------------------------------------------- worker side
def _peak_rss_gb() -> float:
    """Peak resident set size of this process (VmHWM), GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        pass


class _Timer:
    """Wall time of the calls of a function, or between a module's forward pre-hook and hook."""

    def __init__(self) -> None:
        self.spans: tp.List[float] = []
        self.stamps: tp.List[float] = []
        self._start = 0.0

    def wrap(self, fn: tp.Callable[..., tp.Any]) -> tp.Callable[..., tp.Any]:
        def timed(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.spans.append(time.perf_counter() - start)
            return out
        return timed

    def hook(self, module: torch.nn.Module) -> None:
        module.register_forward_pre_hook(lambda *_: setattr(self, "_start", time.perf_counter()))
        module.register_forward_hook(lambda *_: self._stop())

    def _stop(self) -> None:
        now = time.perf_counter()
        self.spans.append(now - self._start)
        self.stamps.append(now)

    def stamp(self, *_: tp.Any) -> None:
        self.stamps.append(time.perf_counter())

    def clear(self) -> None:
        self.spans.clear()
        self.stamps.clear()


def _step_ms(stamps: tp.List[float]) -> float:
    """Median interval between consecutive decoding steps (the first step, with the prefill, excluded)."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return 1000 * statistics.median(gaps) if gaps else float("nan")


class _Ours:
    def __init__(self, folder: Path, precision: str) -> None:
        import inspect
        import transformers  # noqa: F401  (the top-level package, lazy, as the transformers worker)
        options: tp.Dict[str, tp.Any] = {"fp32": {}, "bf16": {"dtype": torch.bfloat16},
                                         "int8": {"quantize": "int8"}}[precision]
        start = time.perf_counter()  # load time: importing the model code (with T5's), then loading
        from audiocraft.models import MusicGen
        from audiocraft.backends.cpu.formats import prepare_lm_for_inference
        from audiocraft.backends.cpu.formats import weight_format
        if options and set(options) <= set(inspect.signature(MusicGen.get_pretrained).parameters):
            self.model = MusicGen.get_pretrained(str(folder), device="cpu", **options)
        else:
            self.model = MusicGen.get_pretrained(str(folder), device="cpu")
        if getattr(self.model.lm.linears[0], "packed_kind", None) != weight_format(**options):
            prepare_lm_for_inference(self.model.lm, **options)  # get_pretrained did not prepare the LM itself
        self.load_s = time.perf_counter() - start
        self.text, self.steps, self.audio = _Timer(), _Timer(), _Timer()
        self.text.hook(self.model.lm.condition_provider)
        self.model.compression_model.decode = self.audio.wrap(self.model.compression_model.decode)
        self.model.set_custom_progress_callback(self.steps.stamp)

    def run(self, batch: int, frames: int, seed: int) -> tp.Dict[str, float]:
        for timer in (self.text, self.steps, self.audio):
            timer.clear()
        self.model.set_generation_params(duration=frames / FRAME_RATE, use_sampling=True, top_k=250, cfg_coef=3.0)
        torch.manual_seed(seed)
        start = time.perf_counter()
        self.model.generate([PROMPT] * batch)
        total = time.perf_counter() - start
        return {"text_ms": 1000 * sum(self.text.spans), "step_ms": _step_ms(self.steps.stamps),
                "steps": len(self.steps.stamps), "audio_ms": 1000 * sum(self.audio.spans), "total_s": total}

    def greedy_and_logits(self, frames: int) -> tp.Dict[str, torch.Tensor]:
        self.model.set_generation_params(duration=frames / FRAME_RATE, use_sampling=False, cfg_coef=3.0)
        _, tokens = self.model.generate([PROMPT], return_tokens=True)
        return {"tokens": tokens}

    def teacher_forced(self, tokens: torch.Tensor) -> torch.Tensor:
        from audiocraft.modules.conditioners import ConditioningAttributes
        with torch.inference_mode():
            out = self.model.lm.compute_predictions(tokens, [ConditioningAttributes(text={"description": PROMPT})])
        return out.logits.float()  # [1, K, T, card], NaN where invalid


class _Transformers:
    def __init__(self, folder: Path, precision: str) -> None:
        import transformers  # noqa: F401  (the top-level package, lazy)
        start = time.perf_counter()  # load time: importing the model code, then loading
        from transformers import MusicgenForConditionalGeneration, T5Tokenizer
        self.model = MusicgenForConditionalGeneration.from_pretrained(str(folder)).eval()
        self.tokenizer = T5Tokenizer.from_pretrained("t5-base")  # ours loads its tokenizer in get_pretrained too
        self.load_s = time.perf_counter() - start
        if precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
        elif precision == "int8":
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.text, self.steps, self.audio = _Timer(), _Timer(), _Timer()
        self.text.hook(self.model.text_encoder)
        self.steps.hook(self.model.decoder)
        self.model.audio_encoder.decode = self.audio.wrap(self.model.audio_encoder.decode)
        self.fed: tp.List[torch.Tensor] = []

    def _inputs(self, batch: int) -> tp.Dict[str, torch.Tensor]:
        return dict(self.tokenizer([PROMPT] * batch, return_tensors="pt", padding=True))

    def run(self, batch: int, frames: int, seed: int) -> tp.Dict[str, float]:
        for timer in (self.text, self.steps, self.audio):
            timer.clear()
        torch.manual_seed(seed)
        start = time.perf_counter()
        with torch.inference_mode():
            self.model.generate(**self._inputs(batch), do_sample=True, top_k=250, guidance_scale=3.0,
                                max_new_tokens=frames + DELAY_STEPS)
        total = time.perf_counter() - start
        return {"text_ms": 1000 * sum(self.text.spans), "step_ms": _step_ms(self.steps.stamps),
                "steps": len(self.steps.stamps), "audio_ms": 1000 * sum(self.audio.spans), "total_s": total}

    def greedy_and_logits(self, frames: int) -> tp.Dict[str, torch.Tensor]:
        """The decoder inputs of a greedy generation (the delayed code columns it fed itself), [K, steps]."""
        fed: tp.List[torch.Tensor] = []
        handle = self.model.decoder.register_forward_pre_hook(
            lambda module, args, kwargs: fed.append(kwargs["input_ids"][:N_Q, -1:].clone()), with_kwargs=True)
        try:
            with torch.inference_mode():
                self.model.generate(**self._inputs(1), do_sample=False, guidance_scale=3.0,
                                    max_new_tokens=frames + DELAY_STEPS)
        finally:
            handle.remove()
        return {"tokens": torch.cat(fed, dim=1)}

    def teacher_forced(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(**self._inputs(1), decoder_input_ids=tokens)
        return out.logits.float()[None]  # [1, K, T, card]


def worker(impl: str, precision: str, fixtures: Path, threads: int) -> None:
    """Serve JSON commands on stdin: run / reference / accuracy / quit; answer one JSON line each."""
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # keep stray prints off the answers
    os.environ["HF_HUB_CACHE"] = str(fixtures / "hf_cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(threads)
    model: tp.Union[_Ours, _Transformers]
    model = (_Ours(_folder(fixtures, "ours"), precision) if impl == "ours" else
             _Transformers(_folder(fixtures, "transformers"), precision))

    def answer(obj: tp.Dict[str, tp.Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    answer({"load_s": model.load_s, "load_peak_rss_gb": _peak_rss_gb()})
    _reset_peak_rss()
    reference = fixtures / f"reference_{impl}.pt"
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "run":
            answer(model.run(cmd["batch"], cmd["frames"], cmd["seed"]))
        elif cmd["op"] == "reference":  # fp32: greedy tokens and teacher-forced logits, for the other precisions
            tokens = model.greedy_and_logits(cmd["frames"])["tokens"]
            torch.save({"tokens": tokens, "logits": model.teacher_forced(tokens)}, reference)
            answer({})
        elif cmd["op"] == "accuracy":
            ref = torch.load(reference)
            tokens = model.greedy_and_logits(cmd["frames"])["tokens"]
            logits = model.teacher_forced(ref["tokens"])
            valid = ~ref["logits"].isnan()
            error = (logits[valid] - ref["logits"][valid]).abs()
            argmax_ok = (logits.argmax(-1) == ref["logits"].argmax(-1))[valid[..., 0]]
            answer({"greedy_agreement": float((tokens == ref["tokens"]).float().mean()),
                    "teacher_forced_argmax_agreement": float(argmax_ok.float().mean()),
                    "max_logit_error": float(error.max()), "logit_std": float(ref["logits"][valid].std())})
        elif cmd["op"] == "quit":
            answer({"peak_rss_gb": _peak_rss_gb()})
            return


# ---------------------------------------------------------------------------------------------- parent side
class Worker:
    def __init__(self, impl: str, precision: str, fixtures: Path, threads: int) -> None:
        self.name = f"{impl} {precision}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", impl, "--precision", precision,
                                      "--fixtures", str(fixtures), "--threads", str(threads)]
                                     + (["--stereo"] if STEREO else []) + ["--size", SIZE],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()

    def _read(self) -> tp.Dict[str, tp.Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker '{self.name}' died (exit code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **cmd: tp.Any) -> tp.Dict[str, tp.Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> float:
        peak = float(self.ask(op="quit")["peak_rss_gb"])
        self.proc.wait()
        return peak


def measure_bandwidth(threads: int, samples: int = 7) -> tp.List[float]:
    """Read bandwidth of main memory (GB/s): ``samples`` sums over 1 GiB, with ``threads`` threads."""
    torch.set_num_threads(threads)
    data = torch.ones(256 * 1024 * 1024)
    rates = []
    for _ in range(samples):
        start = time.perf_counter()
        data.sum()
        rates.append(data.numel() * 4 / (time.perf_counter() - start) / 1e9)
    return rates


def describe_machine() -> str:
    """Date, CPU, cores, SIMD level, torch / transformers versions and the load average."""
    import platform
    import transformers
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu}, {os.cpu_count()} cores, "
            f"{torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}, transformers "
            f"{transformers.__version__}; load average {load:.2f}")


def weight_bytes_per_step(precision: str) -> float:
    """Bytes of LM weights one decoding step reads: per layer the self-attention in/out projections, the
    cross-attention query/out projections (its keys/values are projected once), the FFN; then the heads."""
    per_layer = 3 * DIM * DIM + DIM * DIM + DIM * DIM + DIM * DIM + 2 * DIM * FFN
    params = LAYERS * per_layer + N_Q * CARD * DIM
    return params * {"fp32": 4.0, "bf16": 2.0, "int8": 1.0}[precision]


def _median(rows: tp.List[tp.Dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 3 reps, batch 1 (a smoke run)")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio to generate (default 5)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per row (median; at least 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--fixtures", type=Path, default=None, help="reuse / keep the model folders here")
    parser.add_argument("--load-reps", type=int, default=3, help="fresh processes timing the fp32 load, per impl")
    parser.add_argument("--worker", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--stereo", action="store_true",
                        help="stereo-small sizes (8 interleaved codebooks) beside transformers' stereo MusicGen")
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="decoder sizes of musicgen-small (default) or musicgen-medium (1.5B)")
    args = parser.parse_args()
    configure(args.stereo, args.size)
    if args.worker:
        worker(args.worker, args.precision, args.fixtures, args.threads)
        return
    if args.quick:
        args.seconds, args.batches = 1.0, "1"
    reps = max(3, args.reps)
    frames = int(round(args.seconds * FRAME_RATE))
    batches = [int(b) for b in args.batches.split(",")]
    precisions = args.precisions.split(",")
    fixtures, tmp = prepare_fixtures(args.fixtures)
    rates = measure_bandwidth(args.threads)
    print(describe_machine(), flush=True)
    print(f"threads {args.threads}; memory read bandwidth {statistics.median(rates):.1f} GB/s (median; best "
          f"{max(rates):.1f}); {frames} frames ({args.seconds:g} s), {reps} alternating reps, medians", flush=True)

    results: tp.Dict[tp.Tuple[str, str, int], tp.List[tp.Dict[str, float]]] = {}
    loads: tp.Dict[tp.Tuple[str, str], tp.Dict[str, float]] = {}
    accuracy: tp.Dict[tp.Tuple[str, str], tp.Dict[str, float]] = {}
    acc_frames = min(frames, 50)
    for precision in precisions:
        workers = {impl: Worker(impl, precision, fixtures, args.threads) for impl in ("ours", "transformers")}
        for impl, w in workers.items():
            if precision == "fp32":
                w.ask(op="reference", frames=acc_frames)
            else:
                accuracy[(impl, precision)] = w.ask(op="accuracy", frames=acc_frames)
        for rep in range(reps):
            order = list(workers) if rep % 2 == 0 else list(workers)[::-1]
            for batch in batches:
                for impl in order:
                    row = workers[impl].ask(op="run", batch=batch, frames=frames, seed=rep)
                    results.setdefault((impl, precision, batch), []).append(row)
                    print(f"  {impl:12s} {precision} batch {batch} rep {rep}: {row['step_ms']:.1f} ms/step, "
                          f"total {row['total_s']:.1f} s", flush=True)
            rates += measure_bandwidth(args.threads, samples=3)  # the bandwidth under the same conditions
        for impl, w in workers.items():
            loads[(impl, precision)] = {"load_s": w.ready["load_s"], "load_peak": w.ready["load_peak_rss_gb"],
                                        "peak": w.close()}
    load_times: tp.Dict[str, tp.List[float]] = {impl: [] for impl in ("ours", "transformers")}
    for (impl, precision), load in loads.items():
        if precision == "fp32":
            load_times[impl].append(load["load_s"])
    for rep in range(max(0, args.load_reps - 1) if "fp32" in precisions else 0):
        for impl in (("transformers", "ours") if rep % 2 == 0 else ("ours", "transformers")):
            w = Worker(impl, "fp32", fixtures, args.threads)  # a fresh process: import, then load
            load_times[impl].append(float(w.ready["load_s"]))
            w.close()
    if tmp is not None:
        tmp.cleanup()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.2f}")
    bandwidth = statistics.median(rates)
    print(f"memory read bandwidth over the run: median {bandwidth:.1f} GB/s of {len(rates)} samples "
          f"(min {min(rates):.1f}, best {max(rates):.1f})")
    print_table(results, loads, accuracy, bandwidth, frames, batches, precisions)
    for impl, times in load_times.items():
        if times:
            print(f"load {impl} fp32, fresh processes: median {statistics.median(times):.2f} s of "
                  f"{', '.join(f'{t:.2f}' for t in times)}")
    if all(load_times.values()):
        ours, theirs = (statistics.median(load_times[k]) for k in ("ours", "transformers"))
        print(f"load_ratio_vs_transformers (fp32, theirs / ours): {theirs / ours:.2f}")
    if "fp32" in precisions:
        best_floor = 1000 * weight_bytes_per_step("fp32") / (max(rates) * 1e9)
        print("ours fp32 ms/step / floor at the best bandwidth sample: " + ", ".join(
            f"{_median(results[('ours', 'fp32', b)], 'step_ms') / best_floor:.2f} (batch {b})" for b in batches))


def print_table(results: tp.Dict[tp.Tuple[str, str, int], tp.List[tp.Dict[str, float]]],
                loads: tp.Dict[tp.Tuple[str, str], tp.Dict[str, float]],
                accuracy: tp.Dict[tp.Tuple[str, str], tp.Dict[str, float]], bandwidth: float, frames: int,
                batches: tp.List[int], precisions: tp.List[str]) -> None:
    seconds = frames / FRAME_RATE
    print()
    print("| impl | precision | batch | text enc ms | ms/step | floor ms/step | EnCodec ms | total s | RTF "
          "| peak RSS GB (load / generate) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for precision in precisions:
        floor = 1000 * weight_bytes_per_step(precision) / (bandwidth * 1e9)
        for batch in batches:
            for impl in ("ours", "transformers"):
                rows = results[(impl, precision, batch)]
                total = _median(rows, "total_s")
                load = loads[(impl, precision)]
                label = impl + (" stereo" if STEREO else "") + ("" if SIZE == "small" else f" {SIZE}")
                print(f"| {label} | {precision} | {batch} | {_median(rows, 'text_ms'):.0f} | "
                      f"{_median(rows, 'step_ms'):.1f} | {floor:.1f} | {_median(rows, 'audio_ms'):.0f} | "
                      f"{total:.1f} | {total / seconds:.2f} | {load['load_peak']:.2f} / {load['peak']:.2f} |")
    print()
    for precision in precisions:
        for impl in ("ours", "transformers"):
            load = loads[(impl, precision)]
            how = "MusicGen.get_pretrained" if impl == "ours" else "from_pretrained"
            print(f"load {impl} {precision}: {load['load_s']:.2f} s (fresh process: import of the model code, then "
                  f"{how} from a local folder)")
    for (impl, precision), acc in accuracy.items():
        print(f"accuracy {impl} {precision} vs its fp32: greedy tokens agree {100 * acc['greedy_agreement']:.1f} %, "
              f"teacher-forced argmax {100 * acc['teacher_forced_argmax_agreement']:.1f} %, max |logit error| "
              f"{acc['max_logit_error']:.3g} (logit std {acc['logit_std']:.3g})")
    for precision in precisions:
        ratios = []
        for batch in batches:
            ours = _median(results[("ours", precision, batch)], "step_ms")
            theirs = _median(results[("transformers", precision, batch)], "step_ms")
            ratios.append(f"{theirs / ours:.2f} (batch {batch})")
        line = ", ".join(ratios)
        print(f"speedup_vs_transformers[{precision}]: {line}")
    if "fp32" in precisions:
        floor = 1000 * weight_bytes_per_step("fp32") / (bandwidth * 1e9)
        print("ours fp32 ms/step / bandwidth floor (median bandwidth): " + ", ".join(
            f"{_median(results[('ours', 'fp32', b)], 'step_ms') / floor:.2f} (batch {b})" for b in batches))
        ratios = [f"{_median(results[('transformers', 'fp32', b)], 'step_ms') / _median(results[('ours', 'fp32', b)], 'step_ms'):.2f} (batch {b})"  # noqa: E501
                  for b in batches]
        print(f"speedup_vs_transformers: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
