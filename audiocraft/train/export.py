"""Export of a fine-tuned MusicGen: a complete model folder in the official layout (see
:mod:`audiocraft.utils.export` for the package format)."""
from __future__ import annotations

from pathlib import Path
import typing as tp

import torch

from ..models.loaders import load_compression_model_ckpt
from ..utils.export import (COMPRESSION_FILENAME, LM_FILENAME, PathLike, _atomic_save, export_lm,
                            export_pretrained_compression_model)


def copy_compression_model(name: PathLike, out_file: PathLike) -> Path:
    """Copy the compression package of a MusicGen model (hub id, folder or file) to ``out_file``."""
    return _atomic_save(load_compression_model_ckpt(Path(name) if not isinstance(name, str) else name), out_file)


def export_musicgen(out_dir: PathLike, state_dict: tp.Mapping[str, torch.Tensor], cfg: tp.Any,
                    compression_from: tp.Optional[PathLike] = None,
                    pretrained_compression: tp.Optional[str] = None) -> Path:
    """Write a complete MusicGen folder: the LM package and the compression package.

    The compression package is copied from ``compression_from`` (the base MusicGen's hub id or folder), or,
    with ``pretrained_compression``, written as a reference to that name. Returns the folder.
    """
    if (compression_from is None) == (pretrained_compression is None):
        raise ValueError("give exactly one of compression_from (copy) and pretrained_compression (reference).")
    folder = Path(out_dir)
    export_lm(state_dict, cfg, folder / LM_FILENAME)
    if compression_from is not None:
        copy_compression_model(compression_from, folder / COMPRESSION_FILENAME)
    else:
        assert pretrained_compression is not None
        export_pretrained_compression_model(pretrained_compression, folder / COMPRESSION_FILENAME)
    return folder
