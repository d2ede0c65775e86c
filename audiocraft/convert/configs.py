"""Model configurations for the checkpoint conversion: Audiocraft ``xp.cfg`` <-> transformers configs.

Reading an ``xp.cfg`` gives an :class:`LMSpec` (language model and conditioners) and the keyword arguments of
transformers' ``EncodecConfig``; every option transformers' MusicGen cannot express (rotary embeddings, biases,
another codebook pattern, ...) raises :class:`ConversionError` naming it. Stereo models (``channels: 2``, codebooks
interleaved per level, delays ``[0, 0, 1, 1, ...]``) map to transformers' ``audio_channels=2``. The way back writes a
``xp.cfg`` in the official Hydra layout (the sections Audiocraft's builders read), starting from a built-in
template or from the ``xp.cfg`` of an existing checkpoint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
import typing as tp

import omegaconf
from omegaconf import OmegaConf

from ..models.builders import TransformerLMConfig
from .weights import ConversionError

MELODY_PREPEND = ["self_wav", "description"]  # transformer input: [chroma, text, audio tokens]


@dataclass
class MelodySpec:
    """The chroma conditioner of a melody model."""
    n_chroma: int
    radix2_exp: int
    chroma_len: int


@dataclass
class LMSpec:
    """What a MusicGen language model is, in terms both formats share."""
    dim: int
    num_heads: int
    num_layers: int
    ffn_dim: int
    n_q: int
    card: int
    activation: str
    dropout: float
    t5_name: str
    t5_finetune: bool
    cfg_coef: float
    segment_duration: float
    sample_rate: int
    melody: tp.Optional[MelodySpec] = None
    audio_channels: int = 1  # 2: stereo, the left / right codebooks interleaved ([q0_L, q0_R, q1_L, ...])


def _plain(cfg: omegaconf.DictConfig, key: str) -> tp.Any:
    """``cfg.<key>`` (dotted) as plain python with interpolations resolved against the root; None if absent."""
    node = OmegaConf.select(cfg, key, default=None)
    if isinstance(node, (omegaconf.DictConfig, omegaconf.ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _require(value: tp.Any, allowed: tp.Any, name: str, to_audiocraft: bool = False) -> None:
    if value != allowed:
        where = "Audiocraft's MusicGen" if to_audiocraft else "transformers' MusicGen"
        raise ConversionError(f"{name}={value!r} cannot be expressed in {where} (needs {allowed!r})")


def chroma_frames(sample_rate: int, duration: float, radix2_exp: int) -> int:
    """Chroma frames of ``duration`` seconds (centred frames, hop n_fft / 4, input padded to n_fft at least)."""
    n_fft = 2 ** radix2_exp
    samples = max(int(sample_rate * duration), n_fft)
    return samples // (n_fft // 4) + 1


# ---------------------------------------------------------------------------------------------- xp.cfg -> spec
def lm_spec_from_cfg(cfg: omegaconf.DictConfig) -> LMSpec:
    """Check an LM ``xp.cfg`` and read what transformers needs; raises ConversionError on anything else."""
    if _plain(cfg, "lm_model") != "transformer_lm":
        raise ConversionError(f"lm_model={_plain(cfg, 'lm_model')!r}: only 'transformer_lm' (MusicGen) converts")
    try:  # the builder's own reading of the section: the same keys, defaults and errors
        config = TransformerLMConfig.from_dict(_plain(cfg, "transformer_lm") or {})
    except ValueError as err:
        raise ConversionError(str(err)) from err
    tl = dataclasses.asdict(config)
    for key, allowed in [("norm", "layer_norm"), ("norm_first", True), ("bias_ff", False), ("bias_attn", False),
                         ("bias_proj", False), ("past_context", None), ("causal", True), ("layer_scale", None),
                         ("positional_embedding", "sin"), ("xpos", False), ("qk_layer_norm", False),
                         ("qk_layer_norm_cross", False), ("kv_repeat", 1), ("positional_scale", 1.0),
                         ("max_period", 10000)]:
        _require(tl[key], allowed, f"transformer_lm.{key}")
    if tl["activation"] not in ("gelu", "relu"):
        raise ConversionError(f"transformer_lm.activation={tl['activation']!r} cannot be expressed in transformers' "
                              "MusicGen (allowed: 'gelu', 'relu')")
    dim, num_heads, n_q = int(tl["dim"]), int(tl["num_heads"]), int(tl["n_q"])
    if dim % num_heads:
        raise ConversionError(f"transformer_lm.dim={dim} is not a multiple of num_heads={num_heads}")

    channels = _audio_channels(cfg, n_q)
    pattern = _plain(cfg, "codebooks_pattern") or {}
    _require(pattern.get("modeling"), "delay", "codebooks_pattern.modeling")
    delays = stereo_delays(n_q) if channels == 2 else list(range(n_q))
    delay = {"delays": delays, "flatten_first": 0, "empty_initial": 0, **(pattern.get("delay") or {})}
    _require(list(delay["delays"]), delays, "codebooks_pattern.delay.delays")
    _require(delay["flatten_first"], 0, "codebooks_pattern.delay.flatten_first")
    _require(delay["empty_initial"], 0, "codebooks_pattern.delay.empty_initial")

    fuser = {"sum": [], "prepend": [], "cross": [], "input_interpolate": [], "cross_attention_pos_emb": False,
             **(_plain(cfg, "fuser") or {})}
    _require(fuser["sum"] or [], [], "fuser.sum")
    _require(fuser["input_interpolate"] or [], [], "fuser.input_interpolate")
    if fuser["cross"]:
        _require(fuser["cross_attention_pos_emb"], False, "fuser.cross_attention_pos_emb")
    conditioners = {k: v for k, v in (_plain(cfg, "conditioners") or {}).items() if k != "args"}
    melody: tp.Optional[MelodySpec] = None
    duration = float(_plain(cfg, "dataset.segment_duration") or 30)
    sample_rate = int(_plain(cfg, "sample_rate") or 32000)
    if list(fuser["cross"] or []) == ["description"] and not fuser["prepend"]:
        expected = {"description"}
    elif not fuser["cross"] and sorted(fuser["prepend"] or []) == sorted(MELODY_PREPEND):
        expected = set(MELODY_PREPEND)
    else:
        raise ConversionError(f"fuser cross={fuser['cross']} prepend={fuser['prepend']}: only text models "
                              "(cross=['description']) and melody models (prepend=['self_wav', 'description']) "
                              "convert")
    if set(conditioners) != expected:
        raise ConversionError(f"conditioners {sorted(conditioners)}: expected exactly {sorted(expected)}")
    text = conditioners["description"]
    _require(text.get("model"), "t5", "conditioners.description.model")
    t5 = text.get("t5") or {}
    if "self_wav" in expected:
        wav = conditioners["self_wav"]
        _require(wav.get("model"), "chroma_stem", "conditioners.self_wav.model")
        chroma = wav.get("chroma_stem") or {}
        _require(chroma.get("argmax", False), True, "conditioners.self_wav.chroma_stem.argmax")
        radix2_exp = int(chroma.get("radix2_exp", 12))
        chroma_rate = int(chroma.get("sample_rate", sample_rate))
        melody = MelodySpec(n_chroma=int(chroma.get("n_chroma", 12)), radix2_exp=radix2_exp,
                            chroma_len=chroma_frames(chroma_rate, duration, radix2_exp))
    guidance = _plain(cfg, "classifier_free_guidance") or {}
    hidden = float(tl["hidden_scale"]) * dim
    return LMSpec(dim=dim, num_heads=num_heads, num_layers=int(tl["num_layers"]), ffn_dim=int(hidden), n_q=n_q,
                  card=int(tl["card"]), activation=str(tl["activation"]), dropout=float(tl["dropout"] or 0.0),
                  t5_name=str(t5.get("name")), t5_finetune=bool(t5.get("finetune", False)),
                  cfg_coef=float(guidance.get("inference_coef", 3.0)), segment_duration=duration,
                  sample_rate=sample_rate, melody=melody, audio_channels=channels)


def stereo_delays(n_q: int) -> tp.List[int]:
    """Delays of a stereo model's interleaved codebooks: left and right of level k share delay k."""
    return [k // 2 for k in range(n_q)]


def _audio_channels(cfg: omegaconf.DictConfig, n_q: int) -> int:
    """1, or 2 for a stereo model (channels 2 with codebooks interleaved per level, as transformers expects)."""
    channels = int(_plain(cfg, "channels") or 1)
    stereo = _plain(cfg, "interleave_stereo_codebooks") or {}
    if channels == 1 and not stereo.get("use", False):
        return 1
    _require(channels, 2, "channels")
    _require(bool(stereo.get("use", False)), True, "interleave_stereo_codebooks.use")
    _require(bool(stereo.get("per_timestep", False)), False, "interleave_stereo_codebooks.per_timestep")
    if n_q % 2:
        raise ConversionError(f"transformer_lm.n_q={n_q}: a stereo model interleaves an even number of codebooks")
    return 2


def encodec_kwargs_from_cfg(cfg: omegaconf.DictConfig) -> tp.Dict[str, tp.Any]:
    """Check a compression ``xp.cfg`` (EnCodec with SEANet and RVQ) and return ``EncodecConfig`` keyword
    arguments, plus ``'n_q'`` (codebooks of the codec)."""
    _require(_plain(cfg, "compression_model"), "encodec", "compression_model")
    encodec = _plain(cfg, "encodec") or {}
    _require(encodec.get("autoencoder"), "seanet", "encodec.autoencoder")
    _require(encodec.get("quantizer"), "rvq", "encodec.quantizer")
    seanet = dict(_plain(cfg, "seanet") or {})
    enc_override = seanet.pop("encoder", None) or {}
    dec_override = seanet.pop("decoder", None) or {}
    enc = {**seanet, **enc_override}
    dec = {**seanet, **dec_override}
    trim = float(dec.pop("trim_right_ratio", 1.0))
    for side in (enc, dec):
        side.pop("trim_right_ratio", None)
        for key in ("final_activation", "final_activation_params"):
            if side.pop(key, None) is not None:
                raise ConversionError(f"seanet.decoder.{key} is set: transformers' EnCodec has no final activation")
    if enc != dec:
        diff = sorted(k for k in set(enc) | set(dec) if enc.get(k) != dec.get(k))
        raise ConversionError(f"seanet encoder and decoder options differ ({diff}): transformers' EnCodec shares them")
    _require(enc.get("norm"), "weight_norm", "seanet.norm")
    _require(enc.get("norm_params") or {}, {}, "seanet.norm_params")
    _require(enc.get("activation", "ELU"), "ELU", "seanet.activation")
    _require(float((enc.get("activation_params") or {"alpha": 1.0}).get("alpha", 1.0)), 1.0,
             "seanet.activation_params.alpha")
    _require(enc.get("disable_norm_outer_blocks", 0), 0, "seanet.disable_norm_outer_blocks")
    if int(enc.get("lstm", 0)) < 1:
        raise ConversionError(f"seanet.lstm={enc.get('lstm')!r}: transformers' EnCodec always has an LSTM")
    rvq = _plain(cfg, "rvq") or {}
    for key in ("input_dimension", "output_dimension"):
        if rvq.get(key) not in (None, enc["dimension"]):
            raise ConversionError(f"rvq.{key}={rvq[key]!r}: projections around the quantizer are not supported")
    causal = bool(encodec.get("causal", enc.get("causal", False)))
    return {"sampling_rate": int(encodec["sample_rate"]), "audio_channels": int(encodec["channels"]),
            "normalize": bool(encodec.get("renormalize", False)), "chunk_length_s": None, "overlap": None,
            "hidden_size": int(enc["dimension"]), "num_filters": int(enc["n_filters"]),
            "num_residual_layers": int(enc.get("n_residual_layers", 1)),
            "upsampling_ratios": [int(r) for r in enc["ratios"]], "norm_type": "weight_norm",
            "kernel_size": int(enc.get("kernel_size", 7)), "last_kernel_size": int(enc.get("last_kernel_size", 7)),
            "residual_kernel_size": int(enc.get("residual_kernel_size", 3)),
            "dilation_growth_rate": int(enc.get("dilation_base", 2)), "use_causal_conv": causal,
            "pad_mode": str(enc.get("pad_mode", "reflect")), "compress": int(enc.get("compress", 2)),
            "num_lstm_layers": int(enc["lstm"]), "trim_right_ratio": trim, "codebook_size": int(rvq["bins"]),
            "codebook_dim": int(enc["dimension"]), "use_conv_shortcut": not bool(enc.get("true_skip", True)),
            "n_q": int(rvq["n_q"])}


def target_bandwidths(n_qs: tp.Sequence[int], frame_rate: float, codebook_size: int) -> tp.List[float]:
    """kbps of each number of codebooks, as transformers' EnCodec derives codebook counts from them."""
    bits = math.ceil(math.log2(codebook_size))
    out = []
    for n_q in sorted(set(n_qs)):
        bandwidth = round(n_q * frame_rate * bits / 1000, 9)
        if int(1000 * bandwidth // (frame_rate * bits)) != n_q:
            bandwidth += 1e-9
        out.append(bandwidth)
    return out


# ---------------------------------------------------------------------------------------------- spec -> xp.cfg
LM_TEMPLATE: tp.Dict[str, tp.Any] = {
    "device": "cuda", "dtype": "float32", "autocast": False, "autocast_dtype": "float16", "solver": "musicgen",
    "sample_rate": 32000, "channels": 1, "dataset": {"segment_duration": 30}, "lm_model": "transformer_lm",
    "classifier_free_guidance": {"training_dropout": 0.3, "inference_coef": 3.0},
    "attribute_dropout": {},
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
              "cross": ["description"], "input_interpolate": []},
    "conditioners": {"description": {"model": "t5",
                                     "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.3,
                                            "normalize_text": False}}},
    "interleave_stereo_codebooks": {"use": False, "per_timestep": False},
    "codebooks_pattern": {"modeling": "delay",
                          "delay": {"delays": [0, 1, 2, 3], "flatten_first": 0, "empty_initial": 0}},
    "transformer_lm": {"dim": 1024, "num_heads": 16, "num_layers": 24, "hidden_scale": 4, "n_q": 4, "card": 2048,
                       "dropout": 0.0, "emb_lr": None, "activation": "gelu", "norm_first": True, "bias_ff": False,
                       "bias_attn": False, "bias_proj": False, "past_context": None, "causal": True,
                       "custom": False, "memory_efficient": True, "attention_as_float32": False,
                       "layer_scale": None, "positional_embedding": "sin", "xpos": False, "checkpointing": "none",
                       "weight_init": "gaussian", "depthwise_init": "current", "zero_bias_init": True,
                       "norm": "layer_norm", "cross_attention": False, "qk_layer_norm": False,
                       "qk_layer_norm_cross": False, "attention_dropout": None, "kv_repeat": 1,
                       "two_step_cfg": False},
}
MELODY_TEMPLATE: tp.Dict[str, tp.Any] = {
    "classifier_free_guidance": {"training_dropout": 0.2, "inference_coef": 3.0},
    "attribute_dropout": {"args": {"active_on_eval": False}, "text": {}, "wav": {"self_wav": 0.5}},
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [],
              "prepend": list(MELODY_PREPEND), "cross": [], "input_interpolate": []},
    "conditioners": {"self_wav": {"model": "chroma_stem",
                                  "chroma_stem": {"sample_rate": "${sample_rate}", "n_chroma": 12, "radix2_exp": 14,
                                                  "argmax": True, "match_len_on_eval": False, "eval_wavs": None,
                                                  "n_eval_wavs": 100, "cache_path": None}},
                     "description": {"model": "t5", "t5": {"name": "t5-base", "finetune": False,
                                                           "word_dropout": 0.2, "normalize_text": False}}},
}
COMPRESSION_TEMPLATE: tp.Dict[str, tp.Any] = {
    "device": "cuda", "dtype": "float32", "autocast": False, "solver": "compression", "sample_rate": 32000,
    "channels": 1, "compression_model": "encodec",
    "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": "${sample_rate}",
                "channels": "${channels}", "causal": False, "renormalize": False},
    "seanet": {"dimension": 128, "channels": "${channels}", "causal": "${encodec.causal}", "n_filters": 64,
               "n_residual_layers": 1, "ratios": [8, 5, 4, 4], "activation": "ELU",
               "activation_params": {"alpha": 1.0}, "norm": "weight_norm", "norm_params": {}, "kernel_size": 7,
               "residual_kernel_size": 3, "last_kernel_size": 7, "dilation_base": 2, "pad_mode": "constant",
               "true_skip": True, "compress": 2, "lstm": 2, "disable_norm_outer_blocks": 0,
               "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
               "encoder": {}},
    "rvq": {"n_q": 4, "q_dropout": False, "bins": 2048, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
            "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0, "orthogonal_reg_active_codes_only": False},
}


