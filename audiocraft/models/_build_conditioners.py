"""Builders of the conditioning side of the LM from the checkpoint config (``conditioners`` and ``fuser``).

Only the sub-trees read here are resolved (``${sample_rate}`` resolves against the root config); other parts of
an official config (e.g. ``dora.dir: /checkpoint/${oc.env:USER}/...``) are never touched.
"""
from __future__ import annotations

import typing as tp

import omegaconf
from omegaconf import OmegaConf

from ..modules.conditioners import (
    BaseConditioner, ChromaStemConditioner, ConditionFuser, ConditioningProvider, LUTConditioner, T5Conditioner,
)

CONDITIONER_MODELS = ("t5", "lut", "chroma_stem")
FUSER_METHODS = ("sum", "cross", "prepend", "input_interpolate")
FUSER_OPTIONS = ("cross_attention_pos_emb", "cross_attention_pos_emb_scale")


def _as_config(cfg: tp.Any) -> omegaconf.DictConfig:
    if isinstance(cfg, omegaconf.DictConfig):
        return cfg
    if isinstance(cfg, dict):
        return OmegaConf.create(cfg)
    raise TypeError(f"cfg must be an omegaconf DictConfig (or a dict), got {type(cfg).__name__}.")


def _resolved(node: tp.Any) -> tp.Any:
    """Plain python copy of a config node with its interpolations resolved (against the root config)."""
    if isinstance(node, (omegaconf.DictConfig, omegaconf.ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def get_conditioner_provider(output_dim: int, cfg: omegaconf.DictConfig) -> ConditioningProvider:
    """Build the ConditioningProvider described by ``cfg.conditioners`` (cfg = the full training config).

    Each entry ``name: {model: <type>, <type>: {kwargs}}`` becomes a conditioner of type 't5'
    (:class:`T5Conditioner`), 'lut' (:class:`LUTConditioner`) or 'chroma_stem' (:class:`ChromaStemConditioner`,
    with ``duration = cfg.dataset.segment_duration``); the entry ``args`` (provider options of Audiocraft's
    training solver) is skipped. ``cfg.device`` is the device of every conditioner.

    Raises:
        ValueError: an unknown conditioner type, or an entry without ``model``.
    """
    cfg = _as_config(cfg)
    device = str(cfg.get("device", "cpu") or "cpu")
    conditioners_cfg = cfg.get("conditioners")
    entries: tp.Dict[str, tp.Any] = {}
    if conditioners_cfg is not None:
        entries = {str(k): v for k, v in conditioners_cfg.items() if str(k) != "args"}

    conditioners: tp.Dict[str, BaseConditioner] = {}
    for name, entry in entries.items():
        if entry is None or "model" not in entry:
            raise ValueError(f"conditioners.{name} must have a 'model' key (one of {list(CONDITIONER_MODELS)}).")
        model_type = str(entry["model"])
        if model_type not in CONDITIONER_MODELS:
            raise ValueError(f"Unrecognized conditioning model {model_type!r} for conditioners.{name}; "
                             f"supported: {list(CONDITIONER_MODELS)}.")
        model_args = dict(_resolved(entry.get(model_type)) or {})
        if model_type == "t5":
            conditioners[name] = T5Conditioner(output_dim=output_dim, device=device, **model_args)
        elif model_type == "lut":
            conditioners[name] = LUTConditioner(output_dim=output_dim, **model_args)
        else:
            dataset = cfg.get("dataset")
            if dataset is None or dataset.get("segment_duration") is None:
                raise ValueError("A chroma_stem conditioner needs cfg.dataset.segment_duration (the chroma length).")
            conditioners[name] = ChromaStemConditioner(output_dim=output_dim,
                                                       duration=float(dataset.segment_duration),
                                                       device=device, **model_args)
    return ConditioningProvider(conditioners, device=device)


def get_condition_fuser(cfg: omegaconf.DictConfig) -> ConditionFuser:
    """Build the ConditionFuser described by ``cfg.fuser``: the lists ``sum``, ``cross``, ``prepend``,
    ``input_interpolate`` of attribute names, and ``cross_attention_pos_emb`` / ``cross_attention_pos_emb_scale``.
    """
    cfg = _as_config(cfg)
    fuser_cfg = cfg.get("fuser")
    if fuser_cfg is None:
        raise ValueError("cfg.fuser is missing: it lists the attributes fused by sum / cross / prepend / "
                         "input_interpolate.")
    options = dict(_resolved(fuser_cfg))
    unknown = [k for k in options if k not in FUSER_METHODS + FUSER_OPTIONS]
    if unknown:
        raise ValueError(f"Unknown fuser config keys {unknown}; allowed: {list(FUSER_METHODS + FUSER_OPTIONS)}.")
    fuse2cond = {method: [str(c) for c in (options.get(method) or [])] for method in FUSER_METHODS}
    kwargs = {k: options[k] for k in FUSER_OPTIONS if k in options}
    return ConditionFuser(fuse2cond=fuse2cond, **kwargs)


def get_debug_conditioner_provider(dim: int = 16, device: str = "cpu") -> ConditioningProvider:
    """A tiny text-only provider for tests: 'description' through a 128-bucket LUTConditioner (no T5)."""
    lut = LUTConditioner(n_bins=128, dim=dim, output_dim=dim, tokenizer="whitespace").to(device)
    return ConditioningProvider({"description": lut}, device=device)


def get_debug_condition_fuser() -> ConditionFuser:
    """The fuser matching :func:`get_debug_conditioner_provider`: 'description' by cross-attention."""
    return ConditionFuser({"cross": ["description"], "prepend": [], "sum": [], "input_interpolate": []})
