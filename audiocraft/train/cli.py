"""The ``musicgen-train`` command: fine-tune MusicGen on a folder of music, export a loadable model folder.

    musicgen-train --data my_music/ --base facebook/musicgen-small --out runs/mine --steps 2000
    musicgen-train --data my_music/ --out runs/lora --lora --lr 1e-4 --batch-size 8
    torchrun --nproc_per_node 4 -m audiocraft.train --data my_music/ --out runs/big [--fsdp]
    musicgen-train --data my_music/ --out runs/mine --steps 4000 --resume

Then ``MusicGen.get_pretrained('runs/mine')``. Errors a user can cause print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import typing as tp

from .config import PRECISIONS, TrainConfig
from .schedules import SCHEDULES

PROG = "musicgen-train"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> tp.NoReturn:  # one line, status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig(data="", out="")
    p = _Parser(prog=PROG, description="Fine-tune a MusicGen language model on a folder of music "
                "(audio files with same-named .txt descriptions or .json metadata).")
    p.add_argument("--data", required=True, help="folder of audio files, or a JSONL manifest")
    p.add_argument("--out", required=True, help="output folder: checkpoint, logs and the exported model")
    p.add_argument("--base", default=defaults.base, help=f"model to start from (default: {defaults.base})")
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="global batch size, all processes together (default: %(default)s)")
    p.add_argument("--grad-accum", type=int, default=defaults.grad_accum,
                   help="micro-batches accumulated per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-5, or 1e-4 with --lora)")
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    p.add_argument("--max-norm", type=float, default=defaults.max_norm, help="gradient clipping norm (0: off)")
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning-rate schedule")
    p.add_argument("--warmup", type=int, default=None, help="warmup steps (default: 5%% of --steps)")
    p.add_argument("--segment-duration", type=float, default=None,
                   help="seconds per training example (default: the base model's, 30)")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="examples per epoch (default: #files)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters only (merged at export)")
    p.add_argument("--lora-rank", type=int, default=defaults.lora_rank, help="LoRA rank (default: %(default)s)")
    p.add_argument("--lora-alpha", type=float, default=defaults.lora_alpha, help="LoRA alpha (default: %(default)s)")
    p.add_argument("--ema", action="store_true", help="export an exponential moving average of the weights")
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay, help="EMA decay (default: %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                   help="'auto': bf16 (or fp16) autocast on GPU, fp32 on CPU")
    p.add_argument("--no-condition-dropout", action="store_true",
                   help="disable the classifier-free-guidance, attribute and word dropout of the base model")
    p.add_argument("--merge-text-p", type=float, default=0.0,
                   help="probability of appending JSON metadata (genre, bpm, ...) to the description")
    p.add_argument("--codes-cache", default=None, help="folder caching EnCodec tokens of the segments")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.th")
    p.add_argument("--fsdp", action="store_true", help="shard the model with FSDP instead of DDP (torchrun)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--num-workers", type=int, default=defaults.num_workers, help="data-loader workers per process")
    p.add_argument("--save-every", type=int, default=defaults.save_every, help="checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=defaults.log_every, help="log every N steps")
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    p.add_argument("--no-export", action="store_true", help="do not write the model folder at the end")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        data=args.data, out=args.out, base=args.base, steps=args.steps, batch_size=args.batch_size,
        grad_accum=args.grad_accum, lr=args.lr, weight_decay=args.weight_decay, max_norm=args.max_norm,
        schedule=args.schedule, warmup=args.warmup, segment_duration=args.segment_duration,
        samples_per_epoch=args.samples_per_epoch, lora=args.lora, lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha, ema=args.ema, ema_decay=args.ema_decay, precision=args.precision,
        condition_dropout=not args.no_condition_dropout, merge_text_p=args.merge_text_p,
        codes_cache=args.codes_cache, resume=args.resume, fsdp=args.fsdp, device=args.device,
        num_workers=args.num_workers, save_every=args.save_every, log_every=args.log_every, seed=args.seed,
        export=not args.no_export, progress=not args.no_progress)


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    """Entry point of ``musicgen-train`` / ``python -m audiocraft.train`` / ``torchrun -m audiocraft.train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args).validate(world_size)
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    import torch.distributed as dist

    from .config import TrainError
    from .distributed import cleanup_distributed
    from .solver import train
    owns_process_group = not (dist.is_available() and dist.is_initialized())
    try:
        result = train(cfg)
    except TrainError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if owns_process_group:  # leave a group set up by the caller alone
            cleanup_distributed()
    if rank == 0 and result.exported:
        print(f"Fine-tuned model written to {result.exported}; load it with "
              f"MusicGen.get_pretrained({result.exported!r}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