def _number(value: float) -> tp.Union[int, float]:
    return int(value) if float(value).is_integer() else float(value)


def _apply(cfg: omegaconf.DictConfig, overrides: tp.Mapping[str, tp.Any]) -> omegaconf.DictConfig:
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def lm_cfg(spec: LMSpec, template: tp.Optional[omegaconf.DictConfig] = None) -> omegaconf.DictConfig:
    """The LM ``xp.cfg`` of ``spec`` (interpolations kept), made from ``template`` (an LM ``xp.cfg`` of the same
    kind, text or melody, MODIFIED in place) or the built-in one; only the keys of ``spec`` are overridden."""
    if template is None:
        template = OmegaConf.create(LM_TEMPLATE)
        if spec.melody is not None:
            for key, value in MELODY_TEMPLATE.items():  # whole sections (the official key order)
                template[key] = OmegaConf.create(value)
    else:
        is_melody = "self_wav" in (_plain(template, "conditioners") or {})
        if is_melody != (spec.melody is not None):
            kinds = ("melody", "text") if is_melody else ("text", "melody")
            raise ConversionError(f"the template is a {kinds[0]} model but the converted model is a {kinds[1]} "
                                  "model; give a template of the same kind")
    stereo = spec.audio_channels == 2
    overrides: tp.Dict[str, tp.Any] = {
        "lm_model": "transformer_lm", "sample_rate": spec.sample_rate, "channels": spec.audio_channels,
        "interleave_stereo_codebooks.use": stereo, "interleave_stereo_codebooks.per_timestep": False,
        "dataset.segment_duration": _number(spec.segment_duration),
        "classifier_free_guidance.inference_coef": float(spec.cfg_coef),
        "codebooks_pattern.modeling": "delay",
        "codebooks_pattern.delay.delays": stereo_delays(spec.n_q) if stereo else list(range(spec.n_q)),
        "transformer_lm.dim": spec.dim, "transformer_lm.num_heads": spec.num_heads,
        "transformer_lm.num_layers": spec.num_layers, "transformer_lm.hidden_scale": _number(spec.ffn_dim / spec.dim),
        "transformer_lm.n_q": spec.n_q, "transformer_lm.card": spec.card, "transformer_lm.activation": spec.activation,
        "transformer_lm.dropout": float(spec.dropout),
        "conditioners.description.model": "t5", "conditioners.description.t5.name": spec.t5_name,
        "conditioners.description.t5.finetune": spec.t5_finetune,
    }
    if spec.melody is not None:
        overrides.update({"conditioners.self_wav.model": "chroma_stem",
                          "conditioners.self_wav.chroma_stem.n_chroma": spec.melody.n_chroma,
                          "conditioners.self_wav.chroma_stem.radix2_exp": spec.melody.radix2_exp,
                          "conditioners.self_wav.chroma_stem.argmax": True})
    return _apply(template, overrides)


