"""torch.distributed helpers: process-group setup from torchrun's environment, and small collectives.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is initialised with
``nccl`` on GPU and ``gloo`` on CPU; otherwise everything runs in one process and the helpers are no-ops.
"""
from __future__ import annotations

from dataclasses import dataclass
import datetime
import os
import typing as tp

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank among ``world_size`` processes and its device."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Environment variable {name} must be an integer, got {value!r}.") from None


def init_distributed(device: tp.Optional[str] = None, timeout_s: float = 1800.0) -> DistEnv:
    """Set up this process from torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (single process without).

    ``device``: 'cpu', 'cuda' or None (cuda when available). With CUDA each process takes GPU ``LOCAL_RANK``.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}.")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available.")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: tp.Dict[str, tp.Any] = {}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_gather_object(obj: tp.Any) -> tp.List[tp.Any]:
    """Every rank's ``obj`` (a list of one item without a process group)."""
    if not _active():
        return [obj]
    out: tp.List[tp.Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: tp.Any, src: int = 0) -> tp.Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (a copy; the value itself without a process group)."""
    value = value.detach().clone()
    if _active():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a (possibly sharded) DTensor; collective for DTensors, identity otherwise."""
    if hasattr(t, "full_tensor") and hasattr(t, "device_mesh"):
        return t.full_tensor()
    return t


def like(full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``full`` laid out like ``reference`` (sharded the same way if it is a DTensor)."""
    if hasattr(reference, "device_mesh") and hasattr(reference, "placements"):
        from torch.distributed.tensor import distribute_tensor
        return distribute_tensor(full.to(reference.device, reference.dtype), reference.device_mesh,
                                 reference.placements)
    return full.to(reference.device, reference.dtype)
