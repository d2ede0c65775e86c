"""Weight names of MusicGen in the Audiocraft layout and in Hugging Face transformers' layout, both ways.

Pure functions from one flat state dict to the other; tensors are never recomputed (only split or
concatenated), so a round trip gives back bit-identical tensors. Every key must be known: an unknown one
raises :class:`ConversionError` naming it.

Audiocraft name (LM ``state_dict.bin``)                  transformers name
- ``emb.{k}`` / ``linears.{k}`` / ``out_norm``            ``decoder.model.decoder.embed_tokens.{k}`` /
                                                          ``decoder.lm_heads.{k}`` /
                                                          ``decoder.model.decoder.layer_norm``
- ``transformer.layers.{i}.self_attn.in_proj_weight``     ``decoder.model.decoder.layers.{i}.self_attn.q_proj``,
  [3D, D] = cat(q, k, v)                                  ``k_proj``, ``v_proj`` [D, D] each
- ``cross_attention`` / ``linear1``, ``linear2`` /        ``encoder_attn`` / ``fc1``, ``fc2`` /
  ``norm1``, ``norm_cross``, ``norm2``                    ``self_attn_layer_norm``, ``encoder_attn_layer_norm``,
                                                          ``final_layer_norm``
- ``condition_provider.conditioners.description.``        ``enc_to_dec_proj``
  ``output_proj``
- ``condition_provider.conditioners.self_wav.``           ``audio_enc_to_dec_proj`` (melody)
  ``output_proj``
- ``condition_provider.conditioners.description.t5.*``    ``text_encoder.*`` (fine-tuned T5 only)

Audiocraft name (``compression_state_dict.bin``)          transformers name (prefix ``audio_encoder.``)
- ``{encoder,decoder}.model.{i}[.block.{j}].conv.conv``   ``{encoder,decoder}.layers.{i}[.block.{j}].conv``
- ``decoder.model.{i}.convtr.convtr``                     ``decoder.layers.{i}.conv``
- ``weight_g`` / ``weight_v`` (old ``weight_norm``)       ``parametrizations.weight.original0`` / ``original1``
- ``{encoder,decoder}.model.{i}.lstm``                    ``{encoder,decoder}.layers.{i}.lstm``
- ``quantizer.vq.layers.{q}._codebook.{embed,...}``       ``quantizer.layers.{q}.codebook.{embed,...}``
"""
from __future__ import annotations

import re
import typing as tp

import torch

StateDict = tp.Dict[str, torch.Tensor]

LM_PREFIX = "decoder.model.decoder."
AUDIO_PREFIX = "audio_encoder."
TEXT_PREFIX = "text_encoder."
T5_KEY = "condition_provider.conditioners.description.t5."
CHROMA_WINDOW_KEY = "condition_provider.conditioners.self_wav.chroma.spec.window"


class ConversionError(ValueError):
    """A checkpoint cannot be converted: unsupported architecture or options, unknown or missing weights."""


_PLACEHOLDERS = {
    "i": r"\d+",
    "p": r"weight|bias",
    "path": r"\d+(?:\.block\.\d+|\.shortcut)?",
    "side": r"encoder|decoder",
    "lstm": r"(?:weight|bias)_(?:ih|hh)_l\d+",
    "buf": r"inited|cluster_size|embed|embed_avg",
}

