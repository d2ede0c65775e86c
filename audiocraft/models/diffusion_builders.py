"""Builders of MultiBandDiffusion's parts from a band's config (an OmegaConf tree as stored in
``mbd_musicgen_32khz.th``): the diffusion U-Net (``diffusion_unet``, ``channels``, ``schedule.num_steps``) and the
sample processor (``processor``). Re-exported by :mod:`audiocraft.models.builders`.
"""
from __future__ import annotations

import typing as tp

from ..modules.diffusion_schedule import MultiBandProcessor, SampleProcessor
from ..utils.config import as_config, section, select, to_plain
from .unet import DiffusionUnet

_UNET_KEYS = ("hidden", "depth", "res_blocks", "norm_groups", "kernel", "stride", "growth", "max_channels",
              "dropout", "emb_all_layers", "bilstm", "codec_dim", "transformer", "cross_attention")
_PROCESSORS = ("multi_band_processor",)
_PROCESSOR_KEYS = ("n_bands", "num_samples", "power_std")


def get_diffusion_model(cfg: tp.Any) -> DiffusionUnet:
    """``DiffusionUnet(chin=cfg.channels, num_steps=cfg.schedule.num_steps, **cfg.diffusion_unet)``.

    Raises:
        ValueError: a missing key or an option the U-Net does not know (named).
    """
    cfg = as_config(cfg)
    unet = section(cfg, "diffusion_unet")
    unknown = sorted(set(unet) - set(_UNET_KEYS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in config section 'diffusion_unet'; allowed: "
                         f"{list(_UNET_KEYS)}")
    channels, num_steps = select(cfg, "channels"), select(cfg, "schedule.num_steps")
    for name, value in (("channels", channels), ("schedule.num_steps", num_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"the diffusion config needs {name} as an integer >= 1, got {value!r}")
    return DiffusionUnet(chin=channels, num_steps=num_steps, **unet)


def get_processor(cfg: tp.Any, sample_rate: int = 24000) -> SampleProcessor:
    """The sample processor of a ``processor`` config section: a ``MultiBandProcessor`` when ``use`` is true
    (``name: multi_band_processor``; ``n_bands``, ``num_samples``, ``power_std``), else the identity."""
    kwargs = to_plain(cfg)
    if not isinstance(kwargs, dict):
        raise ValueError(f"config section 'processor' must be a mapping, got {cfg!r}")
    if not kwargs.pop("use", False):
        return SampleProcessor()
    name = kwargs.pop("name", None)
    if name not in _PROCESSORS:
        raise ValueError(f"processor.name={name!r} is not supported; allowed: {list(_PROCESSORS)}")
    unknown = sorted(set(kwargs) - set(_PROCESSOR_KEYS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in config section 'processor'; allowed: "
                         f"{list(_PROCESSOR_KEYS)}")
    return MultiBandProcessor(sample_rate=sample_rate, **kwargs)
