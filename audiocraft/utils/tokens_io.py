"""Saving generated tokens to disk and loading them back ("tokens first, audio later").

Layout of a tokens file (``torch.save`` of a dict, loadable with ``torch.load(..., weights_only=True)``)::

    {'tokens': int64 [B, K, F],          # EnCodec codes, K codebooks at frame_rate Hz
     'sample_rate': int, 'frame_rate': int,
     'model': str,                       # name the model was loaded from
     'format': 'audiocraft-tokens', 'version': 1,
     'meta': str}                        # JSON: generation parameters, seeds, descriptions, library version

``MusicGen.generate_audio`` accepts such a file's path (or the tokens tensor) and decodes it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import tempfile
import typing as tp

import torch

from .validation import ArgumentError

TOKENS_FORMAT = "audiocraft-tokens"


def save_tokens(path: tp.Union[str, Path], tokens: torch.Tensor, *, sample_rate: int, frame_rate: int,
                model: str = "", meta: tp.Optional[tp.Dict[str, tp.Any]] = None) -> Path:
    """Write ``tokens`` ``[B, K, F]`` (int) to ``path`` atomically (temp file + rename). Returns the path."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or tokens.is_floating_point():
        raise ArgumentError(f"tokens must be an integer tensor [B, K, F], got {getattr(tokens, 'shape', tokens)!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    package = {"tokens": tokens.detach().cpu().long(), "sample_rate": int(sample_rate),
               "frame_rate": int(frame_rate), "model": str(model), "format": TOKENS_FORMAT, "version": 1,
               "meta": json.dumps(meta or {}, default=str)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(package, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_tokens(path: tp.Union[str, Path]) -> tp.Dict[str, tp.Any]:
    """Read a tokens file; returns its dict with ``meta`` parsed from JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokens file not found: {path}")
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArgumentError(f"{path} is not a tokens file (torch.load failed: {exc}).") from exc
    if not isinstance(package, dict) or package.get("format") != TOKENS_FORMAT or "tokens" not in package:
        raise ArgumentError(f"{path} is not a tokens file written by save_tokens (format '{TOKENS_FORMAT}').")
    package = dict(package)
    package["meta"] = json.loads(package.get("meta") or "{}")
    return package
