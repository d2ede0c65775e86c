"""Builders of the language model from the checkpoint config: ``transformer_lm``, ``codebooks_pattern``,
``classifier_free_guidance``, ``attribute_dropout`` (plus the conditioners and fuser, built by
:mod:`._build_conditioners`). Re-exported by :mod:`.builders`.

Every ``transformer_lm`` key is known by name: LM arguments, transformer arguments, or keys dropped on purpose
because they change nothing at inference here (``memory_efficient`` and ``custom`` only chose an attention
implementation in Audiocraft; this package always uses SDPA). Any other key is an error naming it.
"""
from __future__ import annotations

import contextlib
import typing as tp

import omegaconf
from omegaconf import OmegaConf
import torch

from ..modules.codebooks_patterns import (CodebooksPatternProvider, CoarseFirstPattern, DelayedPatternProvider,
                                          MusicLMPattern, ParallelPatternProvider, UnrolledPatternProvider,
                                          VALLEPattern)
from .lm import LMModel

PATTERN_PROVIDERS: tp.Dict[str, tp.Type[CodebooksPatternProvider]] = {
    "parallel": ParallelPatternProvider,
    "delay": DelayedPatternProvider,
    "unroll": UnrolledPatternProvider,
    "coarse_first": CoarseFirstPattern,
    "musiclm": MusicLMPattern,
    "valle": VALLEPattern,
}
LM_MODELS = ("transformer_lm",)

# transformer_lm keys, by where they go.
_LM_KEYS = {"n_q", "card", "dim", "num_heads", "hidden_scale", "norm", "norm_first", "emb_lr", "bias_proj",
            "weight_init", "depthwise_init", "zero_bias_init", "two_step_cfg"}
_TRANSFORMER_KEYS = {"num_layers", "dropout", "activation", "bias_ff", "bias_attn", "past_context", "causal",
                     "attention_as_float32", "layer_scale", "positional_embedding", "xpos", "checkpointing",
                     "cross_attention", "qk_layer_norm", "qk_layer_norm_cross", "attention_dropout", "kv_repeat",
                     "max_period", "positional_scale", "lr", "weight_decay", "attention_backend"}
_DROPPED_KEYS = {"memory_efficient", "custom"}  # no effect here: one attention implementation (SDPA)
_PATTERN_KEY = "q_modeling"  # the pattern name, used only when codebooks_pattern.modeling is null