# (Audiocraft name, transformers name); {placeholders} match the same text on both sides.
_LM_RULES = [
    ("emb.{i}.weight", LM_PREFIX + "embed_tokens.{i}.weight"),
    ("linears.{i}.weight", "decoder.lm_heads.{i}.weight"),
    ("out_norm.{p}", LM_PREFIX + "layer_norm.{p}"),
    ("transformer.layers.{i}.self_attn.out_proj.weight", LM_PREFIX + "layers.{i}.self_attn.out_proj.weight"),
    ("transformer.layers.{i}.cross_attention.out_proj.weight",
     LM_PREFIX + "layers.{i}.encoder_attn.out_proj.weight"),
    ("transformer.layers.{i}.linear1.weight", LM_PREFIX + "layers.{i}.fc1.weight"),
    ("transformer.layers.{i}.linear2.weight", LM_PREFIX + "layers.{i}.fc2.weight"),
    ("transformer.layers.{i}.norm1.{p}", LM_PREFIX + "layers.{i}.self_attn_layer_norm.{p}"),
    ("transformer.layers.{i}.norm_cross.{p}", LM_PREFIX + "layers.{i}.encoder_attn_layer_norm.{p}"),
    ("transformer.layers.{i}.norm2.{p}", LM_PREFIX + "layers.{i}.final_layer_norm.{p}"),
    ("condition_provider.conditioners.description.output_proj.{p}", "enc_to_dec_proj.{p}"),
    ("condition_provider.conditioners.self_wav.output_proj.{p}", "audio_enc_to_dec_proj.{p}"),
]
# Packed attention projections: Audiocraft's in_proj_weight [3D, D] = cat(q, k, v) of transformers.
_PACKED_RULES = [
    ("transformer.layers.{i}.self_attn.in_proj_weight", LM_PREFIX + "layers.{i}.self_attn.{qkv}_proj.weight"),
    ("transformer.layers.{i}.cross_attention.in_proj_weight",
     LM_PREFIX + "layers.{i}.encoder_attn.{qkv}_proj.weight"),
]
_WN = "parametrizations.weight.original"
_CODEC_RULES = [
    ("{side}.model.{path}.conv.conv.bias", "{side}.layers.{path}.conv.bias"),
    ("{side}.model.{path}.conv.conv.weight_g", "{side}.layers.{path}.conv." + _WN + "0"),
    ("{side}.model.{path}.conv.conv.weight_v", "{side}.layers.{path}.conv." + _WN + "1"),
    ("{side}.model.{i}.lstm.{lstm}", "{side}.layers.{i}.lstm.{lstm}"),
    ("quantizer.vq.layers.{i}._codebook.{buf}", "quantizer.layers.{i}.codebook.{buf}"),
]
# Transposed convolutions of the decoder: transformers names them like the plain ones (``conv``), so going
# back needs their layer indices (see :func:`transposed_conv_layers`).
_CODEC_TR_RULES = [
    ("decoder.model.{i}.convtr.convtr.bias", "decoder.layers.{i}.conv.bias"),
    ("decoder.model.{i}.convtr.convtr.weight_g", "decoder.layers.{i}.conv." + _WN + "0"),
    ("decoder.model.{i}.convtr.convtr.weight_v", "decoder.layers.{i}.conv." + _WN + "1"),
]


def _pattern(template: str) -> "re.Pattern[str]":
    parts = re.split(r"\{(\w+)\}", template)
    regex = ""
    for index, part in enumerate(parts):
        regex += f"(?P<{part}>{_PLACEHOLDERS[part]})" if index % 2 else re.escape(part)
    return re.compile(regex + "$")


_RuleList = tp.Sequence[tp.Tuple["re.Pattern[str]", str]]


class _Rules:
    """Name rules usable both ways: ``forward`` (Audiocraft -> transformers) and ``backward``."""

    def __init__(self, rules: tp.Sequence[tp.Tuple[str, str]]) -> None:
        self.forward = [(_pattern(src), dst) for src, dst in rules]
        self.backward = [(_pattern(dst), src) for src, dst in rules]

    @staticmethod
    def apply(rules: _RuleList, name: str) -> tp.Optional[str]:
        for regex, target in rules:
            match = regex.match(name)
            if match:
                return target.format(**match.groupdict())
        return None


_LM = _Rules(_LM_RULES)
_CODEC = _Rules(_CODEC_RULES)
_CODEC_TR = _Rules(_CODEC_TR_RULES)
_PACKED_FORWARD = [(_pattern(src), dst) for src, dst in _PACKED_RULES]
_PACKED_BACKWARD = [(_pattern(dst.replace("{qkv}", "q")), src, dst) for src, dst in _PACKED_RULES]


def few_names(names: tp.Iterable[str], limit: int = 6) -> str:
    """The first ``limit`` sorted names, comma-separated, with a count of the rest."""
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _rename(state: tp.Mapping[str, torch.Tensor], rules: tp.Callable[[str], "_RuleList"], what: str) -> StateDict:
    """Every tensor of ``state`` under the name its rules give; a name no rule matches is a ConversionError."""
    out: StateDict = {}
    unknown = []
    for name, tensor in state.items():
        target = _Rules.apply(rules(name), name)
        if target is None:
            unknown.append(name)
        else:
            out[target] = tensor
    _unknown(unknown, what)
    return out


def _unknown(names: tp.Iterable[str], what: str) -> None:
    names = list(names)
    if names:
        raise ConversionError(f"{len(names)} {what} key(s) cannot be converted: {few_names(names)}")


