"""Reading a checkpoint's training config (``xp.cfg``, an OmegaConf tree) one sub-tree at a time.

Official configs keep their interpolations as strings (``${sample_rate}``, and some that fail outside Meta's
cluster, e.g. ``dora.dir: /checkpoint/${oc.env:USER}/...``): only the sub-trees a builder reads are resolved,
always against the root config.
"""
from __future__ import annotations

import typing as tp

import omegaconf
from omegaconf import OmegaConf


def as_config(cfg: tp.Any) -> omegaconf.DictConfig:
    """``cfg`` as a DictConfig (a plain dict is wrapped); anything else is a TypeError."""
    if isinstance(cfg, omegaconf.DictConfig):
        return cfg
    if isinstance(cfg, dict):
        return OmegaConf.create(cfg)
    raise TypeError(f"cfg must be an omegaconf DictConfig (or a dict), got {type(cfg).__name__}.")


def to_plain(node: tp.Any) -> tp.Any:
    """A config node as plain python (dicts, lists, scalars) with its interpolations resolved."""
    if isinstance(node, (omegaconf.DictConfig, omegaconf.ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def select(cfg: omegaconf.DictConfig, key: str, default: tp.Any = None) -> tp.Any:
    """``cfg.<key>`` (dotted) as plain python, resolved; ``default`` when absent or null."""
    value = to_plain(OmegaConf.select(cfg, key, default=None))
    return default if value is None else value


def section(cfg: omegaconf.DictConfig, name: str) -> tp.Dict[str, tp.Any]:
    """``cfg.<name>`` as a plain dict with string keys (``{}`` when absent); ValueError if it is not a mapping."""
    node = cfg.get(name)
    if node is None:
        return {}
    if not isinstance(node, omegaconf.DictConfig):
        raise ValueError(f"config section {name!r} must be a mapping, got {node!r}")
    return {str(k): v for k, v in to_plain(node).items()}
