"""Load any pretrained generation model by name: the facade class is read from the checkpoint's config.

>>> from audiocraft.models import get_pretrained
>>> model = get_pretrained('facebook/magnet-small-10secs')    # a MAGNeT  # doctest: +SKIP
>>> model = get_pretrained('facebook/musicgen-small')         # a MusicGen  # doctest: +SKIP

Only the config (``xp.cfg``) of the checkpoint's ``state_dict.bin`` is read (the file is memory-mapped, its
tensors are not loaded): ``lm_model: transformer_lm_magnet`` (solvers ``magnet`` and ``audio_magnet``) is MAGNeT,
anything else MusicGen.
"""
from __future__ import annotations

import typing as tp

from ..utils.validation import ArgumentTypeError
from .loaders import LM_FILENAME, _checkpoint_cfg, _load_package

if tp.TYPE_CHECKING:  # pragma: no cover
    from .genmodel import BaseGenModel

__all__ = ["facade_for", "get_pretrained"]


def check_name(name: tp.Any) -> str:
    """A model name: a non-empty str (hub id, folder or ``'debug'``)."""
    if not isinstance(name, str) or not name:
        raise ArgumentTypeError(f"name must be a non-empty str (hub id, folder or 'debug'), got {name!r}.")
    return name


def facade_for(name: str) -> tp.Type["BaseGenModel"]:
    """The facade class generating with checkpoint ``name``: MAGNeT for a MAGNeT LM (``lm_model:
    transformer_lm_magnet``), else MusicGen (``'debug'`` and the deprecated short names included). A checkpoint
    that cannot be found or read raises the loader's error (``FileNotFoundError``, ``CheckpointError``)."""
    from .magnet import MAGNeT
    from .musicgen import _HF_MODEL_CHECKPOINTS_MAP, MusicGen
    if check_name(name) == "debug" or name in _HF_MODEL_CHECKPOINTS_MAP:
        return MusicGen
    package, path = _load_package(name, LM_FILENAME, None)
    lm_model = _checkpoint_cfg(package, path).get("lm_model")
    return MAGNeT if lm_model == "transformer_lm_magnet" else MusicGen


def get_pretrained(name: str, device: tp.Optional[str] = None, **kwargs: tp.Any) -> "BaseGenModel":
    """The pretrained model ``name`` with the facade its checkpoint was trained for: ``MAGNeT`` for
    ``facebook/magnet-*`` and ``facebook/audio-magnet-*``, ``MusicGen`` otherwise. ``kwargs`` go to that facade's
    ``get_pretrained`` (e.g. MusicGen's ``dtype``, ``quantize``)."""
    return facade_for(name).get_pretrained(name, device=device, **kwargs)
