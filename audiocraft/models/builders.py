"""Builders: turn the checkpoint's config (`xp.cfg`, an OmegaConf tree) into modules.

One builder per config section, each in its own private module and re-exported here under
Audiocraft's public names:

- compression model (``encodec``, ``seanet``, ``rvq``): :mod:`._build_compression`
- language model (``transformer_lm``, ``codebooks_pattern``, guidance): :mod:`._build_lm`
- conditioners and fuser (``conditioners``, ``fuser``): :mod:`._build_conditioners`
"""
from ._build_compression import (  # noqa: F401
    get_compression_model, get_debug_compression_model, get_encodec_autoencoder, get_quantizer,
)
from ._build_conditioners import get_condition_fuser, get_conditioner_provider  # noqa: F401
from ._build_lm import get_codebooks_pattern_provider, get_debug_lm_model, get_lm_model  # noqa: F401

__all__ = [
    "get_compression_model", "get_debug_compression_model", "get_encodec_autoencoder", "get_quantizer",
    "get_condition_fuser", "get_conditioner_provider",
    "get_codebooks_pattern_provider", "get_debug_lm_model", "get_lm_model",
]
