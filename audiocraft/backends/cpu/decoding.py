"""The decoding step of a transformer layer in one native call (CPU, packed weights).

A decoding step of MusicGen's language model feeds one time step (2-16 rows) through every layer. Run module by
module, each layer makes ~40 PyTorch calls around its six matrix-vector kernels (norms, views, cache writes,
attention, GELU, residual sums), which cost as much as streaming int8 weights. :func:`fuse_decoding_layers` gives
each :class:`~audiocraft.modules.transformer.StreamingTransformerLayer` whose linear maps are all packed for the
native kernels (:mod:`.packing`) a class whose ``forward`` runs such a step as one call of
``audiocraft_decoder_layer`` (``csrc/step_kernels.cpp``): the same math (pre-norm LayerNorm / RMSNorm,
self-attention over the key/value cache, cross-attention over the cached source keys and values, feed-forward
with GELU or ReLU, LayerScale), the same weights, each linear output summed in the kernels' fixed order; the
norms and GELU are the kernel's own (GELU within 3e-7 x max(1, |x|) of the exact value, closer than PyTorch's
float32 GELU).

Every other call (training, gradients, masks, several time steps, the first step of a stream, a layer it does
not cover: post-norm, rotary embeddings, grouped keys/values, qk norms, another activation) goes to the plain
``forward``. The class keeps the module's parameters and state-dict keys; :func:`unfuse_decoding_layers` gives
the plain class back.
"""
from __future__ import annotations

import ctypes
import typing as tp
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from ...modules.transformer import (CrossAttentionState, KVCacheState, LayerScale, StreamingMultiheadAttention,
                                    StreamingTransformer, StreamingTransformerLayer, create_sin_embedding)
from . import kernels
from .packing import PackableWeights, _NativePacked

__all__ = ["fuse_decoding_layers", "unfuse_decoding_layers", "FusedDecodingLayer", "FusedDecodingTransformer"]

_c_ptr, _c_i64 = ctypes.c_void_p, ctypes.c_int64


class _LinearSpec(ctypes.Structure):
    """``Linear`` of ``csrc/matvec.h``: one packed weight."""
    _fields_ = [("kind", ctypes.c_int), ("block", ctypes.c_int), ("w", _c_ptr), ("scale", _c_ptr), ("bias", _c_ptr),
                ("out", _c_i64), ("in_", _c_i64)]


class _LayerSpec(ctypes.Structure):
    """``LayerSpec`` of ``csrc/step_kernels.cpp``."""
    _fields_ = [("dim", _c_i64), ("heads", _c_i64), ("head_dim", _c_i64), ("hidden", _c_i64),
                ("norm_kind", _c_i64), ("activation", _c_i64), ("has_cross", _c_i64),
                ("eps", ctypes.c_float), ("attention_scale", ctypes.c_float),
                ("norm1_w", _c_ptr), ("norm1_b", _c_ptr), ("norm_cross_w", _c_ptr), ("norm_cross_b", _c_ptr),
                ("norm2_w", _c_ptr), ("norm2_b", _c_ptr),
                ("scale1", _c_ptr), ("scale_cross", _c_ptr), ("scale2", _c_ptr),
                ("in_proj", _LinearSpec), ("out_proj", _LinearSpec), ("cross_q", _LinearSpec),
                ("cross_out", _LinearSpec), ("linear1", _LinearSpec), ("linear2", _LinearSpec)]


class _LayerCaches(ctypes.Structure):
    """``LayerCaches`` of ``csrc/step_kernels.cpp``: where one layer's key/value caches are."""
    _fields_ = [("kc", _c_ptr), ("kcb", _c_i64), ("kch", _c_i64), ("kcs", _c_i64),
                ("vc", _c_ptr), ("vcb", _c_i64), ("vch", _c_i64), ("vcs", _c_i64),
                ("ck", _c_ptr), ("ckb", _c_i64), ("ckh", _c_i64), ("cks", _c_i64),
                ("cv", _c_ptr), ("cvb", _c_i64), ("cvh", _c_i64), ("cvs", _c_i64), ("S", _c_i64), ("half", _c_i64),
                ("cross_len", _c_ptr)]


