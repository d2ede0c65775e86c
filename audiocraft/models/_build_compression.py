"""Builders of the compression model from the checkpoint config (sections ``encodec``, ``seanet``, ``rvq``).

Only the sub-trees read here are resolved (``${sample_rate}``, ``${channels}``, ``${encodec.causal}`` resolve
against the root config); other parts of an official config (e.g. ``dora.dir: /checkpoint/${oc.env:USER}/...``)
are never touched. Unknown model, quantizer or option names raise a ``ValueError`` naming them.
"""
from __future__ import annotations

import inspect
import typing as tp

import omegaconf
from omegaconf import OmegaConf
import torch

from .. import quantization as qt
from ..modules.seanet import SEANetDecoder, SEANetEncoder
from .encodec import CompressionModel, EncodecModel

COMPRESSION_MODELS = ("encodec",)
AUTOENCODERS = ("seanet",)
QUANTIZERS: tp.Dict[str, tp.Type[qt.BaseQuantizer]] = {"no_quant": qt.DummyQuantizer,
                                                       "rvq": qt.ResidualVectorQuantizer}
_DEPRECATED_ENCODEC_OPTIONS = ("renorm",)


def _as_config(cfg: tp.Any) -> omegaconf.DictConfig:
    if isinstance(cfg, omegaconf.DictConfig):
        return cfg
    if isinstance(cfg, dict):
        return OmegaConf.create(cfg)
    raise TypeError(f"cfg must be an omegaconf DictConfig (or a dict), got {type(cfg).__name__}")


def _section(cfg: omegaconf.DictConfig, name: str) -> tp.Dict[str, tp.Any]:
    """Plain dict of ``cfg.<name>`` with its interpolations resolved against the root config."""
    node = cfg.get(name)
    if node is None:
        return {}
    if not isinstance(node, omegaconf.DictConfig):
        raise ValueError(f"config section {name!r} must be a mapping, got {node!r}")
    out = OmegaConf.to_container(node, resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}


def _check_options(kwargs: tp.Dict[str, tp.Any], klass: type, section: str) -> None:
    allowed = [p for p in inspect.signature(klass.__init__).parameters if p != "self"]  # type: ignore[misc]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in config section {section!r} for {klass.__name__}; "
                         f"allowed: {allowed}")


def get_encodec_autoencoder(encoder_name: str, cfg: omegaconf.DictConfig) -> tp.Tuple[SEANetEncoder, SEANetDecoder]:
    """Encoder and decoder from ``cfg.<encoder_name>`` (only ``'seanet'``); its ``encoder`` / ``decoder`` sub-dicts
    override the shared options for one side."""
    cfg = _as_config(cfg)
    if encoder_name not in AUTOENCODERS:
        raise ValueError(f"encodec.autoencoder={encoder_name!r} is not supported; allowed: {list(AUTOENCODERS)}")
    kwargs = _section(cfg, encoder_name)
    encoder_override = kwargs.pop("encoder", None) or {}
    decoder_override = kwargs.pop("decoder", None) or {}
    encoder_kwargs = {**kwargs, **encoder_override}
    decoder_kwargs = {**kwargs, **decoder_override}
    _check_options(encoder_kwargs, SEANetEncoder, f"{encoder_name} (encoder)")
    _check_options(decoder_kwargs, SEANetDecoder, f"{encoder_name} (decoder)")
    return SEANetEncoder(**encoder_kwargs), SEANetDecoder(**decoder_kwargs)


def get_quantizer(quantizer: str, cfg: omegaconf.DictConfig, dimension: int) -> qt.BaseQuantizer:
    """Quantizer ``'rvq'`` (``ResidualVectorQuantizer`` from ``cfg.rvq``, with ``dimension``) or ``'no_quant'``."""
    cfg = _as_config(cfg)
    if quantizer not in QUANTIZERS:
        raise ValueError(f"encodec.quantizer={quantizer!r} is not supported; allowed: {sorted(QUANTIZERS)}")
    klass = QUANTIZERS[quantizer]
    kwargs = _section(cfg, quantizer)
    if quantizer != "no_quant":
        kwargs["dimension"] = dimension
    _check_options(kwargs, klass, quantizer)
    return klass(**kwargs)


def get_compression_model(cfg: omegaconf.DictConfig) -> CompressionModel:
    """The compression model of a checkpoint config (``cfg.compression_model == 'encodec'``), on ``cfg.device``.

    ``frame_rate`` is ``sample_rate // hop_length`` as a plain int.
    """
    cfg = _as_config(cfg)
    model_name = cfg.get("compression_model", None)
    if model_name not in COMPRESSION_MODELS:
        raise ValueError(f"compression_model={model_name!r} is not supported; allowed: {list(COMPRESSION_MODELS)}")
    kwargs = _section(cfg, "encodec")
    for key in ("autoencoder", "quantizer", "sample_rate", "channels"):
        if key not in kwargs:
            raise ValueError(f"config section 'encodec' lacks {key!r}")
    encoder_name = kwargs.pop("autoencoder")
    quantizer_name = kwargs.pop("quantizer")
    for key in _DEPRECATED_ENCODEC_OPTIONS:
        kwargs.pop(key, None)
    encoder, decoder = get_encodec_autoencoder(encoder_name, cfg)
    quantizer = get_quantizer(quantizer_name, cfg, encoder.dimension)
    frame_rate = int(kwargs["sample_rate"]) // encoder.hop_length
    _check_options(kwargs, EncodecModel, "encodec")
    model = EncodecModel(encoder, decoder, quantizer, frame_rate=frame_rate, **kwargs)
    return model.to(str(cfg.get("device", "cpu") or "cpu"))


def get_debug_compression_model(device: tp.Union[torch.device, str] = "cpu",
                                sample_rate: int = 32000) -> CompressionModel:
    """A tiny random EnCodec (25 Hz, 4 x 400 codes, dimension 32) for unit tests, in eval mode.

    Its codebooks are initialised by running the quantizer once on random latents (uses the global RNG).
    """
    model_ratios = {16000: [10, 8, 8], 32000: [10, 8, 16]}
    if sample_rate not in model_ratios:
        raise ValueError(f"sample_rate={sample_rate} is not supported for the debug compression model; "
                         f"allowed: {sorted(model_ratios)}")
    ratios = model_ratios[sample_rate]
    seanet_kwargs: tp.Dict[str, tp.Any] = {"n_filters": 4, "n_residual_layers": 1, "dimension": 32,
                                           "ratios": ratios}
    encoder = SEANetEncoder(**seanet_kwargs)
    decoder = SEANetDecoder(**seanet_kwargs)
    quantizer = qt.ResidualVectorQuantizer(dimension=32, bins=400, n_q=4)
    quantizer(torch.randn(8, 32, 128), 1)  # k-means initialisation of the codebooks
    model = EncodecModel(encoder, decoder, quantizer, frame_rate=25, sample_rate=sample_rate, channels=1)
    return model.to(device).eval()
