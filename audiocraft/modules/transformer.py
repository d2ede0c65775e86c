"""Streaming transformer: causal self-attention with a key/value cache, optional cross-attention.

Batch first everywhere: sequences are ``[B, T, C]``. Inside attention, heads are ``[B, H, T, D]``.

Streaming (``with transformer.streaming():``) feeds the sequence chunk by chunk; each chunk sees everything
fed before it. What each module remembers is a typed state:

- self-attention: :class:`KVCacheState`, a key/value cache ``[B, H, capacity, D]`` ALLOCATED ONCE and written
  in place (``allocate_kv_caches`` presizes it; if a caller goes beyond the capacity it grows geometrically,
  or, with ``past_context``, first slides the window back to the front);
- cross-attention: :class:`CrossAttentionState`, the keys/values of the (constant) source, projected on the
  first call of the stream and reused afterwards;
- the transformer: :class:`TransformerState`, the time offset of the next chunk (sinusoidal positions).

The attention product itself is computed by a backend (:mod:`audiocraft.backends.attention`): PyTorch's SDPA by
default, ``attention_backend='xformers'`` for xformers' memory-efficient kernel on CUDA; faster backends for the
same math are plugged in from outside (:meth:`StreamingMultiheadAttention.set_attention_backend`), as are packed
weights for the linear maps (a linear map of a row block of ``in_proj_weight`` goes through
:meth:`StreamingMultiheadAttention.linear_piece`).
Parameter names are Audiocraft's (``self_attn.in_proj_weight``, ``linear1``, ``norm_cross``, ...), whatever
``custom``/``memory_efficient`` say: those two flags select no different code here.
"""
from __future__ import annotations

import dataclasses
import typing as tp
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from ..backends.attention import ATTENTION_BACKENDS, AttentionBackend, get_attention_backend
from .activations import Activation, get_activation_fn, is_gated
from .rope import RotaryEmbedding
from .streaming import StreamingError, StreamingModule, StreamingState
from ..utils.validation import ArgumentError

_CHECKPOINTING = ("none", "torch", "xformers_default", "xformers_mm")
_MIN_CACHE = 32


def set_efficient_attention_backend(backend: str = "torch") -> None:
    """Compatibility shim for Audiocraft's global switch: the backend is now a constructor argument
    (``attention_backend``) of the attention, layer and transformer classes. Does nothing."""
    if backend not in ATTENTION_BACKENDS:
        raise ArgumentError(f"Unknown attention backend {backend!r}; expected one of {tuple(ATTENTION_BACKENDS)}.")
    if backend != "torch":
        warnings.warn("set_efficient_attention_backend is a no-op; pass attention_backend='xformers' to the "
                      "transformer instead.", stacklevel=2)


def create_norm_fn(norm_type: str, dim: int, **kwargs: tp.Any) -> nn.Module:
    """Normalization layer by name: ``'layer_norm'`` (eps 1e-5, Audiocraft's) or ``'rms_norm'`` (eps 1e-5)."""
    if norm_type == "layer_norm":
        return nn.LayerNorm(dim, eps=1e-5, **kwargs)
    if norm_type == "rms_norm":
        return nn.RMSNorm(dim, eps=1e-5, **kwargs)
    raise ArgumentError(f"Unknown norm type {norm_type!r}; expected 'layer_norm' or 'rms_norm'.")


