"""Export trained models in the official Audiocraft layout, loadable by ``MusicGen.get_pretrained(folder)``.

An exported file is ``torch.save`` of a plain dict (readable with ``torch.load(..., weights_only=True)``)::

    {'best_state': {name: tensor}, 'xp.cfg': <OmegaConf YAML string>, 'version': <str>, 'exported': True}

A model folder holds ``state_dict.bin`` (the LM) and ``compression_state_dict.bin`` (EnCodec: a full package,
or ``{'pretrained': name, ...}`` referring to a model ``CompressionModel.get_pretrained`` can load).
All writes are atomic (a temporary file renamed onto the target).
"""
from __future__ import annotations

import os
from pathlib import Path
import typing as tp

import torch

LM_FILENAME = "state_dict.bin"
COMPRESSION_FILENAME = "compression_state_dict.bin"
PathLike = tp.Union[str, os.PathLike]


def _version() -> str:
    from .. import __version__
    return __version__


def _atomic_save(obj: tp.Any, out_file: PathLike) -> Path:
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _cfg_yaml(cfg: tp.Any) -> str:
    """The config as an UNRESOLVED OmegaConf YAML string (interpolations kept as written)."""
    from omegaconf import DictConfig, OmegaConf
    if isinstance(cfg, str):
        parsed = OmegaConf.create(cfg)
        if not isinstance(parsed, DictConfig):
            raise ValueError("cfg must be a YAML mapping (the training config), got a YAML "
                             f"{type(parsed).__name__}.")
        return cfg
    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"cfg must be an OmegaConf DictConfig, a dict or a YAML string, got {type(cfg).__name__}.")
    return OmegaConf.to_yaml(cfg)


def _clean_state(state_dict: tp.Mapping[str, tp.Any]) -> tp.Dict[str, torch.Tensor]:
    if not isinstance(state_dict, tp.Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}.")
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict must map str to Tensor; entry {key!r} is a {type(value).__name__}.")
        out[key] = value.detach().cpu().contiguous()
    return out


def export_lm(state_dict: tp.Union[tp.Mapping[str, torch.Tensor], PathLike], cfg: tp.Any,
              out_file: tp.Optional[PathLike] = None) -> Path:
    """Write a language model package (``state_dict.bin``).

    Two forms:

    - ``export_lm(state_dict, cfg, out_file)``: the LM's weights and its training config (DictConfig, dict or
      YAML string; stored unresolved);
    - ``export_lm(checkpoint_path, out_file)`` (Audiocraft's form): a training checkpoint holding
      ``'xp.cfg'`` and ``'best_state'`` (either the weights or ``{'model': weights}``; ``'fsdp_best_state'``
      preferred when present). It is read with ``weights_only=True``.

    Returns the path written.
    """
    if out_file is None:
        if not isinstance(state_dict, (str, os.PathLike)):
            raise TypeError("export_lm(state_dict, cfg, out_file) needs out_file; the two-argument form is "
                            "export_lm(checkpoint_path, out_file).")
        return _export_lm_from_checkpoint(state_dict, cfg)
    if isinstance(state_dict, (str, os.PathLike)):
        raise TypeError("export_lm(state_dict, cfg, out_file): state_dict must be a mapping of tensors; for a "
                        "checkpoint file use export_lm(checkpoint_path, out_file).")
    pkg = {"best_state": _clean_state(state_dict), "xp.cfg": _cfg_yaml(cfg), "version": _version(),
           "exported": True}
    return _atomic_save(pkg, out_file)


def _export_lm_from_checkpoint(checkpoint_path: PathLike, out_file: PathLike) -> Path:
    from .checkpoint_io import CheckpointError, safe_torch_load
    pkg = safe_torch_load(Path(checkpoint_path))
    if not isinstance(pkg, dict) or "xp.cfg" not in pkg:
        raise CheckpointError(f"'{checkpoint_path}' has no 'xp.cfg'; use export_lm(state_dict, cfg, out_file).")
    best = pkg.get("fsdp_best_state") or pkg.get("best_state")
    if isinstance(best, dict) and "model" in best:
        best = best["model"]
    if not best:
        raise CheckpointError(f"'{checkpoint_path}' has no 'best_state' (nor 'fsdp_best_state') to export.")
    return export_lm(best, pkg["xp.cfg"], out_file)


def export_encodec(checkpoint_path: PathLike, out_file: PathLike) -> Path:
    """Write a compression model package from a training checkpoint (``'xp.cfg'`` + ``'best_state'``)."""
    from .checkpoint_io import CheckpointError, safe_torch_load
    pkg = safe_torch_load(Path(checkpoint_path))
    if not isinstance(pkg, dict) or "xp.cfg" not in pkg or not pkg.get("best_state"):
        raise CheckpointError(f"'{checkpoint_path}' needs 'xp.cfg' and 'best_state' to be exported.")
    best = pkg["best_state"]
    if isinstance(best, dict) and "model" in best:
        best = best["model"]
    new_pkg = {"best_state": _clean_state(best), "xp.cfg": _cfg_yaml(pkg["xp.cfg"]), "version": _version(),
               "exported": True}
    return _atomic_save(new_pkg, out_file)


def export_pretrained_compression_model(pretrained_encodec: str, out_file: PathLike) -> Path:
    """Write a compression package that REFERS to a pretrained model by name (loaded with
    ``CompressionModel.get_pretrained(name)``: a local checkpoint path or a transformers EnCodec hub id such as
    ``'facebook/encodec_32khz'``)."""
    if not isinstance(pretrained_encodec, str) or not pretrained_encodec:
        raise TypeError(f"pretrained_encodec must be a non-empty str, got {pretrained_encodec!r}.")
    return _atomic_save({"pretrained": pretrained_encodec, "exported": True, "version": _version()}, out_file)
