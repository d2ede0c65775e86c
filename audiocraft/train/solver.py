"""Fine-tuning MusicGen's language model: the training loop.

One optimizer step::

    audio [B, C, T] --EnCodec (frozen, no grad)--> codes [B, K, F]
    infos --to_condition_attributes--> CFG dropout, attribute dropout --tokenize--> conditions
    LM(codes, conditions) -> logits [B, K, F, card], mask [B, K, F]
    loss = mean over codebooks of the cross-entropy on valid positions (delay pattern & padding)

Distributed with torch.distributed (DDP, or FSDP with ``fsdp``); rank 0 logs, checkpoints and exports.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import hashlib
import json
import logging
from pathlib import Path
import random
import time
import typing as tp

import numpy as np
import torch
from torch import nn

from ..data.music_dataset import MusicInfo
from ..models.lm import LMModel
from ..modules.conditioners import ConditioningAttributes
from . import checkpoint as ckpt
from .batch import condition_attributes, encode_segments, padding_mask
from .codes_cache import CodesCache
from .config import RESUME_KEYS, TrainConfig, TrainError
from .data import build_dataset, discover_audio, epoch_loader
from .distributed import DistEnv, all_gather_object, all_reduce_mean, barrier, full_tensor, init_distributed, like
from .ema import ModuleEMA
from .lora import apply_lora, merge_parametrized_state
from .loss import compute_cross_entropy
from .schedules import LRSchedule, build_lr_scheduler

logger = logging.getLogger(__name__)
StepCallback = tp.Callable[[int, float], None]
LOG_NAME = "train_log.jsonl"
SUMMARY_NAME = "train_summary.json"


@dataclass
class TrainResult:
    """What a run did: the optimizer steps reached, the loss of each step of this run, where things went."""
    step: int
    losses: tp.List[float] = field(default_factory=list)
    out_dir: str = ""
    exported: tp.Optional[str] = None
    skipped_files: int = 0
    failed_reads: int = 0
    param_digests: tp.List[str] = field(default_factory=list)


class _TrainModule(nn.Module):
    """The LM as one module whose forward is a training forward (what DDP / FSDP wrap)."""

    def __init__(self, lm: LMModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, codes: torch.Tensor, tokenized: tp.Dict[str, tp.Any]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """codes ``[B, K, T]`` -> logits ``[B, K, T, card]``, mask ``[B, K, T]``."""
        condition_tensors = self.lm.condition_provider(tokenized)
        out = self.lm.compute_predictions(codes, [], condition_tensors)
        return out.logits, out.mask


def _autocast_dtype(precision: str, device: torch.device) -> tp.Optional[torch.dtype]:
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise TrainError("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU.")
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _params_digest(named: tp.Iterable[tp.Tuple[str, torch.Tensor]]) -> str:
    """SHA-256 of the parameters' bytes (full tensors, in name order): equal digests = identical parameters."""
    digest = hashlib.sha256()
    for name, p in sorted(named, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(full_tensor(p.detach()).float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class MusicGenTrainer:
    """Fine-tunes ``cfg.base`` on ``cfg.data``; see :class:`TrainConfig`. Call :meth:`train`."""

    def __init__(self, cfg: TrainConfig, env: tp.Optional[DistEnv] = None) -> None:
        self.env = env or init_distributed(cfg.device)
        self.cfg = cfg.validate(self.env.world_size)
        self.out_dir = Path(cfg.out)
        self.checkpoint_path = self.out_dir / ckpt.CHECKPOINT_NAME
        self.micro_batch = cfg.batch_size // (self.env.world_size * cfg.grad_accum)
        self.autocast_dtype = _autocast_dtype(cfg.precision, self.env.device)
        self.step = 0
        self.epoch = 0
        self.epoch_samples = 0
        self._log_fh: tp.Optional[tp.TextIO] = None
        self._setup()

    # ---- setup ----------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, env = self.cfg, self.env
        resume_state = self._resume_state()
        meta, self.skipped_files = discover_audio(cfg.data, self.out_dir, env)  # fail fast, before loading models
        self._seed(cfg.seed + env.rank)
        from ..models.builders import get_wrapped_compression_model
        from ..models.genmodel import check_compatible
        from ..models.loaders import load_compression_model, load_lm_model
        try:
            lm = tp.cast(LMModel, load_lm_model(cfg.base, device=env.device))
            # A stereo base: the mono codec encodes each channel, codes interleaved as the LM expects.
            self.compression_model = get_wrapped_compression_model(
                load_compression_model(cfg.base, device=env.device), tp.cast(tp.Any, lm).cfg)
            check_compatible(self.compression_model, lm)
        except (OSError, ValueError) as err:
            raise TrainError(f"Cannot load the base model {cfg.base!r}: {err}") from err
        self.compression_model.eval().requires_grad_(False)
        lm.float()  # fp32 master weights (the GPU loader gives fp16); autocast handles mixed precision
        self.lm = lm
        self.base_segment = float(tp.cast(tp.Any, lm).cfg.dataset.segment_duration)
        self.segment_duration = cfg.segment_duration or self.base_segment
        self._configure_condition_dropout()
        torch.manual_seed(cfg.seed)  # identical LoRA init on every rank
        if cfg.lora:
            self.lora_names = apply_lora(lm, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)
        self.trainable = {name: p for name, p in lm.named_parameters() if p.requires_grad}
        if not self.trainable:
            raise TrainError("The model has no trainable parameter.")
        self._seed(cfg.seed + env.rank)
        self.model = self._wrap(_TrainModule(lm))
        # Parameters as the optimizer sees them (sharded under FSDP), in `self.trainable`'s order.
        wrapped = dict(self.model.named_parameters())
        self.opt_params = {name: wrapped[self._wrapped_name(name)] for name in self.trainable}
        self.optimizer = torch.optim.AdamW(list(self.opt_params.values()), lr=cfg.learning_rate,
                                           betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.schedule, cfg.steps, cfg.warmup_steps,
                                            cfg.lr_min_ratio)
        self.scaler = (torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None)
        self.ema = ModuleEMA(self.opt_params, cfg.ema_decay, cfg.ema_every) if cfg.ema else None
        self.codes_cache = (CodesCache(cfg.codes_cache, f"{cfg.base}:{self.compression_model.sample_rate}")
                            if cfg.codes_cache else None)
        self.dataset = build_dataset(meta, int(self.compression_model.sample_rate),
                                     int(self.compression_model.channels), self.segment_duration, cfg.batch_size,
                                     cfg.samples_per_epoch, cfg.min_segment_ratio, cfg.seed, cfg.merge_text_p,
                                     cfg.drop_desc_p, cfg.drop_other_p)
        if resume_state is not None:
            self._load_state(resume_state)

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2 ** 32)
        torch.manual_seed(seed)

    def _resume_state(self) -> tp.Optional[tp.Dict[str, tp.Any]]:
        exists = self.checkpoint_path.is_file()
        if exists and not self.cfg.resume:
            raise TrainError(f"{self.checkpoint_path} exists: pass --resume to continue it, or choose another --out.")
        if not self.cfg.resume:
            return None
        if not exists:
            if self.env.is_main:
                logger.info("No checkpoint in %s: starting from scratch.", self.out_dir)
            return None
        from ..utils.checkpoint_io import CheckpointError
        try:
            state = ckpt.load_checkpoint(self.checkpoint_path)
        except CheckpointError as err:
            raise TrainError(str(err)) from err
        saved = state.get("config", {})
        current = self.cfg.to_dict()
        different = [key for key in RESUME_KEYS if key in saved and saved[key] != current[key]]
        if different:
            raise TrainError(f"Cannot resume {self.checkpoint_path}: options {different} differ from the "
                             f"checkpoint's ({', '.join(f'{k}={saved[k]!r}' for k in different)}).")
        return state

    def _configure_condition_dropout(self) -> None:
        cfg, lm = self.cfg, tp.cast(tp.Any, self.lm)
        if cfg.cfg_dropout is not None:
            lm.cfg_dropout.p = float(cfg.cfg_dropout)
        if not cfg.condition_dropout:
            lm.cfg_dropout.p = 0.0
            lm.att_dropout.p = {}
            for conditioner in lm.condition_provider.conditioners.values():
                if hasattr(conditioner, "word_dropout"):
                    conditioner.word_dropout = 0.0
        # The batch-level dropout decisions use the same generator seed on every rank, so a distributed
        # batch is dropped as a whole exactly as the same batch in one process.
        for generator in ckpt.module_generators(lm).values():
            generator.manual_seed(self.cfg.seed)

    def _wrap(self, module: _TrainModule) -> nn.Module:
        env = self.env
        if self.cfg.fsdp:
            try:
                from torch.distributed.fsdp import fully_shard
            except ImportError:
                raise TrainError(f"--fsdp needs torch >= 2.6 (fully_shard); this is torch {torch.__version__}.")
            if not env.is_distributed:
                logger.warning("--fsdp without several processes: training unsharded.")
                return module
            for layer in tp.cast(tp.Any, module.lm.transformer).layers:
                fully_shard(layer)
            fully_shard(module)
            return module
        if env.is_distributed:
            from torch.nn.parallel import DistributedDataParallel
            device_ids = [env.local_rank] if env.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
        return module

    def _wrapped_name(self, lm_name: str) -> str:
        prefix = "module." if hasattr(self.model, "module") else ""
        return f"{prefix}lm.{lm_name}"

    # ---- state ----------------------------------------------------------------------------------------
    def _full_trainable(self) -> tp.Dict[str, torch.Tensor]:
        """The trained parameters as full CPU tensors (collective under FSDP: call on every rank)."""
        return {name: full_tensor(p.detach()).cpu().clone() for name, p in self.opt_params.items()}

    def _optimizer_state(self) -> tp.Dict[str, tp.Any]:
        """The full optimizer state keyed by parameter name (same format one process, DDP or FSDP)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.model, self.optimizer, options=options)

    def _load_optimizer_state(self, state: tp.Dict[str, tp.Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(full_state_dict=True))

    def _state(self) -> tp.Dict[str, tp.Any]:
        """The checkpoint (collectives inside: call on every rank; meaningful on rank 0)."""
        ema_state = None
        if self.ema is not None:
            ema_state = {"count": self.ema.count,
                         "shadow": {n: full_tensor(t).cpu().clone() for n, t in self.ema.shadow.items()}}
        generators = {name: g.get_state() for name, g in ckpt.module_generators(self.lm).items()}
        return {
            "model": self._full_trainable(),
            "optimizer": self._optimizer_state(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "ema": ema_state,
            "step": self.step,
            "epoch": self.epoch,
            "epoch_samples": self.epoch_samples,
            "world_size": self.env.world_size,
            "rng": all_gather_object(ckpt.get_rng_state()),
            "generators": generators,
            "config": self.cfg.to_dict(),
        }

    @torch.no_grad()
    def _load_state(self, state: tp.Dict[str, tp.Any]) -> None:
        model_state = state["model"]
        if set(model_state) != set(self.opt_params):
            missing = sorted(set(self.opt_params) ^ set(model_state))
            raise TrainError(f"The checkpoint's trained parameters do not match the model: {missing[:5]}.")
        for name, p in self.opt_params.items():
            p.copy_(like(model_state[name], p))
        self._load_optimizer_state(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # The schedule follows the CURRENT options (a resumed run may extend --steps), not the saved ones.
        self.scheduler.lr_lambdas[0] = LRSchedule(self.cfg.schedule, self.cfg.steps, self.cfg.warmup_steps,
                                                  self.cfg.lr_min_ratio)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.count = float(state["ema"]["count"])
            for name, value in state["ema"]["shadow"].items():
                self.ema.shadow[name].copy_(like(value, self.ema.shadow[name]))
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.epoch_samples = int(state["epoch_samples"])
        for name, generator in ckpt.module_generators(self.lm).items():
            if name in state.get("generators", {}):
                generator.set_state(state["generators"][name])
        rng = state.get("rng", [])
        if state.get("world_size") == self.env.world_size and len(rng) == self.env.world_size:
            ckpt.set_rng_state(rng[self.env.rank])
        elif self.env.is_main:
            logger.warning("Resuming with %d processes instead of %d: random states are reseeded.",
                           self.env.world_size, state.get("world_size"))
        if self.env.is_main:
            logger.info("Resumed from %s at step %d.", self.checkpoint_path, self.step)

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0) after gathering it from every rank."""
        state = self._state()
        if self.env.is_main:
            ckpt.save_checkpoint(state, self.checkpoint_path)
        barrier()

    # ---- one step -------------------------------------------------------------------------------------
    def _attributes(self, wav: torch.Tensor, infos: tp.Sequence[MusicInfo]) -> tp.List[ConditioningAttributes]:
        """The batch's conditions, after classifier-free-guidance and attribute dropout (training only)."""
        provider = tp.cast(tp.Any, self.lm.condition_provider)
        out = condition_attributes(wav, infos, provider.text_conditions, provider.wav_conditions)
        if self.cfg.condition_dropout and self.lm.training:
            out = self.lm.att_dropout(self.lm.cfg_dropout(out))
        return out

    def _micro_step(self, wav: torch.Tensor, infos: tp.Sequence[MusicInfo]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Forward of one micro-batch -> (loss, per-codebook losses [K])."""
        wav = wav.to(self.env.device, non_blocking=True)
        attributes = self._attributes(wav, infos)
        tokenized = self.lm.condition_provider.tokenize(attributes)
        try:
            codes = encode_segments(self.compression_model, wav, infos, self.codes_cache)
        except ValueError as err:
            raise TrainError(str(err)) from err
        padding = (padding_mask(codes, infos, float(self.compression_model.frame_rate)) if self.cfg.mask_padding
                   else torch.ones_like(codes, dtype=torch.bool))
        autocast = (torch.autocast(self.env.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            logits, mask = self.model(codes, tokenized)
        loss, per_codebook = compute_cross_entropy(logits.float(), codes, mask & padding)
        return loss, torch.stack(per_codebook)

    def _sync_context(self, sync: bool) -> tp.ContextManager[tp.Any]:
        """Gradient all-reduce only on the last micro-batch of a step."""
        model: tp.Any = self.model
        if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
            model.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        if sync or not hasattr(model, "no_sync"):
            return contextlib.nullcontext()
        return model.no_sync()

    def run_step(self, micro_batches: tp.Sequence[tp.Tuple[torch.Tensor, tp.Sequence[MusicInfo]]]
                 ) -> tp.Dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches -> metrics (averaged over ranks)."""
        self.optimizer.zero_grad(set_to_none=True)
        losses, per_codebook = [], []
        for i, (wav, infos) in enumerate(micro_batches):
            with self._sync_context(i == len(micro_batches) - 1):
                loss, ce_k = self._micro_step(wav, infos)
                scaled = loss / len(micro_batches)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            losses.append(loss.detach())
            per_codebook.append(ce_k)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = list(self.opt_params.values())
        max_norm = self.cfg.max_norm if self.cfg.max_norm > 0 else float("inf")
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.step(self.step)
        metrics = torch.cat([torch.stack(losses).mean()[None], torch.stack(per_codebook).mean(0),
                             grad_norm.detach().float().reshape(1).to(losses[0].device)])
        metrics = all_reduce_mean(metrics).cpu()
        out = {"loss": float(metrics[0]), "grad_norm": float(metrics[-1]),
               "lr": float(self.scheduler.get_last_lr()[0])}
        for k, value in enumerate(metrics[1:-1].tolist()):
            out[f"ce_q{k + 1}"] = value
        return out

    # ---- loop -----------------------------------------------------------------------------------------
    def _log(self, record: tp.Dict[str, tp.Any]) -> None:
        if not self.env.is_main:
            return
        if self._log_fh is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._log_fh = open(self.out_dir / LOG_NAME, "a", encoding="utf-8")
        self._log_fh.write(json.dumps(record) + "\n")
        self._log_fh.flush()

    def _batches(self) -> tp.Iterator[tp.List[tp.Any]]:
        """Groups of ``grad_accum`` micro-batches from the current data position, epoch after epoch."""
        accum = self.cfg.grad_accum
        while True:
            loader = epoch_loader(self.dataset, self.env, self.micro_batch, self.epoch, self.epoch_samples,
                                  self.cfg.seed, self.cfg.num_workers)
            group: tp.List[tp.Any] = []
            for batch in loader:
                group.append(batch)
                if len(group) == accum:
                    yield group
                    group = []
            self.epoch += 1
            self.epoch_samples = 0

    def train(self, on_step: tp.Optional[StepCallback] = None) -> TrainResult:
        """Train up to ``cfg.steps`` optimizer steps (from the checkpoint's step when resuming), then save the
        checkpoint and export the model folder. ``on_step(step, loss)`` runs after every step."""
        cfg, env = self.cfg, self.env
        result = TrainResult(step=self.step, out_dir=str(self.out_dir), skipped_files=self.skipped_files)
        self.model.train()
        self.lm.train()
        bar = None
        if cfg.progress and env.is_main and self.step < cfg.steps:
            from tqdm import tqdm
            bar = tqdm(total=cfg.steps, initial=self.step, desc="fine-tuning", unit="step", dynamic_ncols=True)
        if env.is_main:
            logger.info("Training %s on %d file(s) (%d skipped), %d process(es), batch %d, %d trainable params.",
                        cfg.base, len(self.dataset.meta), self.skipped_files, env.world_size, cfg.batch_size,
                        sum(p.numel() for p in self.trainable.values()))
        start = time.time()
        try:
            batches = self._batches()
            while self.step < cfg.steps:
                metrics = self.run_step(next(batches))
                self.epoch_samples += cfg.batch_size
                result.losses.append(metrics["loss"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}")
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._log({"step": self.step, "epoch": self.epoch, "time": round(time.time() - start, 3),
                               **metrics})
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                if on_step is not None:
                    on_step(self.step, metrics["loss"])
        finally:
            if bar is not None:
                bar.close()
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None
        result.step = self.step
        result.param_digests = all_gather_object(_params_digest(self.opt_params.items()))
        if len(set(result.param_digests)) != 1:
            raise RuntimeError(f"Ranks ended with different parameters: {result.param_digests}.")
        failed = torch.tensor([float(self.dataset.num_failed_reads)])
        result.failed_reads = int(all_reduce_mean(failed).item() * env.world_size)
        if cfg.export:
            result.exported = self.export()
        if env.is_main:
            summary = {"step": self.step, "world_size": env.world_size, "skipped_files": result.skipped_files,
                       "failed_reads": result.failed_reads, "param_digests": result.param_digests,
                       "exported": result.exported, "last_loss": result.losses[-1] if result.losses else None}
            (self.out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1))
        return result

    # ---- export ---------------------------------------------------------------------------------------
    def exported_state_dict(self) -> tp.Dict[str, torch.Tensor]:
        """The LM weights to export (EMA if enabled, LoRA merged), keyed like the base checkpoint.

        Collective under FSDP: call on every rank.
        """
        trained = self._full_trainable()
        if self.ema is not None:
            trained = {n: full_tensor(t).cpu().to(trained[n].dtype) for n, t in self.ema.shadow.items()}
        state = {key: trained[key] if key in trained else full_tensor(value).detach().cpu()
                 for key, value in self.lm.state_dict().items()}
        return merge_parametrized_state(self.lm, state)

    def export(self) -> tp.Optional[str]:
        """Write ``state_dict.bin`` + ``compression_state_dict.bin`` in ``out`` (rank 0). Returns the folder."""
        from ..models.loaders import load_lm_model_ckpt
        from ..utils.export import LM_FILENAME, export_lm
        from .export import copy_compression_model
        with torch.no_grad():
            state = self.exported_state_dict()
        folder = None
        if self.env.is_main:
            base_pkg = load_lm_model_ckpt(self.cfg.base)
            base_state = base_pkg["best_state"]
            missing = [k for k in base_state if k not in state]
            if missing:
                raise TrainError(f"Cannot export: the trained model lacks {missing[:5]} of the base checkpoint.")
            best = {k: state[k].to(base_state[k].dtype).reshape(base_state[k].shape) for k in base_state}
            export_lm(best, base_pkg["xp.cfg"], self.out_dir / LM_FILENAME)
            copy_compression_model(self.cfg.base, self.out_dir / "compression_state_dict.bin")
            folder = str(self.out_dir)
            logger.info("Exported the fine-tuned model to %s (load it with MusicGen.get_pretrained).", folder)
        barrier()
        return folder


def train(cfg: TrainConfig, on_step: tp.Optional[StepCallback] = None) -> TrainResult:
    """Fine-tune as configured (one process, or one of torchrun's); see :class:`TrainConfig`."""
    return MusicGenTrainer(cfg).train(on_step)
