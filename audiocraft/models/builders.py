"""Builders: turn a checkpoint's config (``xp.cfg``, an OmegaConf tree) into modules, one builder per section.

- compression model (``encodec``, ``seanet``, ``rvq``): :func:`get_compression_model`, :func:`get_encodec_autoencoder`,
  :func:`get_quantizer`; the stereo wrapper a generation model applies from its LM config
  (``interleave_stereo_codebooks``, ``compression_model_n_q``): :func:`get_wrapped_compression_model`;
- conditioners and fuser (``conditioners``, ``fuser``): :func:`get_conditioner_provider`, :func:`get_condition_fuser`;
- language model (``transformer_lm`` as :class:`TransformerLMConfig`, or :class:`MagnetLMConfig` for
  ``lm_model: transformer_lm_magnet``; ``codebooks_pattern``, guidance): :func:`get_lm_model`,
  :func:`get_codebooks_pattern_provider`;
- tiny random models for tests: ``get_debug_*``.

Only the sub-trees read are resolved (``${sample_rate}``, ``${channels}``, ``${encodec.causal}`` resolve against the
root config, see :mod:`audiocraft.utils.config`); other parts of an official config (e.g. ``dora.dir:
/checkpoint/${oc.env:USER}/...``) are never touched. Unknown model, quantizer, conditioner or option names raise a
``ValueError`` naming them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import typing as tp

import omegaconf
from omegaconf import OmegaConf
import torch

from .. import quantization as qt
from ..modules.codebooks_patterns import (CodebooksPatternProvider, CoarseFirstPattern, DelayedPatternProvider,
                                          MusicLMPattern, ParallelPatternProvider, UnrolledPatternProvider,
                                          VALLEPattern)
from ..modules.conditioners import (BaseConditioner, ChromaStemConditioner, ConditionFuser, ConditioningProvider,
                                    LUTConditioner, T5Conditioner)
from ..modules.seanet import SEANetDecoder, SEANetEncoder
from ..utils.config import as_config, section, to_plain
from .encodec import CompressionModel, EncodecModel, InterleaveStereoCompressionModel
from .lm import LMModel
from .lm_magnet import MagnetLMModel

__all__ = [
    "get_compression_model", "get_wrapped_compression_model", "get_debug_compression_model",
    "get_encodec_autoencoder", "get_quantizer",
    "get_condition_fuser", "get_conditioner_provider", "get_debug_conditioner_provider", "get_debug_condition_fuser",
    "TransformerLMConfig", "MagnetLMConfig", "get_codebooks_pattern_provider", "get_debug_lm_model", "get_lm_model",
]


# ---------------------------------------------------------------------------------------------- compression model
COMPRESSION_MODELS = ("encodec",)
AUTOENCODERS = ("seanet",)
QUANTIZERS: tp.Dict[str, tp.Type[qt.BaseQuantizer]] = {"no_quant": qt.DummyQuantizer,
                                                       "rvq": qt.ResidualVectorQuantizer}
_DEPRECATED_ENCODEC_OPTIONS = ("renorm",)


def _check_options(kwargs: tp.Dict[str, tp.Any], klass: type, section: str) -> None:
    allowed = [p for p in inspect.signature(klass.__init__).parameters if p != "self"]  # type: ignore[misc]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in config section {section!r} for {klass.__name__}; "
                         f"allowed: {allowed}")


def get_encodec_autoencoder(encoder_name: str, cfg: omegaconf.DictConfig) -> tp.Tuple[SEANetEncoder, SEANetDecoder]:
    """Encoder and decoder from ``cfg.<encoder_name>`` (only ``'seanet'``); its ``encoder`` / ``decoder`` sub-dicts
    override the shared options for one side."""
    cfg = as_config(cfg)
    if encoder_name not in AUTOENCODERS:
        raise ValueError(f"encodec.autoencoder={encoder_name!r} is not supported; allowed: {list(AUTOENCODERS)}")
    kwargs = section(cfg, encoder_name)
    encoder_override = kwargs.pop("encoder", None) or {}
    decoder_override = kwargs.pop("decoder", None) or {}
    encoder_kwargs = {**kwargs, **encoder_override}
    decoder_kwargs = {**kwargs, **decoder_override}
    _check_options(encoder_kwargs, SEANetEncoder, f"{encoder_name} (encoder)")
    _check_options(decoder_kwargs, SEANetDecoder, f"{encoder_name} (decoder)")
    return SEANetEncoder(**encoder_kwargs), SEANetDecoder(**decoder_kwargs)


def get_quantizer(quantizer: str, cfg: omegaconf.DictConfig, dimension: int) -> qt.BaseQuantizer:
    """Quantizer ``'rvq'`` (``ResidualVectorQuantizer`` from ``cfg.rvq``, with ``dimension``) or ``'no_quant'``."""
    cfg = as_config(cfg)
    if quantizer not in QUANTIZERS:
        raise ValueError(f"encodec.quantizer={quantizer!r} is not supported; allowed: {sorted(QUANTIZERS)}")
    klass = QUANTIZERS[quantizer]
    kwargs = section(cfg, quantizer)
    if quantizer != "no_quant":
        kwargs["dimension"] = dimension
    _check_options(kwargs, klass, quantizer)
    return klass(**kwargs)


def get_compression_model(cfg: omegaconf.DictConfig) -> CompressionModel:
    """The compression model of a checkpoint config (``cfg.compression_model == 'encodec'``), on ``cfg.device``.

    ``frame_rate`` is ``sample_rate // hop_length`` as a plain int.
    """
    cfg = as_config(cfg)
    model_name = cfg.get("compression_model", None)
    if model_name not in COMPRESSION_MODELS:
        raise ValueError(f"compression_model={model_name!r} is not supported; allowed: {list(COMPRESSION_MODELS)}")
    kwargs = section(cfg, "encodec")
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


def get_wrapped_compression_model(compression_model: CompressionModel, cfg: tp.Any) -> CompressionModel:
    """The compression model a generation model with LM config ``cfg`` uses, as Audiocraft builds it.

    ``interleave_stereo_codebooks.use`` wraps the mono codec in :class:`InterleaveStereoCompressionModel` (its other
    keys, e.g. ``per_timestep``, are the wrapper's arguments); ``compression_model_n_q`` (when not null) sets the
    number of codebooks used. The root ``channels`` (when given) must then be the wrapped model's: a config with
    ``channels: 2`` and no interleaving (or the reverse) raises a ValueError naming both.
    """
    cfg = as_config(cfg)
    stereo = section(cfg, "interleave_stereo_codebooks")
    if stereo.pop("use", False):
        _check_options(stereo, InterleaveStereoCompressionModel, "interleave_stereo_codebooks")
        if compression_model.channels != 1:
            raise ValueError(f"interleave_stereo_codebooks.use is set but the compression model has "
                             f"{compression_model.channels} channels; it must be mono")
        compression_model = InterleaveStereoCompressionModel(compression_model, **stereo)
    n_q = to_plain(cfg.get("compression_model_n_q"))
    if n_q is not None:
        compression_model.set_num_codebooks(int(n_q))
    channels = to_plain(cfg.get("channels"))
    if channels is not None and int(channels) != compression_model.channels:
        how = ("interleave_stereo_codebooks.use is false" if compression_model.channels == 1 else
               "interleave_stereo_codebooks.use is true")
        raise ValueError(f"the config says channels={channels} but its compression model gives "
                         f"{compression_model.channels} channel(s) ({how})")
    return compression_model


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


# ---------------------------------------------------------------------------------------------- conditioners
CONDITIONER_MODELS = ("t5", "lut", "chroma_stem")
FUSER_METHODS = ("sum", "cross", "prepend", "input_interpolate")
FUSER_OPTIONS = ("cross_attention_pos_emb", "cross_attention_pos_emb_scale")


def get_conditioner_provider(output_dim: int, cfg: omegaconf.DictConfig) -> ConditioningProvider:
    """Build the ConditioningProvider described by ``cfg.conditioners`` (cfg = the full training config).

    Each entry ``name: {model: <type>, <type>: {kwargs}}`` becomes a conditioner of type 't5'
    (:class:`T5Conditioner`), 'lut' (:class:`LUTConditioner`) or 'chroma_stem' (:class:`ChromaStemConditioner`,
    with ``duration = cfg.dataset.segment_duration``); the entry ``args`` (provider options of Audiocraft's
    training solver) is skipped. ``cfg.device`` is the device of every conditioner.

    Raises:
        ValueError: an unknown conditioner type, or an entry without ``model``.
    """
    cfg = as_config(cfg)
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
        model_args = dict(to_plain(entry.get(model_type)) or {})
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
    cfg = as_config(cfg)
    fuser_cfg = cfg.get("fuser")
    if fuser_cfg is None:
        raise ValueError("cfg.fuser is missing: it lists the attributes fused by sum / cross / prepend / "
                         "input_interpolate.")
    options = dict(to_plain(fuser_cfg))
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


# ---------------------------------------------------------------------------------------------- language model
PATTERN_PROVIDERS: tp.Dict[str, tp.Type[CodebooksPatternProvider]] = {
    "parallel": ParallelPatternProvider,
    "delay": DelayedPatternProvider,
    "unroll": UnrolledPatternProvider,
    "coarse_first": CoarseFirstPattern,
    "musiclm": MusicLMPattern,
    "valle": VALLEPattern,
}
LM_MODELS = ("transformer_lm", "transformer_lm_magnet")


@dataclasses.dataclass
class TransformerLMConfig:
    """The ``transformer_lm`` section of a checkpoint config, typed: every key known by name, with the defaults of
    :class:`LMModel` and :class:`~audiocraft.modules.transformer.StreamingTransformer`.

    ``custom`` / ``memory_efficient`` choose the attention's parameter layout as in Audiocraft (either one: flat
    ``in_proj_weight``; neither: a ``torch.nn.MultiheadAttention`` under ``mha``), not its speed (the backend is
    chosen at load time here); ``q_modeling`` names the codebook pattern of old configs without
    ``codebooks_pattern.modeling`` (read by the builder, not passed on). Shared by :func:`get_lm_model` and the
    conversion to transformers (:mod:`audiocraft.convert`).
    """
    dim: int
    num_heads: int
    num_layers: int
    n_q: int
    card: int
    hidden_scale: float = 4
    norm: str = "layer_norm"
    norm_first: bool = False
    emb_lr: tp.Optional[float] = None
    bias_proj: bool = True
    weight_init: tp.Optional[str] = None
    depthwise_init: tp.Optional[str] = None
    zero_bias_init: bool = False
    two_step_cfg: bool = False
    dropout: float = 0.1
    activation: str = "relu"
    bias_ff: bool = True
    bias_attn: bool = True
    past_context: tp.Optional[int] = None
    causal: bool = False
    attention_as_float32: bool = False
    layer_scale: tp.Optional[float] = None
    positional_embedding: str = "sin"
    xpos: bool = False
    checkpointing: str = "none"
    cross_attention: bool = False
    qk_layer_norm: bool = False
    qk_layer_norm_cross: bool = False
    attention_dropout: tp.Optional[float] = None
    kv_repeat: int = 1
    max_period: float = 10_000
    positional_scale: float = 1.0
    lr: tp.Optional[float] = None
    weight_decay: tp.Optional[float] = None
    attention_backend: str = "torch"
    memory_efficient: bool = False
    custom: bool = False
    q_modeling: tp.Optional[str] = None

    DROPPED: tp.ClassVar[tp.Tuple[str, ...]] = ("q_modeling",)

    @classmethod
    def from_dict(cls, values: tp.Mapping[str, tp.Any], where: str = "transformer_lm") -> "TransformerLMConfig":
        """From the plain ``transformer_lm`` mapping; unknown or missing keys are a ValueError naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"Unknown {where} keys {unknown}; known keys: {sorted(fields)}.")
        missing = sorted(name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in values)
        if missing:
            raise ValueError(f"{where} lacks the keys {missing}.")
        return cls(**{str(k): v for k, v in values.items()})

    def lm_kwargs(self) -> tp.Dict[str, tp.Any]:
        """The keyword arguments of :class:`LMModel` (the transformer's included)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.DROPPED}


@dataclasses.dataclass
class MagnetLMConfig(TransformerLMConfig):
    """The ``transformer_lm`` section of a MAGNeT checkpoint (``lm_model: transformer_lm_magnet``): the keys of
    :class:`TransformerLMConfig` plus those of :class:`~audiocraft.models.lm_magnet.MagnetLMModel`. The loader
    sets ``compression_model_framerate`` (from the codec), ``segment_duration`` (``dataset.segment_duration``) and
    ``span_len`` (``masking.span_len``) before building, as Audiocraft does."""
    subcodes_context: int = 5
    compression_model_framerate: int = 50
    segment_duration: float = 10
    span_len: int = 3


def get_codebooks_pattern_provider(n_q: int, cfg: tp.Any) -> CodebooksPatternProvider:
    """Pattern provider from the ``codebooks_pattern`` config: ``cfg.modeling`` names it (one of
    ``PATTERN_PROVIDERS``) and ``cfg.<modeling>`` (if present) holds its arguments."""
    cfg = as_config(cfg)
    name = cfg.get("modeling")
    if name not in PATTERN_PROVIDERS:
        raise ValueError(f"Unknown codebooks pattern {name!r}; expected one of {sorted(PATTERN_PROVIDERS)}.")
    kwargs = dict(to_plain(cfg.get(name)) or {})
    try:
        return PATTERN_PROVIDERS[name](n_q, **kwargs)
    except TypeError as exc:
        raise ValueError(f"Invalid arguments {kwargs} for codebooks pattern {name!r}: {exc}") from exc


def _pattern_provider(cfg: omegaconf.DictConfig, config: TransformerLMConfig) -> CodebooksPatternProvider:
    pattern_cfg = cfg.get("codebooks_pattern")
    if pattern_cfg is None or pattern_cfg.get("modeling") is None:
        if config.q_modeling is None:
            raise ValueError("Set codebooks_pattern.modeling (or transformer_lm.q_modeling) to choose a pattern.")
        pattern_cfg = OmegaConf.create({"modeling": config.q_modeling, "delay": {"delays": list(range(config.n_q))}})
    return get_codebooks_pattern_provider(config.n_q, pattern_cfg)


def get_lm_model(cfg: tp.Any, *, meta: bool = False) -> LMModel:
    """LMModel described by the root config (``xp.cfg``): ``lm_model`` is ``'transformer_lm'`` (:class:`LMModel`)
    or ``'transformer_lm_magnet'`` (:class:`MagnetLMModel`, section read as :class:`MagnetLMConfig`).

    Reads ``transformer_lm`` (:class:`TransformerLMConfig`), ``codebooks_pattern``, ``classifier_free_guidance``
    (training_dropout, inference_coef), ``attribute_dropout``, ``conditioners`` and ``fuser``, ``device`` and
    ``dtype``. Cross-attention is switched on when ``fuser.cross`` names a condition (as Audiocraft does).

    With ``meta``, the LM's own layers are built on the meta device (no random initialisation, no memory) for a
    loader to assign checkpoint tensors to; the conditioners (T5 and its pretrained weights) are built for real on
    ``cfg.device``."""
    cfg = as_config(cfg)
    if cfg.get("lm_model") not in LM_MODELS:
        raise ValueError(f"Unknown lm_model {cfg.get('lm_model')!r}; expected one of {list(LM_MODELS)}.")
    magnet = cfg.get("lm_model") == "transformer_lm_magnet"
    config_class = MagnetLMConfig if magnet else TransformerLMConfig
    config = config_class.from_dict(section(cfg, "transformer_lm"))
    guidance = section(cfg, "classifier_free_guidance")
    device = str(cfg.get("device", "cpu") or "cpu")
    dtype_name = str(cfg.get("dtype", "float32") or "float32")
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype_name!r} in cfg.dtype.")
    fuser = get_condition_fuser(cfg)
    condition_provider = get_conditioner_provider(config.dim, cfg).to(device)
    if len(fuser.fuse2cond.get("cross", [])) > 0:
        config.cross_attention = True
    pattern_provider = _pattern_provider(cfg, config)
    lm_type = MagnetLMModel if magnet else LMModel
    with torch.device("meta") if meta else contextlib.nullcontext():
        lm = lm_type(pattern_provider=pattern_provider, condition_provider=condition_provider, fuser=fuser,
                     cfg_dropout=guidance.get("training_dropout", 0.0), cfg_coef=guidance.get("inference_coef", 1.0),
                     attribute_dropout=section(cfg, "attribute_dropout"), dtype=dtype,
                     device="meta" if meta else device, **config.lm_kwargs())
    return lm if meta else lm.to(device)


def get_debug_lm_model(device: tp.Union[str, torch.device] = "cpu") -> LMModel:
    """A tiny randomly initialised LM for tests: 4 codebooks of 400 codes, dim 16, 2 layers of 4 heads,
    delay pattern, cross-attention on a look-up-table ``description`` conditioner. Eval mode."""
    dim = 16
    lm = LMModel(DelayedPatternProvider(n_q=4), get_debug_conditioner_provider(dim), get_debug_condition_fuser(),
                 n_q=4, card=400, dim=dim, num_heads=4, num_layers=2, custom=True, cross_attention=True, causal=True)
    return lm.to(device).eval()


from .diffusion_builders import get_diffusion_model, get_processor  # noqa: F401,E402