class _Unsupported(Exception):
    """The layer (or its current packing) is not one the fused step covers."""


def _vector(t: tp.Optional[torch.Tensor], n: int, keep: tp.List[torch.Tensor]) -> tp.Optional[int]:
    """Address of a float32 vector [n] (a contiguous copy kept alive in ``keep`` when needed), None for None."""
    if t is None:
        return None
    if t.shape != (n,) or t.device.type != "cpu" or not t.is_floating_point():
        raise _Unsupported(f"vector of shape {tuple(t.shape)}")
    if t.dtype != torch.float32 or not t.is_contiguous():
        t = t.detach().float().contiguous()
    keep.append(t)
    return t.data_ptr()


def _norm(norm: nn.Module, dim: int, keep: tp.List[torch.Tensor]) -> tp.Tuple[int, float, tp.Any, tp.Any]:
    """(kind, eps, weight address, bias address) of a LayerNorm / RMSNorm over ``dim`` features."""
    module: tp.Any = norm
    if type(module) is nn.LayerNorm and tuple(module.normalized_shape) == (dim,):
        return 0, float(module.eps), _vector(module.weight, dim, keep), _vector(module.bias, dim, keep)
    rms = getattr(nn, "RMSNorm", None)
    if rms is not None and type(module) is rms and tuple(module.normalized_shape) == (dim,) and \
            module.eps is not None:
        return 1, float(module.eps), _vector(module.weight, dim, keep), None
    raise _Unsupported(f"norm {type(norm).__name__}")


def _gain(module: nn.Module, dim: int, keep: tp.List[torch.Tensor]) -> tp.Optional[int]:
    if type(module) is nn.Identity:
        return None
    if type(module) is LayerScale and module.channel_last:
        return _vector(module.scale, dim, keep)
    raise _Unsupported(f"layer scale {type(module).__name__}")


def _linear(module: nn.Module, piece: str, bias: tp.Optional[torch.Tensor], keep: tp.List[torch.Tensor],
            spec: _LinearSpec) -> tp.Dict[str, tp.Any]:
    """Fill ``spec`` with the packed weight of ``piece`` of ``module``; returns the packed dict (its identity is
    how the plan sees a repacking)."""
    packed = module.__dict__.get("_packed") if isinstance(module, PackableWeights) else None
    weight = packed.get(piece) if packed else None
    if not isinstance(weight, _NativePacked) or not weight.is_packed:
        raise _Unsupported("linear map not packed for the native kernels")
    out_features, in_features = weight.shape
    spec.kind = kernels.KINDS[weight.stored.dtype]
    spec.block = int(weight.stored.shape[2])
    spec.w = weight.stored.data_ptr()
    spec.scale = None if weight.scale is None else weight.scale.data_ptr()
    spec.bias = _vector(bias, out_features, keep)
    spec.out, spec.in_ = out_features, in_features
    keep.append(weight.stored)
    if weight.scale is not None:
        keep.append(weight.scale)
    return tp.cast(tp.Dict[str, tp.Any], packed)


def _check_attention(attn: StreamingMultiheadAttention, cross: bool) -> None:
    if not attn.custom or attn.qk_layer_norm or attn.kv_repeat != 1 or attn.cross_attention != cross:
        raise _Unsupported("attention options")
    if not cross and (not attn.causal or attn.rope is not None):
        raise _Unsupported("self-attention must be causal, without rotary embeddings")


