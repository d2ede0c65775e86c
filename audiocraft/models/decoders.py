"""Decoding a generation model's tokens with another decoder than its own codec: MultiBandDiffusion.

``MultiBandDiffusion.get_mbd_musicgen()`` decodes the tokens of the 32 kHz EnCodec (4 codebooks of 2048 codes at
50 frames/s): those of MusicGen (mono, and stereo channel by channel) and of MAGNeT's music models. AudioGen and
Audio-MAGNeT (16 kHz codec) or a debug model do not fit it. :func:`check_decoder` says why a pair does not fit;
:func:`decode` turns tokens into audio with the model's codec or the decoder. :func:`checkpoint_mismatch` does
the same check from a checkpoint's config alone, before its weights are loaded (the ``musicgen`` command).
"""
from __future__ import annotations

import typing as tp

import torch

from ..utils.validation import ArgumentError, ArgumentTypeError

if tp.TYPE_CHECKING:  # pragma: no cover
    from .genmodel import BaseGenModel
    from .multibanddiffusion import MultiBandDiffusion

# What the MusicGen diffusion decoder's codec (facebook/musicgen-small's EnCodec) reads, per audio channel.
MBD_SAMPLE_RATE = 32000
MBD_CODEBOOKS = 4
MBD_CARDINALITY = 2048


def _mismatch(name: str, sample_rate: int, channels: int, codebooks: int, cardinality: int,
              expected: tp.Tuple[int, int, int]) -> tp.Optional[str]:
    """Why tokens of ``codebooks`` x ``cardinality`` codes for ``channels`` channels at ``sample_rate`` cannot be
    decoded by a decoder reading ``expected`` = (sample rate, codebooks per channel, cardinality); None if they
    can."""
    rate, n_q, card = expected
    per_channel = codebooks // channels if channels >= 1 and codebooks % channels == 0 else None
    if sample_rate != rate or per_channel != n_q or cardinality != card:
        return (f"{name} makes {sample_rate} Hz audio from {codebooks} codebook(s) of {cardinality} codes for "
                f"{channels} channel(s); MultiBand Diffusion decodes the tokens of the {rate // 1000} kHz EnCodec "
                f"({n_q} codebooks of {card} codes per channel): MusicGen models (mono or stereo) and MAGNeT's "
                "music models, not AudioGen, Audio-MAGNeT or debug models")
    return None


def check_decoder(model: "BaseGenModel", decoder: tp.Any) -> tp.Optional["MultiBandDiffusion"]:
    """``decoder`` (None: the model's own codec) if it can decode ``model``'s tokens, else a clear error."""
    if decoder is None:
        return None
    from .multibanddiffusion import MultiBandDiffusion
    if not isinstance(decoder, MultiBandDiffusion):
        raise ArgumentTypeError(f"decoder must be a MultiBandDiffusion (e.g. MultiBandDiffusion.get_mbd_musicgen()) "
                                f"or None (the model's own codec), got {type(decoder).__name__}.")
    codec = decoder.codec_model
    reason = _mismatch(f"Model '{model.name}'", int(model.sample_rate), int(model.audio_channels),
                       int(model.compression_model.num_codebooks), int(model.compression_model.cardinality),
                       (int(codec.sample_rate), int(codec.num_codebooks), int(codec.cardinality)))
    if reason is None and abs(float(model.frame_rate) - float(codec.frame_rate)) > 1e-6:
        reason = f"Model '{model.name}' makes {model.frame_rate} token frames/s, the decoder's codec {codec.frame_rate}"
    if reason is not None:
        raise ArgumentError(reason + ".")
    return decoder


def decode(model: "BaseGenModel", tokens: torch.Tensor,
           decoder: tp.Optional["MultiBandDiffusion"] = None) -> torch.Tensor:
    """Audio ``[B, C, F * hop]`` of ``tokens`` ``[B, K, F]``: ``model.generate_audio`` without a decoder, else
    ``decoder.tokens_to_wav`` (stereo tokens channel by channel; draws from torch's global RNG)."""
    if decoder is None or tokens.shape[-1] == 0:
        return model.generate_audio(tokens)
    return decoder.tokens_to_wav(tokens)


def checkpoint_mismatch(name: str) -> tp.Optional[str]:
    """Why the tokens of checkpoint ``name`` (hub id or folder) cannot be decoded by the MusicGen diffusion decoder,
    judged from its config alone (the weights are not loaded); None if they can. ``'debug'`` never fits.
    A checkpoint that cannot be found or read raises the loader's error."""
    expected = (MBD_SAMPLE_RATE, MBD_CODEBOOKS, MBD_CARDINALITY)
    if name == "debug":
        return _mismatch("Model 'debug'", 32000, 1, 4, 400, expected)
    from .loaders import LM_FILENAME, _checkpoint_cfg, _load_package
    from .musicgen import _HF_MODEL_CHECKPOINTS_MAP
    name = _HF_MODEL_CHECKPOINTS_MAP.get(name, name)
    package, path = _load_package(name, LM_FILENAME, None)
    cfg = _checkpoint_cfg(package, path)
    lm = cfg.get("transformer_lm") or {}
    channels = int(cfg.get("channels", 1) or 1)
    codebooks = int(lm.get("n_q", 0) or 0)
    solver = cfg.get("solver")
    shown = f"'{name}'" + (f" ({solver})" if solver else "")
    return _mismatch(shown, int(cfg.get("sample_rate", 0) or 0), channels, codebooks,
                     int(lm.get("card", 0) or 0), expected)