def _plain(node: tp.Any) -> tp.Any:
    if isinstance(node, (omegaconf.DictConfig, omegaconf.ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _as_config(cfg: tp.Any) -> omegaconf.DictConfig:
    if isinstance(cfg, omegaconf.DictConfig):
        return cfg
    if isinstance(cfg, dict):
        return OmegaConf.create(cfg)
    raise TypeError(f"cfg must be an omegaconf DictConfig (or a dict), got {type(cfg).__name__}.")


def get_codebooks_pattern_provider(n_q: int, cfg: tp.Any) -> CodebooksPatternProvider:
    """Pattern provider from the ``codebooks_pattern`` config: ``cfg.modeling`` names it (one of
    ``PATTERN_PROVIDERS``) and ``cfg.<modeling>`` (if present) holds its arguments."""
    cfg = _as_config(cfg)
    name = cfg.get("modeling")
    if name not in PATTERN_PROVIDERS:
        raise ValueError(f"Unknown codebooks pattern {name!r}; expected one of {sorted(PATTERN_PROVIDERS)}.")
    kwargs = dict(_plain(cfg.get(name)) or {})
    try:
        return PATTERN_PROVIDERS[name](n_q, **kwargs)
    except TypeError as exc:
        raise ValueError(f"Invalid arguments {kwargs} for codebooks pattern {name!r}: {exc}") from exc


def _split_transformer_lm(kwargs: tp.Dict[str, tp.Any]) -> tp.Tuple[tp.Dict[str, tp.Any], tp.Optional[str]]:
    unknown = sorted(set(kwargs) - _LM_KEYS - _TRANSFORMER_KEYS - _DROPPED_KEYS - {_PATTERN_KEY})
    if unknown:
        raise ValueError(f"Unknown transformer_lm keys {unknown}; known keys: "
                         f"{sorted(_LM_KEYS | _TRANSFORMER_KEYS | _DROPPED_KEYS | {_PATTERN_KEY})}.")
    q_modeling = kwargs.pop(_PATTERN_KEY, None)
    for key in _DROPPED_KEYS:
        kwargs.pop(key, None)
    return kwargs, q_modeling


def get_lm_model(cfg: tp.Any, *, meta: bool = False) -> LMModel:
    """LMModel described by the root config (``xp.cfg``): ``lm_model`` must be ``'transformer_lm'``.

    Reads ``transformer_lm``, ``codebooks_pattern``, ``classifier_free_guidance`` (training_dropout,
    inference_coef), ``attribute_dropout``, ``conditioners`` and ``fuser``, ``device`` and ``dtype``.
    Cross-attention is switched on when ``fuser.cross`` names a condition (as Audiocraft does).

    With ``meta``, the LM's own layers are built on the meta device (no random initialisation, no memory) for a
    loader to assign checkpoint tensors to; the conditioners (T5 and its pretrained weights) are built for real on
    ``cfg.device``."""
    from ._build_conditioners import get_condition_fuser, get_conditioner_provider  # the conditioners' builders

    cfg = _as_config(cfg)
    if cfg.get("lm_model") not in LM_MODELS:
        raise ValueError(f"Unknown lm_model {cfg.get('lm_model')!r}; expected one of {list(LM_MODELS)}.")
    kwargs, q_modeling = _split_transformer_lm(dict(_plain(cfg.transformer_lm)))
    n_q = kwargs["n_q"]
    guidance = dict(_plain(cfg.get("classifier_free_guidance")) or {})
    attribute_dropout = dict(_plain(cfg.get("attribute_dropout")) or {})
    device = str(cfg.get("device", "cpu") or "cpu")
    dtype_name = str(cfg.get("dtype", "float32") or "float32")
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype_name!r} in cfg.dtype.")

    fuser = get_condition_fuser(cfg)
    condition_provider = get_conditioner_provider(kwargs["dim"], cfg).to(device)
    if len(fuser.fuse2cond.get("cross", [])) > 0:
        kwargs["cross_attention"] = True
    pattern_cfg = cfg.get("codebooks_pattern")
    if pattern_cfg is None or pattern_cfg.get("modeling") is None:
        if q_modeling is None:
            raise ValueError("Set codebooks_pattern.modeling (or transformer_lm.q_modeling) to choose a pattern.")
        pattern_cfg = OmegaConf.create({"modeling": q_modeling, "delay": {"delays": list(range(n_q))}})
    pattern_provider = get_codebooks_pattern_provider(n_q, pattern_cfg)
    with torch.device("meta") if meta else contextlib.nullcontext():
        lm = LMModel(pattern_provider=pattern_provider, condition_provider=condition_provider, fuser=fuser,
                     cfg_dropout=guidance.get("training_dropout", 0.0), cfg_coef=guidance.get("inference_coef", 1.0),
                     attribute_dropout=attribute_dropout, dtype=dtype, device="meta" if meta else device, **kwargs)
    return lm if meta else lm.to(device)


def get_debug_lm_model(device: tp.Union[str, torch.device] = "cpu") -> LMModel:
    """A tiny randomly initialised LM for tests: 4 codebooks of 400 codes, dim 16, 2 layers of 4 heads,
    delay pattern, cross-attention on a look-up-table ``description`` conditioner. Eval mode."""
    from ..modules.conditioners import ConditionFuser, ConditioningProvider, LUTConditioner

    dim = 16
    provider = ConditioningProvider({"description": LUTConditioner(n_bins=128, dim=dim, output_dim=dim,
                                                                   tokenizer="whitespace")})
    fuser = ConditionFuser({"cross": ["description"], "prepend": [], "sum": [], "input_interpolate": []})
    lm = LMModel(DelayedPatternProvider(n_q=4), provider, fuser, n_q=4, card=400, dim=dim, num_heads=4,
                 num_layers=2, custom=True, cross_attention=True, causal=True)
    return lm.to(device).eval()