def compression_cfg(kwargs: tp.Mapping[str, tp.Any],
                    template: tp.Optional[omegaconf.DictConfig] = None) -> omegaconf.DictConfig:
    """The compression ``xp.cfg`` (interpolations kept) for ``EncodecConfig`` keyword arguments ``kwargs`` (plus
    ``'n_q'``), made from ``template`` (a compression ``xp.cfg``, MODIFIED in place) or the built-in one."""
    base = OmegaConf.create(COMPRESSION_TEMPLATE) if template is None else template
    overrides = {
        "compression_model": "encodec", "sample_rate": kwargs["sampling_rate"], "channels": kwargs["audio_channels"],
        "encodec.autoencoder": "seanet", "encodec.quantizer": "rvq", "encodec.sample_rate": "${sample_rate}",
        "encodec.channels": "${channels}", "encodec.causal": kwargs["use_causal_conv"],
        "encodec.renormalize": kwargs["normalize"],
        "seanet.channels": "${channels}", "seanet.causal": "${encodec.causal}",
        "seanet.dimension": kwargs["hidden_size"], "seanet.n_filters": kwargs["num_filters"],
        "seanet.n_residual_layers": kwargs["num_residual_layers"], "seanet.ratios": list(kwargs["upsampling_ratios"]),
        "seanet.norm": "weight_norm", "seanet.kernel_size": kwargs["kernel_size"],
        "seanet.residual_kernel_size": kwargs["residual_kernel_size"],
        "seanet.last_kernel_size": kwargs["last_kernel_size"], "seanet.dilation_base": kwargs["dilation_growth_rate"],
        "seanet.pad_mode": kwargs["pad_mode"], "seanet.true_skip": not kwargs["use_conv_shortcut"],
        "seanet.compress": kwargs["compress"], "seanet.lstm": kwargs["num_lstm_layers"],
        "seanet.decoder.trim_right_ratio": float(kwargs["trim_right_ratio"]),
        "rvq.n_q": kwargs["n_q"], "rvq.bins": kwargs["codebook_size"],
    }
    return _apply(base, overrides)


