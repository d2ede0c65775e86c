"""Resumable training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint (``checkpoint.th`` in the output folder) is a plain dict of tensors and Python containers:
``model`` (the trained parameters only, full tensors), ``optimizer``, ``scheduler``, ``scaler``, ``ema``,
``step``, ``epoch``, ``epoch_samples`` (data position: samples of the epoch already consumed, all ranks
together), ``rng`` (one entry per rank: Python, NumPy, torch CPU and CUDA generator states), ``generators``
(states of the model's own generators, e.g. the condition dropouts) and ``config``.
"""
from __future__ import annotations

import os
from pathlib import Path
import random
import typing as tp

import numpy as np
import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.th"


def save_checkpoint(state: tp.Dict[str, tp.Any], path: tp.Union[str, Path]) -> Path:
    """``torch.save`` to a temporary file, flushed to disk, then renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: tp.Union[str, Path]) -> tp.Dict[str, tp.Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (safe: ``weights_only=True``)."""
    from ..utils.checkpoint_io import CheckpointError, safe_torch_load
    state = safe_torch_load(path)
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"'{path}' is not a training checkpoint of audiocraft.train.")
    return state


def get_rng_state() -> tp.Dict[str, tp.Any]:
    """This process's random states (Python, NumPy, torch CPU, CUDA)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    state: tp.Dict[str, tp.Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: tp.Mapping[str, tp.Any]) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def module_generators(model: nn.Module) -> tp.Dict[str, torch.Generator]:
    """Every ``torch.Generator`` held as an attribute of a submodule (e.g. ``cfg_dropout.rng``), by name."""
    found = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                found[f"{name}.{attr}" if name else attr] = value
    return found