def create_sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of ``positions`` (``[B, T, 1]`` integers) -> ``[B, T, dim]``: the cosines of the
    ``dim / 2`` phases ``pos / max_period ** (i / (dim/2 - 1))`` then their sines (Audiocraft's numerics)."""
    if dim % 2 != 0:
        raise ArgumentError(f"create_sin_embedding needs an even dim, got {dim}.")
    half_dim = dim // 2
    positions = positions.to(dtype)
    adim = torch.arange(half_dim, device=positions.device, dtype=dtype).view(1, 1, -1)
    max_period_tensor = torch.full([], max_period, device=positions.device, dtype=dtype)
    phase = positions / (max_period_tensor ** (adim / (half_dim - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def expand_repeated_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head ``n_rep`` times in a row: ``[B, H, T, D] -> [B, H * n_rep, T, D]``."""
    if n_rep == 1:
        return x
    B, H, T, D = x.shape
    return x[:, :, None].expand(B, H, n_rep, T, D).reshape(B, H * n_rep, T, D)


class LayerScale(nn.Module):
    """Learnt per-channel scale of a residual branch (Touvron et al. 2021), initialised at ``init``.

    ``channel_last``: inputs are ``[*, C]`` (else ``[*, C, T]``)."""

    def __init__(self, channels: int, init: float = 1e-4, channel_last: bool = True,
                 device: tp.Any = None, dtype: tp.Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), init, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x if self.channel_last else self.scale[:, None] * x


# ------------------------------------------------------------------------------------------------ states
@dataclasses.dataclass
class KVCacheState(StreamingState):
    """Self-attention cache: ``keys``/``values`` ``[B, H_kv, capacity, D]``; entries ``[:length]`` are valid and
    hold absolute times ``offset .. offset + length - 1`` (``offset`` > 0 once a ``past_context`` window slid)."""
    keys: torch.Tensor
    values: torch.Tensor
    length: int = 0
    offset: int = 0


@dataclasses.dataclass
class CrossAttentionState(StreamingState):
    """Cross-attention: the source's projected ``keys``/``values`` ``[B, H, S, D]``, computed once per stream."""
    keys: torch.Tensor
    values: torch.Tensor


@dataclasses.dataclass
class TransformerState(StreamingState):
    """Time offset of the next chunk fed to the transformer."""
    offset: int = 0


# ------------------------------------------------------------------------------------------------ attention
_MHA_WEIGHTS = ("in_proj_weight", "in_proj_bias", "out_proj")  # what custom=False reads from its `mha`
# piece name -> (parameter name, first row, end row): the row block of a 2-D Parameter one linear map reads.
WeightPieces = tp.Dict[str, tp.Tuple[str, int, int]]


def linear_activation(linear: nn.Module, x: torch.Tensor,
                      activation: tp.Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``activation(linear(x))``; a linear module that can fuse its activation (``forward_activation``) does, unless
    a forward hook expects the module's own call."""
    fused = getattr(linear, "forward_activation", None)
    if fused is None or linear._forward_hooks or linear._forward_pre_hooks:
        return activation(linear(x))
    return fused(x, activation)


class StreamingMultiheadAttention(StreamingModule):
    """Multi-head attention with streaming, causal masking and an optional finite receptive field.

    Args:
        embed_dim: model dimension ``E``; num_heads: ``H`` (divides ``E``).
        dropout: attention dropout (training only). bias: biases in the projections.
        causal: causal mask (self-attention). past_context: a query at time ``t`` sees keys ``t - past_context
            .. t`` (None: all the past); needs ``causal``.
        custom, memory_efficient: accepted for Audiocraft compatibility; the same SDPA code runs either way.
        attention_as_float32: compute the attention in float32.
        rope: rotary embedding shared with the other layers (self-attention only).
        cross_attention: queries from the input, keys/values from a separate source (constant while streaming).
        safe_streaming: in streaming on CUDA, compute half-precision attention in float32.
        qk_layer_norm: LayerNorm over the ``E`` features of queries and keys.
        kv_repeat: keys/values have ``H / kv_repeat`` heads, each shared by ``kv_repeat`` query heads.
        attention_backend: ``'torch'`` (SDPA) or ``'xformers'`` (used on CUDA when installed); see
            :mod:`audiocraft.backends.attention`.
    Parameters: ``in_proj_weight`` ``[E + 2 * E / kv_repeat, E]`` (q, k, v stacked), ``in_proj_bias``, ``out_proj``.
    The projections are linear maps of row blocks ("pieces") of ``in_proj_weight`` (:meth:`weight_pieces`): one
    piece ``in_proj`` for self-attention, ``q`` and ``kv`` for cross-attention (keys/values are projected once per
    stream, queries at every step); each is computed by :meth:`linear_piece`, which a backend may replace (packed
    CPU weights, :mod:`audiocraft.backends.cpu`).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, past_context: tp.Optional[int] = None, custom: bool = False,
                 memory_efficient: bool = False, attention_as_float32: bool = False,
                 rope: tp.Optional[RotaryEmbedding] = None, cross_attention: bool = False,
                 safe_streaming: bool = True, qk_layer_norm: bool = False, kv_repeat: int = 1,
                 device: tp.Any = None, dtype: tp.Optional[torch.dtype] = None,
                 attention_backend: str = "torch") -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ArgumentError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}.")
        if past_context is not None and not causal:
            raise ArgumentError(f"past_context={past_context} needs causal=True.")
        if cross_attention and (causal or rope is not None):
            raise ArgumentError("cross_attention=True cannot be combined with causal=True or a rope embedding.")
        if kv_repeat < 1 or num_heads % kv_repeat != 0:
            raise ArgumentError(f"kv_repeat={kv_repeat} must be >= 1 and divide num_heads={num_heads}.")
        if kv_repeat > 1 and (cross_attention or qk_layer_norm):
            raise ArgumentError("kv_repeat > 1 is only supported for self-attention without qk_layer_norm.")
        if not (custom or memory_efficient) and (qk_layer_norm or kv_repeat != 1):
            raise ArgumentError("qk_layer_norm and kv_repeat > 1 need custom=True (or memory_efficient=True): "
                                "torch.nn.MultiheadAttention (custom=False) has neither.")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.causal = causal
        self.past_context = past_context
        self.custom = custom or memory_efficient
        self.memory_efficient = memory_efficient
        self.attention_as_float32 = attention_as_float32
        self.rope = rope
        self.cross_attention = cross_attention
        self.safe_streaming = safe_streaming
        self.kv_repeat = kv_repeat
        self.backend: AttentionBackend = get_attention_backend(attention_backend)
        self.state_cls = CrossAttentionState if cross_attention else KVCacheState
        if self.custom:
            kv_dim = self.head_dim * (num_heads // kv_repeat)
            in_proj = nn.Linear(embed_dim, embed_dim + 2 * kv_dim, bias=bias, **factory)
            self.in_proj_weight = in_proj.weight
            self.in_proj_bias = in_proj.bias
            if self.in_proj_bias is not None:
                nn.init.zeros_(self.in_proj_bias)
            self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
            if self.out_proj.bias is not None:
                nn.init.zeros_(self.out_proj.bias)
        else:
            # Audiocraft's custom=False layout: the weights live in a torch MultiheadAttention (keys `mha.*`); the
            # math below reads them from there (`in_proj_weight`, `in_proj_bias`, `out_proj`, see __getattr__).
            self.mha = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True,
                                             **factory)
        self.qk_layer_norm = qk_layer_norm
        if qk_layer_norm:
            self.q_layer_norm = nn.LayerNorm(embed_dim, **factory)
            self.k_layer_norm = nn.LayerNorm(embed_dim, **factory)

    def __getattr__(self, name: str) -> tp.Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in _MHA_WEIGHTS and "mha" in self._modules:  # custom=False: the weights of `mha`
                return getattr(self._modules["mha"], name)
            raise

    def _load_from_state_dict(self, state_dict: tp.Dict[str, tp.Any], prefix: str, *args: tp.Any,
                              **kwargs: tp.Any) -> None:
        # custom=False modules keep their weights under `mha.`, custom ones without it: accept both spellings.
        if self.custom:
            for key in [k for k in state_dict if k.startswith(prefix + "mha.")]:
                state_dict[prefix + key[len(prefix) + 4:]] = state_dict.pop(key)
        else:
            for key in [k for k in state_dict if k[len(prefix):].split(".")[0] in _MHA_WEIGHTS
                        and k.startswith(prefix)]:
                state_dict[prefix + "mha." + key[len(prefix):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- streaming caches -----------------------------------------------------------------------------
    def allocate_cache(self, batch_size: int, capacity: int, dtype: tp.Optional[torch.dtype] = None) -> None:
        """Allocate this self-attention's cache for ``capacity`` steps now (must be streaming), in ``dtype``
        (default: the weights')."""
        if self.cross_attention:
            return
        if not self.is_streaming:
            raise StreamingError("allocate_cache needs streaming mode; use `with module.streaming():` first.")
        weight = self.in_proj_weight
        self._streaming_state = self._new_cache(batch_size, capacity, weight.device, dtype or weight.dtype)

    def _new_cache(self, batch_size: int, capacity: int, device: torch.device, dtype: torch.dtype) -> KVCacheState:
        shape = (batch_size, self.num_heads // self.kv_repeat, capacity, self.head_dim)
        return KVCacheState(keys=torch.empty(shape, device=device, dtype=dtype),
                            values=torch.empty(shape, device=device, dtype=dtype))

    def _reserve(self, state: KVCacheState, steps: int, like: torch.Tensor) -> None:
        """Make room for ``steps`` more entries: slide the window back (past_context) or grow x2.

        The cache follows the dtype of the keys written into it (``like``), except a float16 cache under float32
        keys, which a CPU backend makes for its decoding step (half the bytes a step reads): it stays float16,
        values rounded when written and the keys read widened (:meth:`_self_forward`), so that the plain forward
        (the first call of a stream) never makes a float32 copy of the whole cache."""
        if state.keys.shape[0] != like.shape[0]:
            raise StreamingError(f"Batch size changed while streaming: cache has {state.keys.shape[0]}, "
                                 f"input has {like.shape[0]}.")
        narrow = state.keys.dtype is torch.float16 and like.dtype is torch.float32
        if state.keys.dtype != like.dtype and not narrow:
            state.keys, state.values = state.keys.to(like.dtype), state.values.to(like.dtype)
        capacity, length = state.keys.shape[2], state.length
        if length + steps <= capacity:
            return
        if self.past_context is not None:
            keep = min(length, self.past_context)
            if keep + steps <= capacity:
                for buf in (state.keys, state.values):
                    buf[:, :, :keep] = buf[:, :, length - keep:length].clone()
                state.offset += length - keep
                state.length = keep
                return
        new = self._new_cache(like.shape[0], max(2 * capacity, length + steps), like.device, state.keys.dtype)
        new.keys[:, :, :length] = state.keys[:, :, :length]
        new.values[:, :, :length] = state.values[:, :, :length]
        state.keys, state.values = new.keys, new.values

    # ---- projections --------------------------------------------------------------------------------
    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)  # [B, T, H*D] -> [B, H, T, D]

    @property
    def attention_backend(self) -> str:
        """Name of the attention backend in use (``'torch'``, ``'xformers'``)."""
        return self.backend.name

    def set_attention_backend(self, backend: tp.Union[str, AttentionBackend]) -> None:
        """Compute the attention product with ``backend`` (a name of ``ATTENTION_BACKENDS`` or an instance)."""
        self.backend = get_attention_backend(backend) if isinstance(backend, str) else backend

    def _layout(self) -> WeightPieces:
        rows = self.in_proj_weight.shape[0]
        if self.cross_attention:
            return {"q": ("in_proj_weight", 0, self.embed_dim), "kv": ("in_proj_weight", self.embed_dim, rows)}
        return {"in_proj": ("in_proj_weight", 0, rows)}

    def weight_pieces(self) -> WeightPieces:
        """The row blocks of ``in_proj_weight`` each projection reads: ``{piece: (name, first row, end row)}``
        (none for ``custom=False``, whose weights belong to its ``mha``: they are not repacked)."""
        return self._layout() if self.custom else {}

    def linear_piece(self, x: torch.Tensor, piece: str, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        """The projection of ``piece``: ``x [..., E] -> [..., rows of the piece]``."""
        name, start, end = self._layout()[piece]
        weight = getattr(self, name)
        if start != 0 or end != weight.shape[0]:
            weight = weight[start:end]
        return F.linear(x, weight, bias)

    def _bias(self, start: int, end: tp.Optional[int] = None) -> tp.Optional[torch.Tensor]:
        b = self.in_proj_bias
        return None if b is None else b[start:end]

    def _project_self(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        projected = self.linear_piece(x, "in_proj", self.in_proj_bias)  # [B, T, E + 2 * kv_dim]
        E = self.embed_dim
        kv_dim = (projected.shape[-1] - E) // 2
        q, k, v = projected[..., :E], projected[..., E:E + kv_dim], projected[..., E + kv_dim:]
        if self.qk_layer_norm:
            q, k = self.q_layer_norm(q), self.k_layer_norm(k)
        kv_heads = self.num_heads // self.kv_repeat
        return self._heads(q, self.num_heads), self._heads(k, kv_heads), self._heads(v, kv_heads)

    def _project_source(self, key: torch.Tensor, value: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        E = self.embed_dim
        if key is value:  # one matmul for keys and values
            kv = self.linear_piece(key, "kv", self._bias(E))
            k, v = kv[..., :E], kv[..., E:]
        else:
            k = self.linear_piece(key, "kv", self._bias(E))[..., :E]
            v = self.linear_piece(value, "kv", self._bias(E))[..., E:]
        if self.qk_layer_norm:
            k = self.k_layer_norm(k)
        return self._heads(k, self.num_heads), self._heads(v, self.num_heads)

    def _project_query(self, query: torch.Tensor) -> torch.Tensor:
        q = self.linear_piece(query, "q", self._bias(0, self.embed_dim))
        if self.qk_layer_norm:
            q = self.q_layer_norm(q)
        return self._heads(q, self.num_heads)

    # ---- attention ----------------------------------------------------------------------------------
    def _window_mask(self, T: int, S: int, device: torch.device) -> torch.Tensor:
        """Boolean ``[T, S]``: the T queries are the LAST T of the S keys' times; True where attended."""
        delta = torch.arange(S - T, S, device=device).view(-1, 1) - torch.arange(S, device=device).view(1, -1)
        valid = delta >= 0
        if self.past_context is not None:
            valid &= delta <= self.past_context
        return valid

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: tp.Optional[torch.Tensor],
                is_causal: bool) -> torch.Tensor:
        upcast = self.attention_as_float32 or (self.safe_streaming and self.is_streaming and q.is_cuda
                                               and q.dtype in (torch.float16, torch.bfloat16))
        if upcast:
            q, k, v = q.float(), k.float(), v.float()
        return self.backend.attend(q, k, v, mask, is_causal, self.dropout if self.training else 0.0)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: tp.Optional[torch.Tensor] = None, need_weights: bool = False,
                attn_mask: tp.Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tp.Tuple[torch.Tensor, None]:
        """query ``[B, T, E]``, key/value ``[B, S, E]`` -> (output ``[B, T, E]``, None).

        Self-attention expects ``query is key is value``. ``attn_mask`` (bool, True = attend, or additive
        float) broadcastable to ``[B, H, T, S]`` is combined with the causal mask."""
        if need_weights or key_padding_mask is not None or is_causal:
            raise ArgumentError("StreamingMultiheadAttention supports neither need_weights, key_padding_mask nor "
                                "is_causal; set causal=True in the constructor.")
        dtype = query.dtype
        if not self.custom and self.attention_as_float32:  # as Audiocraft: the whole MultiheadAttention in float32
            same = query is key and key is value
            query, key, value = query.float(), key.float(), value.float()
            if same:
                key = value = query
        if self.cross_attention:
            out = self._cross_forward(query, key, value, attn_mask)
        else:
            out = self._self_forward(query, attn_mask)
        B, _, T, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T, self.embed_dim)  # [B, H, T, D] -> [B, T, E]
        if self.custom:
            return self.out_proj(out.to(dtype)), None
        return self.out_proj(out.to(query.dtype)).to(dtype), None

    def _cross_forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attn_mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        q = self._project_query(query)
        if self.is_streaming:
            state = self._streaming_state
            if state is None:
                k, v = self._project_source(key, value)
                self._streaming_state = CrossAttentionState(keys=k, values=v)
            else:
                assert isinstance(state, CrossAttentionState)
                k, v = state.keys, state.values
                if k.shape[0] != key.shape[0] or k.shape[2] != key.shape[1]:
                    raise StreamingError(f"The cross-attention source changed shape while streaming: "
                                         f"{list(key.shape)} vs cached [{k.shape[0]}, {k.shape[2]}, ...].")
        else:
            k, v = self._project_source(key, value)
        return self._attend(q, k, v, attn_mask, is_causal=False)

    def _self_forward(self, x: torch.Tensor, attn_mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        q, k, v = self._project_self(x)  # [B, H, T, D], [B, H_kv, T, D] x2
        T = x.shape[1]
        past = 0
        if self.is_streaming:
            if not self.causal:
                raise StreamingError("Streaming needs a causal self-attention (causal=True).")
            state = self._streaming_state
            if state is None:
                state = self._new_cache(x.shape[0], max(T, _MIN_CACHE), x.device, k.dtype)
                self._streaming_state = state
            assert isinstance(state, KVCacheState)
            self._reserve(state, T, k)
            if self.rope is not None:
                q, k = self.rope.rotate_qk(q, k, start=state.offset + state.length, time_dim=2)
            past = state.length
            state.keys[:, :, past:past + T] = k
            state.values[:, :, past:past + T] = v
            state.length = past + T
            k, v = state.keys[:, :, :past + T], state.values[:, :, :past + T]
            if k.dtype != q.dtype:  # a float16 cache under float32 activations (see _reserve)
                k, v = k.to(q.dtype), v.to(q.dtype)
        elif self.rope is not None:
            q, k = self.rope.rotate_qk(q, k, start=0, time_dim=2)
        k, v = expand_repeated_kv(k, self.kv_repeat), expand_repeated_kv(v, self.kv_repeat)
        S = k.shape[2]
        mask: tp.Optional[torch.Tensor] = None
        is_causal = False
        if self.causal:
            if T == 1 and attn_mask is None:
                if self.past_context is not None and S > self.past_context + 1:
                    k, v = k[:, :, S - self.past_context - 1:], v[:, :, S - self.past_context - 1:]
            elif past == 0 and self.past_context is None and attn_mask is None:
                is_causal = True
            else:
                mask = self._window_mask(T, S, x.device)
        if attn_mask is not None:
            if mask is None:
                mask = attn_mask
            elif attn_mask.dtype == torch.bool:
                mask = mask & attn_mask
            else:
                mask = attn_mask.masked_fill(~mask, float("-inf"))
        return self._attend(q, k, v, mask, is_causal)


# ------------------------------------------------------------------------------------------------ layers
class StreamingTransformerLayer(nn.Module):
    """One transformer layer: self-attention, optional cross-attention, feed-forward; pre- or post-norm.

    Args (Audiocraft's): d_model, num_heads, dim_feedforward, dropout (residual branches, and attention unless
        ``attention_dropout``), bias_ff, bias_attn, causal, past_context, custom, memory_efficient,
        attention_as_float32, qk_layer_norm, qk_layer_norm_cross, cross_attention, layer_scale (initial
        LayerScale value, None: none), rope, attention_dropout, kv_repeat, norm ('layer_norm' | 'rms_norm'),
        device, dtype; activation (name or callable, default relu; gated ones halve the hidden size seen by
        ``linear2``), norm_first (pre-norm), attention_backend. ``layer_norm_eps`` is accepted and ignored
        (the norms use 1e-5, like Audiocraft).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 bias_ff: bool = True, bias_attn: bool = True, causal: bool = False,
                 past_context: tp.Optional[int] = None, custom: bool = False, memory_efficient: bool = False,
                 attention_as_float32: bool = False, qk_layer_norm: bool = False, qk_layer_norm_cross: bool = False,
                 cross_attention: bool = False, layer_scale: tp.Optional[float] = None,
                 rope: tp.Optional[RotaryEmbedding] = None, attention_dropout: tp.Optional[float] = None,
                 kv_repeat: int = 1, norm: str = "layer_norm", device: tp.Any = None,
                 dtype: tp.Optional[torch.dtype] = None, activation: Activation = "relu", norm_first: bool = False,
                 attention_backend: str = "torch", layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        attn_kwargs: tp.Dict[str, tp.Any] = dict(
            embed_dim=d_model, num_heads=num_heads, dropout=dropout if attention_dropout is None else attention_dropout,
            bias=bias_attn, custom=custom, memory_efficient=memory_efficient,
            attention_as_float32=attention_as_float32, attention_backend=attention_backend, **factory)
        self.norm_first = norm_first
        self.activation = get_activation_fn(activation)
        self.self_attn = StreamingMultiheadAttention(causal=causal, past_context=past_context, rope=rope,
                                                     qk_layer_norm=qk_layer_norm, kv_repeat=kv_repeat, **attn_kwargs)
        hidden_out = dim_feedforward // 2 if is_gated(self.activation) else dim_feedforward
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias_ff, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden_out, d_model, bias=bias_ff, **factory)
        self.norm1 = create_norm_fn(norm, d_model, **factory)
        self.norm2 = create_norm_fn(norm, d_model, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.layer_scale_1: nn.Module = nn.Identity() if layer_scale is None else LayerScale(d_model, layer_scale,
                                                                                             **factory)
        self.layer_scale_2: nn.Module = nn.Identity() if layer_scale is None else LayerScale(d_model, layer_scale,
                                                                                             **factory)
        self.cross_attention: tp.Optional[StreamingMultiheadAttention] = None
        if cross_attention:
            self.cross_attention = StreamingMultiheadAttention(cross_attention=True, qk_layer_norm=qk_layer_norm_cross,
                                                               **attn_kwargs)
            self.dropout_cross = nn.Dropout(dropout)
            self.norm_cross = nn.LayerNorm(d_model, eps=1e-5, **factory)
            self.layer_scale_cross: nn.Module = (nn.Identity() if layer_scale is None
                                                 else LayerScale(d_model, layer_scale, **factory))

    def _drop(self, dropout: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return dropout(x) if self.training else x  # identity in eval: skip the call

    def _sa_block(self, x: torch.Tensor, attn_mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        return self._drop(self.dropout1, self.self_attn(x, x, x, attn_mask=attn_mask)[0])

    def _cross_attention_block(self, x: torch.Tensor, source: torch.Tensor,
                               mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        assert self.cross_attention is not None
        return self._drop(self.dropout_cross, self.cross_attention(x, source, source, attn_mask=mask)[0])

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.linear2(linear_activation(self.linear1, x, self.activation))
        hidden = self._drop(self.dropout, self.activation(self.linear1(x)))
        return self._drop(self.dropout2, self.linear2(hidden))

    def forward(self, src: torch.Tensor, src_mask: tp.Optional[torch.Tensor] = None,
                src_key_padding_mask: tp.Optional[torch.Tensor] = None,
                cross_attention_src: tp.Optional[torch.Tensor] = None,
                cross_attention_mask: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """src ``[B, T, C]`` (+ cross_attention_src ``[B, S, C]`` iff built with cross_attention) -> ``[B, T, C]``.

        ``src_mask``: self-attention mask (bool, True = attend, or additive float) broadcastable to
        ``[B, H, T, S_keys]``, combined with the causal mask. ``cross_attention_mask``: the same for the
        cross-attention keys, broadcastable to ``[B, H, T, S]``."""
        if (self.cross_attention is None) != (cross_attention_src is None):
            raise ArgumentError("cross_attention_src must be given exactly when the layer has cross_attention "
                                f"(cross_attention={self.cross_attention is not None}).")
        if src_key_padding_mask is not None:
            raise ArgumentError("src_key_padding_mask is not supported.")
        x = src
        scale = self._scale
        if self.norm_first:
            x = x + scale(self.layer_scale_1, self._sa_block(self.norm1(x), src_mask))
            if cross_attention_src is not None:
                x = x + scale(self.layer_scale_cross, self._cross_attention_block(self.norm_cross(x),
                                                                                  cross_attention_src,
                                                                                  cross_attention_mask))
            x = x + scale(self.layer_scale_2, self._ff_block(self.norm2(x)))
        else:
            x = self.norm1(x + scale(self.layer_scale_1, self._sa_block(x, src_mask)))
            if cross_attention_src is not None:
                # Audiocraft's post-norm cross-attention queries with the layer INPUT `src`, not `x`: kept.
                x = self.norm_cross(x + scale(self.layer_scale_cross, self._cross_attention_block(
                    src, cross_attention_src, cross_attention_mask)))
            x = self.norm2(x + scale(self.layer_scale_2, self._ff_block(x)))
        return x

    @staticmethod
    def _scale(layer_scale: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x if type(layer_scale) is nn.Identity else layer_scale(x)  # skip the call of an identity


class StreamingTransformer(StreamingModule[TransformerState]):
    """A stack of :class:`StreamingTransformerLayer` with sinusoidal and/or rotary positions.

    Args (Audiocraft's): d_model, num_heads, num_layers, dim_feedforward, dropout, bias_ff, bias_attn, causal,
        past_context, custom, memory_efficient, attention_as_float32, cross_attention, layer_scale,
        positional_embedding ('sin' | 'rope' | 'sin_rope'), max_period, positional_scale (scale of the sin
        embedding, or blend of the rope), xpos (rope only), lr / weight_decay (``make_optim_group``),
        layer_class, checkpointing ('none' | 'torch'; the 'xformers_*' policies fall back to 'torch'),
        device, dtype, and the options of every layer (activation, norm_first, norm, qk_layer_norm,
        qk_layer_norm_cross, attention_dropout, kv_repeat, attention_backend, layer_norm_eps), see
        :class:`StreamingTransformerLayer`.
    """
    state_cls = TransformerState

    def __init__(self, d_model: int, num_heads: int, num_layers: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, bias_ff: bool = True, bias_attn: bool = True, causal: bool = False,
                 past_context: tp.Optional[int] = None, custom: bool = False, memory_efficient: bool = False,
                 attention_as_float32: bool = False, cross_attention: bool = False,
                 layer_scale: tp.Optional[float] = None, positional_embedding: str = "sin",
                 max_period: float = 10_000, positional_scale: float = 1.0, xpos: bool = False,
                 lr: tp.Optional[float] = None, weight_decay: tp.Optional[float] = None,
                 layer_class: tp.Type[StreamingTransformerLayer] = StreamingTransformerLayer,
                 checkpointing: str = "none", device: tp.Any = None, dtype: tp.Optional[torch.dtype] = None, *,
                 activation: Activation = "relu", norm_first: bool = False, norm: str = "layer_norm",
                 qk_layer_norm: bool = False, qk_layer_norm_cross: bool = False,
                 attention_dropout: tp.Optional[float] = None, kv_repeat: int = 1, attention_backend: str = "torch",
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ArgumentError(f"d_model={d_model} must be divisible by num_heads={num_heads}.")
        if positional_embedding not in ("sin", "rope", "sin_rope"):
            raise ArgumentError(f"Unknown positional_embedding {positional_embedding!r}; "
                                "expected 'sin', 'rope' or 'sin_rope'.")
        if checkpointing not in _CHECKPOINTING:
            raise ArgumentError(f"Unknown checkpointing {checkpointing!r}; expected one of {_CHECKPOINTING}.")
        self.positional_embedding = positional_embedding
        self.max_period = max_period
        self.positional_scale = positional_scale
        self.weight_decay = weight_decay
        self.lr = lr
        self.checkpointing = checkpointing
        self.rope: tp.Optional[RotaryEmbedding] = None
        if positional_embedding in ("rope", "sin_rope"):
            self.rope = RotaryEmbedding(d_model // num_heads, max_period=max_period, xpos=xpos,
                                        scale=positional_scale, device=device)
        self.layers = nn.ModuleList([
            layer_class(d_model=d_model, num_heads=num_heads, dim_feedforward=dim_feedforward, dropout=dropout,
                        bias_ff=bias_ff, bias_attn=bias_attn, causal=causal, past_context=past_context,
                        custom=custom, memory_efficient=memory_efficient, attention_as_float32=attention_as_float32,
                        qk_layer_norm=qk_layer_norm, qk_layer_norm_cross=qk_layer_norm_cross,
                        cross_attention=cross_attention, layer_scale=layer_scale, rope=self.rope,
                        attention_dropout=attention_dropout, kv_repeat=kv_repeat, norm=norm, device=device,
                        dtype=dtype, activation=activation, norm_first=norm_first,
                        attention_backend=attention_backend, layer_norm_eps=layer_norm_eps)
            for _ in range(num_layers)])

    def _init_streaming_state(self) -> TransformerState:
        return TransformerState()

    def allocate_kv_caches(self, batch_size: int, capacity: int, dtype: tp.Optional[torch.dtype] = None) -> None:
        """Presize every self-attention cache for ``capacity`` steps (call inside ``streaming()``), in ``dtype``
        (default: each layer's weights')."""
        for module in self.modules():
            if isinstance(module, StreamingMultiheadAttention):
                module.allocate_cache(batch_size, capacity, dtype)

    def _apply_layer(self, layer: nn.Module, x: torch.Tensor, *args: tp.Any, **kwargs: tp.Any) -> torch.Tensor:
        if self.checkpointing != "none" and self.training and torch.is_grad_enabled():
            return torch_checkpoint(layer, x, *args, use_reentrant=False, **kwargs)
        return layer(x, *args, **kwargs)

    def forward(self, x: torch.Tensor, *args: tp.Any, positions: tp.Optional[torch.Tensor] = None,
                **kwargs: tp.Any) -> torch.Tensor:
        """x ``[B, T, C]`` -> ``[B, T, C]``; extra arguments (``cross_attention_src``, ``src_mask``,
        ``cross_attention_mask``) go to the layers.

        ``positions``: ``[B, T]`` integer times of the sinusoidal embedding, per item (default: the stream's
        offset onwards, the same for every item); not supported with rotary embeddings."""
        B, T, C = x.shape
        state = self._get_or_init_state() if self.is_streaming else None
        offset = 0 if state is None else state.offset
        if positions is not None:
            if self.rope is not None:
                raise ArgumentError("Per-item positions are only supported with positional_embedding='sin'.")
            if positions.shape != (B, T):
                raise ArgumentError(f"positions must be [B, T] = [{B}, {T}], got {list(positions.shape)}.")
        if self.positional_embedding in ("sin", "sin_rope"):
            times = (torch.arange(offset, offset + T, device=x.device).view(1, -1, 1) if positions is None
                     else positions[..., None])
            x = x + self.positional_scale * create_sin_embedding(times, C, self.max_period, dtype=x.dtype)
        for layer in self.layers:
            x = self._apply_layer(layer, x, *args, **kwargs)
        if state is not None:
            state.offset = offset + T
        return x

    def make_optim_group(self) -> tp.Dict[str, tp.Any]:
        """Optimizer parameter group with this module's ``lr`` / ``weight_decay`` overrides."""
        group: tp.Dict[str, tp.Any] = {"params": list(self.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        if self.weight_decay is not None:
            group["weight_decay"] = self.weight_decay
        return group