# ---------------------------------------------------------------------------------------------- transformers -> spec
def encodec_kwargs_from_transformers(config: tp.Mapping[str, tp.Any]) -> tp.Dict[str, tp.Any]:
    """``EncodecConfig.to_dict()`` -> the keyword arguments :func:`compression_cfg_yaml` takes (with ``n_q``)."""
    from transformers import EncodecConfig
    enc = EncodecConfig(**{k: v for k, v in config.items() if k != "model_type"})
    _require(enc.norm_type, "weight_norm", "audio_encoder.norm_type", to_audiocraft=True)
    _require(enc.chunk_length_s, None, "audio_encoder.chunk_length_s", to_audiocraft=True)
    _require(enc.codebook_dim, enc.hidden_size, "audio_encoder.codebook_dim", to_audiocraft=True)
    keys = ["sampling_rate", "audio_channels", "normalize", "hidden_size", "num_filters", "num_residual_layers",
            "upsampling_ratios", "kernel_size", "last_kernel_size", "residual_kernel_size", "dilation_growth_rate",
            "use_causal_conv", "pad_mode", "compress", "num_lstm_layers", "trim_right_ratio", "codebook_size",
            "use_conv_shortcut"]
    out = {key: getattr(enc, key) for key in keys}
    out["n_q"] = enc.num_quantizers
    return out