# ---------------------------------------------------------------------------------------------- Audiocraft -> HF
def lm_to_transformers(state: tp.Mapping[str, torch.Tensor]) -> tp.Tuple[StateDict, StateDict]:
    """Audiocraft LM weights -> (transformers weights, fine-tuned T5 weights without prefix or {}).

    The melody chroma window (a fixed Hann window, not a weight in transformers) is dropped; packed
    ``in_proj_weight`` [3D, D] tensors are split into ``q_proj`` / ``k_proj`` / ``v_proj`` [D, D].
    """
    out: StateDict = {}
    t5: StateDict = {}
    unknown = []
    for name, tensor in state.items():
        if name == CHROMA_WINDOW_KEY:
            continue
        if name.startswith(T5_KEY):
            t5[name[len(T5_KEY):]] = tensor
            continue
        target = _Rules.apply(_LM.forward, name)
        if target is not None:
            out[target] = tensor
            continue
        for regex, template in _PACKED_FORWARD:
            match = regex.match(name)
            if match:
                if tensor.dim() != 2 or tensor.shape[0] % 3:
                    raise ConversionError(f"'{name}' must be [3 * dim, dim], got {list(tensor.shape)}")
                for letter, part in zip("qkv", tensor.chunk(3, dim=0)):
                    out[template.format(qkv=letter, **match.groupdict())] = part.clone()
                break
        else:
            unknown.append(name)
    _unknown(unknown, "language model")
    return out, t5


def codec_to_transformers(state: tp.Mapping[str, torch.Tensor]) -> StateDict:
    """Audiocraft EnCodec weights -> transformers ``EncodecModel`` weights (without the ``audio_encoder.``
    prefix). ``weight_g`` / ``weight_v`` become ``parametrizations.weight.original0`` / ``original1``."""
    return _rename(state, lambda _: _CODEC.forward + _CODEC_TR.forward, "compression model")


def transposed_conv_layers(num_ratios: int, num_residual_layers: int) -> tp.Set[int]:
    """Indices of the transposed convolutions in the SEANet decoder's layer list: conv, LSTM, then per ratio
    ELU, transposed conv and ``num_residual_layers`` residual blocks."""
    first = 3
    return {first + r * (2 + num_residual_layers) for r in range(num_ratios)}


# ---------------------------------------------------------------------------------------------- HF -> Audiocraft
def _legacy_weight_norm(name: str) -> str:
    """transformers files saved with the old ``weight_norm`` use ``conv.weight_g`` / ``conv.weight_v``."""
    if name.endswith(".weight_g"):
        return name[: -len("weight_g")] + _WN + "0"
    if name.endswith(".weight_v"):
        return name[: -len("weight_v")] + _WN + "1"
    return name


def split_transformers_state(state: tp.Mapping[str, torch.Tensor]) -> tp.Tuple[StateDict, StateDict, StateDict]:
    """A ``MusicgenForConditionalGeneration`` state dict -> (LM part, codec part without prefix, T5 part
    without prefix)."""
    lm: StateDict = {}
    codec: StateDict = {}
    t5: StateDict = {}
    for name, tensor in state.items():
        if name.startswith(AUDIO_PREFIX):
            codec[_legacy_weight_norm(name[len(AUDIO_PREFIX):])] = tensor
        elif name.startswith(TEXT_PREFIX):
            t5[name[len(TEXT_PREFIX):]] = tensor
        else:
            lm[name] = tensor
    return lm, codec, t5


def lm_from_transformers(state: tp.Mapping[str, torch.Tensor]) -> StateDict:
    """transformers decoder + projection weights -> Audiocraft LM weights (q/k/v concatenated back)."""
    out: StateDict = {}
    used = set()
    for name, tensor in state.items():
        target = _Rules.apply(_LM.backward, name)
        if target is not None:
            out[target] = tensor
            used.add(name)
    for regex, source, template in _PACKED_BACKWARD:
        for name in state:
            match = regex.match(name)
            if not match:
                continue
            names = [template.format(qkv=letter, **match.groupdict()) for letter in "qkv"]
            missing = [n for n in names if n not in state]
            if missing:
                raise ConversionError(f"attention weights incomplete: missing {few_names(missing)}")
            out[source.format(**match.groupdict())] = torch.cat([state[n] for n in names], dim=0)
            used.update(names)
    _unknown((n for n in state if n not in used), "transformers decoder")
    return out


def codec_from_transformers(state: tp.Mapping[str, torch.Tensor], transposed: tp.Set[int]) -> StateDict:
    """transformers ``EncodecModel`` weights (no prefix) -> Audiocraft EnCodec weights; ``transposed`` holds the
    decoder layer indices of the transposed convolutions."""
    def rules(name: str) -> _RuleList:
        match = re.match(r"decoder\.layers\.(\d+)\.conv\.", name)
        return _CODEC_TR.backward if match and int(match.group(1)) in transposed else _CODEC.backward

    return _rename(state, rules, "transformers EnCodec")
