"""The training configuration: one dataclass, checked up front so mistakes fail before any model loads."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import math
import typing as tp

from .lora import DEFAULT_LORA_TARGETS
from .schedules import SCHEDULES


class TrainError(Exception):
    """A problem with the user's training setup (bad data, missing checkpoint...): reported in one line."""


PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Fields a resumed run must share with the checkpoint it resumes.
RESUME_KEYS = ("base", "lora", "lora_rank", "lora_alpha", "lora_targets", "batch_size", "grad_accum",
               "segment_duration", "seed", "ema", "data")


@dataclass
class TrainConfig:
    """Fine-tuning a MusicGen language model on a folder of music (the compression model stays frozen).

    Data:
        data: a folder of audio files (with ``.txt`` / ``.json`` sidecars) or a JSONL manifest.
        segment_duration: seconds per training example (None: the base model's training segment, 30 s).
        samples_per_epoch: examples per epoch (None: the number of files, at least one batch).
        min_segment_ratio: in files longer than a segment, the fraction of a segment that must be real audio.
        merge_text_p, drop_desc_p, drop_other_p: MusicGen's description augmentation from JSON metadata.
        mask_padding: leave the tokens of zero padding (files shorter than a segment) out of the loss.
        num_workers: data-loader processes per rank.
        codes_cache: folder caching EnCodec tokens per segment (None: encode every time).
    Model:
        base: the MusicGen to start from (hub id or local folder).
        lora, lora_rank, lora_alpha, lora_targets: train LoRA adapters only (merged at export).
        condition_dropout: keep the base model's classifier-free-guidance, attribute and word dropout
            (turn off for exact comparisons).
        cfg_dropout: override the classifier-free-guidance dropout probability (None: the base model's).
    Optimisation:
        steps, batch_size (global: all ranks and accumulation steps together), grad_accum, lr (None: 1e-5,
        or 1e-4 with LoRA), weight_decay, betas, eps, max_norm (gradient clipping; 0: off), schedule,
        warmup (None: 5 % of steps), lr_min_ratio, ema / ema_decay / ema_every, precision ('auto': bf16 on
        GPUs that support it, else fp16 with a GradScaler; fp32 on CPU).
    Run:
        out: output folder (checkpoint, logs, exported model). resume: continue from ``out/checkpoint.th``.
        fsdp: shard with FSDP instead of DDP. device: 'cpu' / 'cuda' (None: cuda if available).
        save_every, log_every (steps), seed, progress (tqdm bar on rank 0), export (write the model folder).
    """
    data: str
    out: str
    base: str = "facebook/musicgen-small"
    segment_duration: tp.Optional[float] = None
    samples_per_epoch: tp.Optional[int] = None
    min_segment_ratio: float = 1.0
    merge_text_p: float = 0.0
    drop_desc_p: float = 0.0
    drop_other_p: float = 0.0
    mask_padding: bool = True
    num_workers: int = 2
    codes_cache: tp.Optional[str] = None
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tp.Tuple[str, ...] = DEFAULT_LORA_TARGETS
    condition_dropout: bool = True
    cfg_dropout: tp.Optional[float] = None
    steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    lr: tp.Optional[float] = None
    weight_decay: float = 0.1
    betas: tp.Tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    max_norm: float = 1.0
    schedule: str = "cosine"
    warmup: tp.Optional[int] = None
    lr_min_ratio: float = 0.0
    ema: bool = False
    ema_decay: float = 0.99
    ema_every: int = 1
    precision: str = "auto"
    resume: bool = False
    fsdp: bool = False
    device: tp.Optional[str] = None
    save_every: int = 500
    log_every: int = 10
    seed: int = 42
    progress: bool = True
    export: bool = True

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 1e-4 if self.lora else 1e-5

    @property
    def warmup_steps(self) -> int:
        return self.steps // 20 if self.warmup is None else self.warmup

    def to_dict(self) -> tp.Dict[str, tp.Any]:
        out = asdict(self)
        out["lora_targets"] = list(self.lora_targets)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, values: tp.Mapping[str, tp.Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown training options {unknown}.")
        kwargs = dict(values)
        for key in ("lora_targets", "betas"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def validate(self, world_size: int = 1) -> "TrainConfig":
        """Raise ValueError / TypeError naming the first bad option; returns self."""
        def _int(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")

        def _num(name: str, low: float, high: float = math.inf, strict_low: bool = False,
                 optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
                  and (value > low if strict_low else value >= low) and value <= high)
            if not ok:
                bound = f"> {low}" if strict_low else f">= {low}"
                upper = "" if high == math.inf else f" and <= {high}"
                raise ValueError(f"{name} must be a number {bound}{upper}, got {value!r}.")

        for name in ("data", "out", "base"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty path or name, got {getattr(self, name)!r}.")
        for name in ("steps", "batch_size", "grad_accum", "lora_rank", "ema_every", "save_every", "log_every"):
            _int(name, 1)
        _int("num_workers", 0)
        _int("seed", 0)
        if self.samples_per_epoch is not None:
            _int("samples_per_epoch", 1)
        if self.warmup is not None:
            _int("warmup", 0)
            if self.warmup > self.steps:
                raise ValueError(f"warmup must be <= steps ({self.steps}), got {self.warmup}.")
        _num("segment_duration", 0.0, strict_low=True, optional=True)
        _num("lr", 0.0, strict_low=True, optional=True)
        _num("cfg_dropout", 0.0, 1.0, optional=True)
        _num("lora_alpha", 0.0, strict_low=True)
        _num("weight_decay", 0.0)
        _num("eps", 0.0, strict_low=True)
        _num("max_norm", 0.0)
        _num("lr_min_ratio", 0.0, 1.0)
        _num("ema_decay", 0.0, 0.999999)
        for name in ("min_segment_ratio", "merge_text_p", "drop_desc_p", "drop_other_p"):
            _num(name, 0.0, 1.0)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}.")
        if self.device not in (None, "cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}.")
        if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
            raise ValueError(f"lora_targets must be non-empty weight names, got {self.lora_targets!r}.")
        per_step = world_size * self.grad_accum
        if self.batch_size % per_step != 0:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by the number of processes "
                             f"({world_size}) times grad_accum ({self.grad_accum}).")
        return self