def lm_spec_from_transformers(config: tp.Any, generation: tp.Mapping[str, tp.Any], t5_name: str,
                              keep_t5: bool, radix2_exp: int = 14) -> LMSpec:
    """A transformers ``MusicgenConfig`` / ``MusicgenMelodyConfig`` -> :class:`LMSpec`."""
    dec = config.decoder
    if dec.audio_channels not in (1, 2) or int(dec.num_codebooks) % dec.audio_channels:
        raise ConversionError(f"decoder.audio_channels={dec.audio_channels!r} with num_codebooks="
                              f"{dec.num_codebooks} cannot be expressed in Audiocraft's MusicGen (1, or 2 with an "
                              "even number of codebooks)")
    _require(bool(dec.scale_embedding), False, "decoder.scale_embedding", to_audiocraft=True)
    _require(bool(dec.tie_word_embeddings), False, "decoder.tie_word_embeddings", to_audiocraft=True)
    _require(dec.pad_token_id, dec.vocab_size, "decoder.pad_token_id", to_audiocraft=True)
    if dec.activation_function not in ("gelu", "relu"):
        raise ConversionError(f"decoder.activation_function={dec.activation_function!r} cannot be expressed in "
                              "Audiocraft's MusicGen (allowed: 'gelu', 'relu')")
    if getattr(dec, "cross_attention_hidden_size", None) is not None:
        raise ConversionError("decoder.cross_attention_hidden_size is set: Audiocraft always projects the text "
                              "encoder output (enc_to_dec_proj)")
    sample_rate = int(config.audio_encoder.sampling_rate)
    frame_rate = config.audio_encoder.frame_rate
    max_length = generation.get("max_length")
    duration = round(max_length / frame_rate, 6) if max_length and max_length > 20 else 30.0
    melody = None
    if config.model_type == "musicgen_melody":
        melody = MelodySpec(n_chroma=int(config.num_chroma), radix2_exp=radix2_exp,
                            chroma_len=int(config.chroma_length))
        expected = chroma_frames(sample_rate, duration, radix2_exp)
        if expected != melody.chroma_len:
            raise ConversionError(f"chroma_length={melody.chroma_len} does not match {duration} s of audio "
                                  f"({expected} chroma frames); generation_config.max_length={max_length}")
    return LMSpec(dim=int(dec.hidden_size), num_heads=int(dec.num_attention_heads),
                  num_layers=int(dec.num_hidden_layers), ffn_dim=int(dec.ffn_dim), n_q=int(dec.num_codebooks),
                  card=int(dec.vocab_size), activation=str(dec.activation_function), dropout=float(dec.dropout),
                  t5_name=t5_name, t5_finetune=keep_t5, cfg_coef=float(generation.get("guidance_scale") or 3.0),
                  segment_duration=duration, sample_rate=sample_rate, melody=melody,
                  audio_channels=int(dec.audio_channels))


def expected_lm_keys(spec: LMSpec) -> tp.Set[str]:
    """The keys of an Audiocraft LM state dict for ``spec`` (without fine-tuned T5 weights)."""
    keys = {"out_norm.weight", "out_norm.bias", "condition_provider.conditioners.description.output_proj.weight",
            "condition_provider.conditioners.description.output_proj.bias"}
    keys |= {f"emb.{k}.weight" for k in range(spec.n_q)} | {f"linears.{k}.weight" for k in range(spec.n_q)}
    parts = ["self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight",
             "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    if spec.melody is None:
        parts += ["cross_attention.in_proj_weight", "cross_attention.out_proj.weight", "norm_cross.weight",
                  "norm_cross.bias"]
    else:
        keys |= {"condition_provider.conditioners.self_wav.output_proj.weight",
                 "condition_provider.conditioners.self_wav.output_proj.bias",
                 "condition_provider.conditioners.self_wav.chroma.spec.window"}
    keys |= {f"transformer.layers.{i}.{part}" for i in range(spec.num_layers) for part in parts}
    return keys
