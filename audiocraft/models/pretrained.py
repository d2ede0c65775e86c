"""Load any pretrained generation model by name: the facade class is read from the checkpoint's config.

>>> from audiocraft.models.pretrained import get_pretrained_model
>>> model = get_pretrained_model('facebook/magnet-small-10secs')    # a MAGNeT
>>> model = get_pretrained_model('facebook/musicgen-small')         # a MusicGen

The checkpoint's ``state_dict.bin`` is opened memory-mapped, only its ``xp.cfg`` is read: ``lm_model:
transformer_lm_magnet`` is MAGNeT, anything else MusicGen. A family with its own facade adds a rule to
:func:`facade_class`.
"""
from __future__ import annotations

import typing as tp

from .genmodel import BaseGenModel

__all__ = ["facade_class", "get_pretrained_model"]

# Names that are not checkpoints on disk or on the hub: MusicGen's debug model and its deprecated short names.
_MUSICGEN_ALIASES = ("debug", "small", "medium", "large", "melody")


def facade_class(name: str) -> tp.Type[BaseGenModel]:
    """The facade class (``MusicGen``, ``MAGNeT``) of the checkpoint ``name`` (hub id or folder).

    A checkpoint that cannot be read is reported as ``MusicGen``, whose ``get_pretrained`` then raises the
    loading error that names the file."""
    from .magnet import MAGNeT
    from .musicgen import MusicGen
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str (hub id or folder), got {name!r}.")
    if name in _MUSICGEN_ALIASES:
        return MusicGen
    from omegaconf import OmegaConf
    from .loaders import load_lm_model_ckpt
    try:
        package = load_lm_model_ckpt(name)
        lm_model = OmegaConf.create(package["xp.cfg"]).get("lm_model")
    except Exception:  # noqa: BLE001 - any unreadable checkpoint: MusicGen's loader reports it precisely
        return MusicGen
    return MAGNeT if lm_model == "transformer_lm_magnet" else MusicGen


def get_pretrained_model(name: str, device: tp.Optional[str] = None, **kwargs: tp.Any) -> BaseGenModel:
    """``facade_class(name).get_pretrained(name, device, **kwargs)``: a MusicGen or a MAGNeT, whichever the
    checkpoint holds. ``kwargs`` are the class's loading options (``dtype``, ``quantize``, ``pack``)."""
    return facade_class(name).get_pretrained(name, device, **kwargs)