class _Plan:
    """The native description of one layer (:class:`_LayerSpec`), the tensors it points to, and the packed dicts
    it was built from (a repacking makes it stale)."""

    def __init__(self, layer: StreamingTransformerLayer) -> None:
        if not layer.norm_first:
            raise _Unsupported("post-norm layer")
        activation = {F.gelu: 1, F.relu: 0}.get(layer.activation)  # type: ignore[call-overload]
        if activation is None:
            raise _Unsupported("activation")
        sa, ca = layer.self_attn, layer.cross_attention
        _check_attention(sa, cross=False)
        if ca is not None:
            _check_attention(ca, cross=True)
        E, H = sa.embed_dim, sa.num_heads
        keep: tp.List[torch.Tensor] = []
        spec = _LayerSpec()
        spec.dim, spec.heads, spec.head_dim = E, H, sa.head_dim
        spec.hidden = layer.linear1.out_features
        if layer.linear2.in_features != spec.hidden:
            raise _Unsupported("gated feed-forward")
        spec.activation, spec.has_cross = activation, int(ca is not None)
        spec.attention_scale = sa.head_dim ** -0.5
        kinds, eps = set(), set()
        norms = [("norm1", layer.norm1), ("norm2", layer.norm2)]
        if ca is not None:
            norms.append(("norm_cross", layer.norm_cross))
        for name, module in norms:
            kind, e, w, b = _norm(module, E, keep)
            kinds.add(kind)
            eps.add(e)
            setattr(spec, f"{name}_w", w)
            setattr(spec, f"{name}_b", b)
        if len(kinds) != 1 or len(eps) != 1:
            raise _Unsupported("mixed norms")
        spec.norm_kind, spec.eps = kinds.pop(), eps.pop()
        spec.scale1 = _gain(layer.layer_scale_1, E, keep)
        spec.scale2 = _gain(layer.layer_scale_2, E, keep)
        self.modules: tp.List[nn.Module] = [sa, sa.out_proj, layer.linear1, layer.linear2]
        self.submodules = [m for m in layer.modules() if m is not layer]  # hooks: see _hooked
        self.dicts = [_linear(sa, "in_proj", sa.in_proj_bias, keep, spec.in_proj),
                      _linear(sa.out_proj, "weight", sa.out_proj.bias, keep, spec.out_proj),
                      _linear(layer.linear1, "weight", layer.linear1.bias, keep, spec.linear1),
                      _linear(layer.linear2, "weight", layer.linear2.bias, keep, spec.linear2)]
        if ca is not None:
            spec.scale_cross = _gain(layer.layer_scale_cross, E, keep)
            self.modules += [ca, ca.out_proj]
            self.dicts += [_linear(ca, "q", ca._bias(0, E), keep, spec.cross_q),
                           _linear(ca.out_proj, "weight", ca.out_proj.bias, keep, spec.cross_out)]
        self.spec = spec
        self.address = ctypes.addressof(spec)
        self.keep = keep
        self.past_context = sa.past_context
        self.float32 = all(linear.kind == kernels.KINDS[torch.float32]
                           for linear in (spec.in_proj, spec.out_proj, spec.linear1, spec.linear2))

    def current(self) -> bool:
        """Whether every linear map still holds the packed weights the plan points to."""
        for module, packed in zip(self.modules, self.dicts):
            if module.__dict__.get("_packed") is not packed:
                return False
        return True


_NO_PLAN = object()


def _hooked(modules: tp.Sequence[nn.Module]) -> bool:
    """Whether a forward hook or pre-hook (one of ``modules``' or a global one) expects a call that the native step
    would skip: then the plain forward runs, module by module."""
    from torch.nn.modules import module as torch_module
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _plan(layer: "FusedDecodingLayer") -> tp.Optional[_Plan]:
    plan = layer.__dict__.get("_decoding_plan")
    if isinstance(plan, _Plan) and plan.current():
        return plan
    if plan is _NO_PLAN and layer.__dict__.get("_decoding_plan_key") == _packing_key(layer):
        return None
    try:
        plan = _Plan(layer)
    except _Unsupported:
        layer.__dict__["_decoding_plan"] = _NO_PLAN
        layer.__dict__["_decoding_plan_key"] = _packing_key(layer)
        return None
    layer.__dict__["_decoding_plan"] = plan
    return plan


def _packing_key(layer: nn.Module) -> tp.Tuple[int, ...]:
    return tuple(id(m.__dict__.get("_packed")) for m in layer.modules())


