"""Loading a pretrained generation model: what every facade's ``get_pretrained`` shares (:func:`load_pretrained`),
and :func:`get_pretrained`, which picks the facade from the checkpoint's config.

>>> from audiocraft.models import get_pretrained
>>> model = get_pretrained('facebook/audiogen-medium')        # an AudioGen  # doctest: +SKIP
>>> model = get_pretrained('facebook/magnet-small-10secs')    # a MAGNeT  # doctest: +SKIP
>>> model = get_pretrained('facebook/musicgen-stereo-small')  # a MusicGen  # doctest: +SKIP

Only the config (``xp.cfg``) of the checkpoint's ``state_dict.bin`` is read to pick the facade (the file is
memory-mapped, its tensors are not loaded): ``lm_model: transformer_lm_magnet`` (solvers ``magnet`` and
``audio_magnet``) is MAGNeT, ``solver: audiogen`` AudioGen, anything else MusicGen.
"""
from __future__ import annotations

import typing as tp

import torch

from .. import backends
from ..utils.config import select
from ..utils.validation import ArgumentError, ArgumentTypeError, check_bool
from .lm import LMModel
from .loaders import LM_FILENAME, _checkpoint_cfg, _load_package, load_compression_model, load_lm_model

if tp.TYPE_CHECKING:  # pragma: no cover
    from .genmodel import BaseGenModel

__all__ = ["check_name", "default_device", "facade_for", "get_pretrained", "load_pretrained"]

GenModelT = tp.TypeVar("GenModelT", bound="BaseGenModel")
LMSetup = tp.Callable[[LMModel], None]


def check_name(name: tp.Any) -> str:
    """A model name: a non-empty str (hub id, folder or ``'debug'``)."""
    if not isinstance(name, str) or not name:
        raise ArgumentTypeError(f"name must be a non-empty str (hub id, folder or 'debug'), got {name!r}.")
    return name


def default_device(device: tp.Optional[str]) -> str:
    """``device``, or ``'cuda'`` when available, else ``'cpu'``."""
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pretrained(facade: tp.Type[GenModelT], name: str, device: tp.Optional[str], *,
                    dtype: tp.Optional[torch.dtype] = None, quantize: tp.Optional[str] = None, pack: bool = True,
                    debug_sample_rate: int = 32000, debug_max_duration: float = 30.0,
                    setup_lm: tp.Optional[LMSetup] = None) -> GenModelT:
    """``facade(name, compression_model, lm)`` from a checkpoint (hub id or folder) or, for ``'debug'``, tiny random
    models (a ``debug_sample_rate`` codec, ``debug_max_duration`` seconds window).

    ``setup_lm(lm)`` checks or adjusts the loaded LM before the backend prepares it (e.g. the melody conditioner's
    options, or refusing a conditioner the facade cannot feed). ``dtype``, ``quantize`` and ``pack`` are those of
    ``MusicGen.get_pretrained``. Any error leaves nothing loaded behind.
    """
    name = check_name(name)
    device = default_device(device)
    check_bool("pack", pack)
    with backends.preparing(device, dtype=dtype, quantize=quantize, pack=pack) as preparation:
        if name == "debug":
            from .builders import get_debug_compression_model, get_debug_lm_model
            compression_model = get_debug_compression_model(device, sample_rate=debug_sample_rate)
            lm = get_debug_lm_model(device)
            backends.prepare(lm, dtype=dtype, quantize=quantize, pack=pack)
            preparation.prepare_codec(compression_model)
            return facade(name, compression_model, lm, max_duration=debug_max_duration)
        lm = tp.cast(LMModel, load_lm_model(name, device=device, for_generation=True,
                                            on_state_loaded=preparation.on_state_loaded))
        _refuse_magnet(facade.__name__, name, lm)
        compression_model = preparation.prepare_codec(load_compression_model(name, device=device))
        if setup_lm is not None:
            setup_lm(lm)
        model = facade(name, compression_model, lm)  # wraps the codec for stereo, checks the two fit
        preparation.prepare(lm)
    return model


def _refuse_magnet(facade: str, name: str, lm: LMModel) -> None:
    """A MAGNeT LM cannot be decoded left to right by ``facade``: say which class loads it."""
    from .lm_magnet import MagnetLMModel
    if isinstance(lm, MagnetLMModel):
        raise ArgumentError(f"{name!r} is a MAGNeT checkpoint (lm_model: transformer_lm_magnet), which {facade} "
                            "cannot generate with: load it with MAGNeT.get_pretrained (or "
                            "audiocraft.models.get_pretrained).")


def facade_for(name: str) -> tp.Type["BaseGenModel"]:
    """The facade class generating with checkpoint ``name``: MAGNeT for a MAGNeT LM (``lm_model:
    transformer_lm_magnet``), AudioGen for an ``audiogen`` solver, else MusicGen (``'debug'`` and the deprecated short
    names included). A checkpoint that cannot be found or read raises the loader's error (``FileNotFoundError``,
    ``CheckpointError``)."""
    from .audiogen import AudioGen
    from .magnet import MAGNeT
    from .musicgen import _HF_MODEL_CHECKPOINTS_MAP, MusicGen
    if check_name(name) == "debug" or name in _HF_MODEL_CHECKPOINTS_MAP:
        return MusicGen
    package, path = _load_package(name, LM_FILENAME, None)
    cfg = _checkpoint_cfg(package, path)
    if select(cfg, "lm_model") == "transformer_lm_magnet":
        return MAGNeT
    return AudioGen if select(cfg, "solver") == "audiogen" else MusicGen


def get_pretrained(name: str, device: tp.Optional[str] = None, **kwargs: tp.Any) -> "BaseGenModel":
    """The pretrained model ``name`` with the facade its checkpoint was trained for: ``AudioGen`` for
    ``facebook/audiogen-medium``, ``MAGNeT`` for ``facebook/magnet-*`` and ``facebook/audio-magnet-*``, ``MusicGen``
    otherwise (mono, stereo, melody). ``kwargs`` go to that facade's ``get_pretrained`` (e.g. ``dtype``,
    ``quantize``)."""
    return facade_for(name).get_pretrained(name, device=device, **kwargs)