def _step(layer: "FusedDecodingLayer", x: torch.Tensor,
          source: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
    """One decoding step on the native kernel, or None where the plain forward must run."""
    if (x.dim() != 3 or x.shape[1] != 1 or x.dtype is not torch.float32 or x.device.type != "cpu"
            or not x.is_contiguous() or torch.is_grad_enabled()):
        return None
    sa, ca = layer.self_attn, layer.cross_attention
    state = sa._streaming_state
    if not sa._is_streaming or type(state) is not KVCacheState or state.keys.dtype is not torch.float32:
        return None
    B = x.shape[0]
    ck: tp.Any = None
    cv: tp.Any = None
    S = 0
    if ca is not None:
        cstate = ca._streaming_state
        if (source is None or type(cstate) is not CrossAttentionState or cstate.keys.dtype is not torch.float32
                or cstate.keys.shape[0] != B or cstate.keys.shape[2] != source.shape[1]):
            return None
        ck, cv, S = cstate.keys, cstate.values, cstate.keys.shape[2]
    plan = _plan(layer)
    if plan is None or _hooked(plan.submodules):
        return None
    sa._reserve(state, 1, x)
    pos = state.length
    start = 0 if plan.past_context is None else max(0, pos - plan.past_context)
    k, v = state.keys, state.values
    ks, vs = k.stride(), v.stride()
    y = torch.empty_like(x)
    if ck is None:
        cross: tp.Tuple[tp.Any, ...] = (None, 0, 0, 0, None, 0, 0, 0, 0)
    else:
        cks, cvs = ck.stride(), cv.stride()
        cross = (ck.data_ptr(), cks[0], cks[1], cks[2], cv.data_ptr(), cvs[0], cvs[1], cvs[2], S)
    code = kernels.library().audiocraft_decoder_layer(  # type: ignore[union-attr]
        plan.address, x.data_ptr(), y.data_ptr(), B, k.data_ptr(), ks[0], ks[1], ks[2], v.data_ptr(), vs[0], vs[1],
        vs[2], pos, start, *cross, torch.get_num_threads())
    if code != 0:
        raise RuntimeError("The native decoding step refused its arguments.")
    state.length = pos + 1
    return y


class _StackPlan:
    """The layers of a transformer as one native call: their plans, the array of their caches (rebound when a cache
    tensor changes) and the sinusoidal embedding of the positions seen so far."""

    def __init__(self, transformer: StreamingTransformer, plans: tp.List[_Plan]) -> None:
        self.layers = tuple(transformer.layers)
        self.plans = plans
        self.submodules = [m for layer in self.layers for m in layer.modules()]  # hooks: see _hooked
        self.attentions: tp.List[tp.Tuple[tp.Any, tp.Any]] = [(layer.self_attn, layer.cross_attention)
                                                              for layer in self.layers]
        n = len(plans)
        self.specs = (_c_ptr * n)(*[plan.address for plan in plans])
        self.caches = (_LayerCaches * n)()
        self.bound: tp.List[tp.Any] = []  # weak references to the states and tensors self.caches points to
        self.rows = self.source_steps = -1
        contexts = {plan.past_context for plan in plans}
        crosses = {cross is not None for _, cross in self.attentions}
        self.has_cross = crosses.pop()
        # one window for all layers, and every layer with cross-attention or none (else: the plain forward)
        self.supported = len(contexts) == 1 and not crosses
        self.past_context: tp.Optional[int] = contexts.pop() if len(contexts) == 1 else None
        # bf16 / int8 weights: keys and values cached in float16 (half the bytes each step reads)
        self.cache_dtype = torch.float32 if all(p.float32 for p in plans) else torch.float16
        self.table = torch.empty(0)  # positional_scale * sin embedding of positions 0..len-1
        self.mask: tp.Optional[torch.Tensor] = None  # the cross-attention mask last seen, and its row lengths
        self.lengths: tp.Optional[torch.Tensor] = None
        self.bound_lengths: tp.Optional[torch.Tensor] = None  # the lengths self.caches points to

    def cross_lengths(self, mask: tp.Optional[torch.Tensor], rows: int) -> tp.Tuple[bool, tp.Optional[torch.Tensor]]:
        """``(usable, lengths)`` for a cross-attention key mask ``[rows, 1, 1, S]`` (True: attend): the native step
        takes masks whose valid keys are, on every row, the first ``lengths[r] >= 1`` source steps (conditions
        padded at the end); ``lengths`` is None when every key is valid."""
        if mask is None:
            return True, None
        if mask is self.mask:
            return True, self.lengths
        if mask.dtype is not torch.bool or mask.dim() != 4 or mask.shape[:3] != (rows, 1, 1) or mask.shape[3] < 1:
            return False, None
        valid = mask.reshape(rows, -1)
        lengths = valid.sum(dim=1)
        prefix = torch.arange(valid.shape[1], device=mask.device) < lengths[:, None]
        if not bool(torch.equal(valid, prefix)) or bool((lengths < 1).any()):
            return False, None
        full = bool((lengths == valid.shape[1]).all())
        self.mask, self.lengths = mask, None if full else lengths.to(torch.int64).contiguous()
        return True, self.lengths

    def bind_lengths(self, lengths: tp.Optional[torch.Tensor]) -> None:
        """Point every layer's cross-attention at ``lengths`` (None: all source steps)."""
        if lengths is self.bound_lengths:
            return
        address = None if lengths is None else lengths.data_ptr()
        for c in self.caches:
            c.cross_len = address
        self.bound_lengths = lengths

    def bind(self, states: tp.List[tp.Any]) -> bool:
        """Point the cache array at the tensors of ``states`` (self, cross per layer); False if one is not a
        float32 cache of the same batch, length and source."""
        self.bound = []
        first = states[0]
        if type(first) is not KVCacheState:
            return False
        rows, length = first.keys.shape[0], first.length
        source = -1
        for k, (state, cstate) in enumerate(zip(states[0::2], states[1::2])):
            if (type(state) is not KVCacheState or state.keys.dtype not in (torch.float32, torch.float16)
                    or state.length != length or state.keys.shape[0] != rows):
                return False
            if state.keys.dtype is not self.cache_dtype:  # the plain forward converts back (_reserve)
                state.keys, state.values = state.keys.to(self.cache_dtype), state.values.to(self.cache_dtype)
            c = self.caches[k]
            c.half = int(self.cache_dtype is torch.float16)
            ks, vs = state.keys.stride(), state.values.stride()
            c.kc, c.kcb, c.kch, c.kcs = state.keys.data_ptr(), ks[0], ks[1], ks[2]
            c.vc, c.vcb, c.vch, c.vcs = state.values.data_ptr(), vs[0], vs[1], vs[2]
            if cstate is None:
                c.ck = c.cv = None
                c.S = 0
                continue
            if (type(cstate) is not CrossAttentionState or cstate.keys.dtype is not torch.float32
                    or cstate.keys.shape[0] != rows or source not in (-1, cstate.keys.shape[2])):
                return False
            source = cstate.keys.shape[2]
            ks, vs = cstate.keys.stride(), cstate.values.stride()
            c.ck, c.ckb, c.ckh, c.cks = cstate.keys.data_ptr(), ks[0], ks[1], ks[2]
            c.cv, c.cvb, c.cvh, c.cvs = cstate.values.data_ptr(), vs[0], vs[1], vs[2]
            c.S = source
        self.bound = _weak(_cache_tensors(states))
        self.rows, self.source_steps = rows, source
        return True

    def positions(self, transformer: StreamingTransformer, offset: int, dim: int) -> torch.Tensor:
        """``positional_scale * create_sin_embedding(offset)`` ``[dim]``, from a table grown as needed (the same
        values: the same elementwise float32 operations)."""
        if offset >= self.table.shape[0]:
            times = torch.arange(max(256, 2 * (offset + 1))).view(1, -1, 1)
            emb = create_sin_embedding(times, dim, transformer.max_period, dtype=torch.float32)
            self.table = (transformer.positional_scale * emb)[0]
        return self.table[offset]


def _cache_tensors(states: tp.List[tp.Any]) -> tp.List[tp.Any]:
    out: tp.List[tp.Any] = []
    for state in states:
        out += (state, None, None) if state is None else (state, state.keys, state.values)
    return out


def _weak(objects: tp.List[tp.Any]) -> tp.List[tp.Any]:
    """Weak references to ``objects`` (None stays None): the plan must not keep a finished stream's caches."""
    return [None if o is None else weakref.ref(o) for o in objects]


def _still_bound(stack: "_StackPlan", states: tp.List[tp.Any]) -> bool:
    """Whether ``stack.caches`` still points at the tensors of ``states``."""
    now = _cache_tensors(states)
    return len(now) == len(stack.bound) and all(
        (ref is None and o is None) or (ref is not None and ref() is o) for ref, o in zip(stack.bound, now))


def _stack_plan(transformer: "FusedDecodingTransformer") -> tp.Optional[_StackPlan]:
    plans = []
    for layer in transformer.layers:
        plan = _plan(layer) if isinstance(layer, FusedDecodingLayer) else None
        if plan is None:
            return None
        plans.append(plan)
    stack = transformer.__dict__.get("_stack_plan")
    if not isinstance(stack, _StackPlan) or stack.plans != plans or stack.layers != tuple(transformer.layers):
        stack = _StackPlan(transformer, plans)
        transformer.__dict__["_stack_plan"] = stack
    return stack if stack.supported else None


def _stack_step(transformer: "FusedDecodingTransformer", x: torch.Tensor, source: tp.Optional[torch.Tensor],
                positions: tp.Optional[torch.Tensor] = None, src_mask: tp.Optional[torch.Tensor] = None,
                cross_mask: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
    """One decoding step of every layer in one native call, or None where the plain forward must run.

    The masks of a batch whose conditions are padded (per-item seeds, ``ConditionPadding``) are taken where they
    change nothing but the cross-attention's length per row: ``positions`` equal to the stream's offset,
    ``src_mask`` all True, and a ``cross_mask`` whose valid keys are a prefix of each row."""
    if (x.dim() != 3 or x.shape[1] != 1 or x.dtype is not torch.float32 or x.device.type != "cpu"
            or torch.is_grad_enabled() or transformer.training
            or not transformer._is_streaming or transformer.positional_embedding != "sin" or not transformer.layers):
        return None
    tstate = transformer._streaming_state
    stack = _stack_plan(transformer)
    if stack is None or tstate is None or _hooked(stack.submodules):
        return None
    if positions is not None and (positions.shape != (x.shape[0], 1) or not bool((positions == tstate.offset).all())):
        return None
    if src_mask is not None and (src_mask.dtype is not torch.bool or not bool(src_mask.all())):
        return None
    usable, lengths = stack.cross_lengths(cross_mask, x.shape[0])
    if not usable or (lengths is not None and source is None):
        return None
    states: tp.List[tp.Any] = []
    for sa, ca in stack.attentions:
        states += (sa._streaming_state, None if ca is None else ca._streaming_state)
    if (source is not None) != stack.has_cross:
        return None
    first = states[0]
    if type(first) is not KVCacheState:
        return None
    if first.length + 1 > first.keys.shape[2]:  # make room (slide the window or grow), then bind anew
        for (sa, _), state in zip(stack.attentions, states[0::2]):
            if type(state) is not KVCacheState:
                return None
            sa._reserve(state, 1, x)
        stack.bound = []
    if not _still_bound(stack, states) and not stack.bind(states):
        return None
    B = x.shape[0]
    if B != stack.rows or (source is not None and (source.shape[0] != B or source.shape[1] != stack.source_steps)):
        return None
    if cross_mask is not None and cross_mask.shape[-1] != stack.source_steps:
        return None
    stack.bind_lengths(lengths)
    pos = first.length
    start = 0 if stack.past_context is None else max(0, pos - stack.past_context)
    y = (x + stack.positions(transformer, tstate.offset, x.shape[2])).contiguous()  # a new tensor
    code = kernels.library().audiocraft_decoder_stack(  # type: ignore[union-attr]
        len(stack.plans), stack.specs, stack.caches, y.data_ptr(), y.data_ptr(), B, pos, start,
        torch.get_num_threads())
    if code != 0:
        raise RuntimeError("The native decoding step refused its arguments.")
    for state in states[0::2]:
        state.length = pos + 1
    tstate.offset += 1
    return y


class FusedDecodingLayer(StreamingTransformerLayer):
    """Mixin put in front of a :class:`StreamingTransformerLayer` class by :func:`fuse_decoding_layers`: a
    one-step, no-mask, no-gradient call while streaming runs on the native decoding step, any other call on the
    plain ``forward``."""

    def forward(self, src: torch.Tensor, src_mask: tp.Optional[torch.Tensor] = None,
                src_key_padding_mask: tp.Optional[torch.Tensor] = None,
                cross_attention_src: tp.Optional[torch.Tensor] = None,
                cross_attention_mask: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        if (src_mask is None and src_key_padding_mask is None and cross_attention_mask is None
                and not self.training and (self.cross_attention is None) == (cross_attention_src is None)):
            out = _step(self, src, cross_attention_src)
            if out is not None:
                return out
        return super().forward(src, src_mask, src_key_padding_mask, cross_attention_src, cross_attention_mask)

    def _apply(self, fn: tp.Callable[[torch.Tensor], torch.Tensor], *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        self.__dict__.pop("_decoding_plan", None)  # parameters may move: rebuild the plan on the next step
        return super()._apply(fn, *args, **kwargs)


class FusedDecodingTransformer(StreamingTransformer):
    """Mixin put in front of a :class:`StreamingTransformer` class by :func:`fuse_decoding_layers`: a one-step call
    while streaming, with only ``cross_attention_src``, runs every layer in one native call (when all of them have
    the fused step); any other call runs the plain ``forward`` (whose layers may still run fused one by one)."""

    def forward(self, x: torch.Tensor, *args: tp.Any, positions: tp.Optional[torch.Tensor] = None,
                **kwargs: tp.Any) -> torch.Tensor:
        if not args and set(kwargs) <= {"cross_attention_src", "src_mask", "cross_attention_mask"}:
            out = _stack_step(self, x, kwargs.get("cross_attention_src"), positions, kwargs.get("src_mask"),
                              kwargs.get("cross_attention_mask"))
            if out is not None:
                return out
        return super().forward(x, *args, positions=positions, **kwargs)

    def allocate_kv_caches(self, batch_size: int, capacity: int, dtype: tp.Optional[torch.dtype] = None) -> None:
        """As the plain transformer's, in the dtype of the native step's cache by default (float16 for bf16 / int8
        weights): no float32 cache of the whole capacity is made first."""
        if dtype is None and self.layers and all(isinstance(layer, FusedDecodingLayer) for layer in self.layers):
            stack = _stack_plan(self)
            dtype = stack.cache_dtype if stack is not None else None
        super().allocate_kv_caches(batch_size, capacity, dtype)

    def _apply(self, fn: tp.Callable[[torch.Tensor], torch.Tensor], *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        self.__dict__.pop("_stack_plan", None)
        return super()._apply(fn, *args, **kwargs)


_FUSED_CLASSES: tp.Dict[type, type] = {}
_PLAIN_CLASSES: tp.Dict[type, type] = {}


def _fused_class(cls: type) -> type:
    fused = _FUSED_CLASSES.get(cls)
    if fused is None:
        name = f"FusedDecoding{cls.__name__}"
        mixin = FusedDecodingLayer if issubclass(cls, StreamingTransformerLayer) else FusedDecodingTransformer
        fused = type(name, (mixin, cls), {"__module__": __name__, "__qualname__": name})
        if name not in globals():
            globals()[name] = fused  # picklable by name
        _FUSED_CLASSES[cls] = fused
        _PLAIN_CLASSES[fused] = cls
    return fused


def fuse_decoding_layers(module: nn.Module) -> int:
    """Give every :class:`StreamingTransformerLayer` under ``module`` the fused decoding step (see the module
    docstring), in place; returns how many layers have it. Layers it does not cover keep running the plain
    ``forward`` (the class checks on the first decoding step and remembers)."""
    if not kernels.available():
        return 0
    count = 0
    for child in module.modules():
        if isinstance(child, (FusedDecodingLayer, FusedDecodingTransformer)):
            count += isinstance(child, FusedDecodingLayer)
        elif isinstance(child, (StreamingTransformerLayer, StreamingTransformer)):
            child.__class__ = _fused_class(type(child))
            count += isinstance(child, FusedDecodingLayer)
    return count


def unfuse_decoding_layers(module: nn.Module) -> int:
    """Undo :func:`fuse_decoding_layers`; returns how many layers were given their plain class back."""
    count = 0
    for child in module.modules():
        plain = _PLAIN_CLASSES.get(type(child))
        if plain is not None:
            count += isinstance(child, FusedDecodingLayer)
            child.__class__ = plain
            for key in ("_decoding_plan", "_decoding_plan_key", "_stack_plan"):
                child.__dict__.pop(key, None)
    return count
