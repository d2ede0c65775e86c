"""Linear maps whose weights are prepared once ("packed") for fast CPU inference.

A decoding step of the language model reads every weight matrix once for only 2-8 rows of activations: it is
bound by memory bandwidth, so what matters is how fast a kernel streams the weights. PyTorch's default fp32
``F.linear`` streams them well below bandwidth on x86 CPUs for so few rows; oneDNN with the weight reordered
once into its blocked layout gets close to it. Packing does that reordering once, optionally with a cheaper
number format:

==========  =========================================================  ========================================
kind        what is kept                                               what is computed
==========  =========================================================  ========================================
``native``  the float32 weight in the native kernels' packed layout    the same float32 products (summed in
            (:mod:`audiocraft.backends.cpu.kernels`)                  another, fixed order: ~1e-7 relative)
``onednn``  the float32 weight in oneDNN's blocked layout              the same float32 products (summed in
                                                                       another order: ~1e-7 relative changes)
``bf16``    the weight rounded to bfloat16 (held as fbgemm float16,    float32 activations x bf16 weights,
            which represents every bf16 value of |w| >= 6.1e-5         float32 accumulation
            exactly, smaller ones within 3e-8)
``int8``    int8 weights, one scale per output row (symmetric,         activations quantized to 8 bits per call
            ``scale = max|row| / 127``), packed by fbgemm              (dynamic), int32 accumulation
==========  =========================================================  ========================================

Where the native kernels are built, ``bf16`` and ``int8`` use them too (packed layout; int8: activations
quantized per row to int16 and the products summed exactly in integers, a smaller error than fbgemm's).

One copy of each weight: while packed, the module's ``Parameter`` keeps its identity (optimizers, hooks) but holds
an empty tensor. ``state_dict()`` rebuilds the dense weight (dequantized for ``bf16``/``int8``);
``load_state_dict`` unpacks, loads, then packs again with the same kind; anything going through
``Module._apply`` (``.to()``, ``.float()``, ``.cuda()``, ...) unpacks first; a forward that needs the gradient of
a packed weight unpacks it (with a warning). Packing is for CPU inference; :func:`pack_linear_weights` refuses
other devices.
"""
from __future__ import annotations

import abc
import typing as tp
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from ...modules.transformer import WeightPieces
from ...utils.checkpoint_io import FilePages
from . import kernels as native_kernels

PACK_KINDS = ("native", "onednn", "bf16", "int8")
_FP16_MAX = 65504.0


def packing_available(kind: str) -> bool:
    """Whether this PyTorch build offers the kernels of ``kind`` (one of :data:`PACK_KINDS`)."""
    if kind not in PACK_KINDS:
        raise ValueError(f"Unknown packing kind {kind!r}; expected one of {PACK_KINDS}.")
    if kind == "native":
        return native_kernels.available()
    if native_kernels.available() and kind in ("bf16", "int8"):
        return True
    if kind == "onednn":
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    if kind == "bf16":
        return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized,
                                                                                  "linear_dynamic_fp16")
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized,
                                                                              "linear_dynamic")


def _raw(overload: tp.Any) -> tp.Callable[..., torch.Tensor]:
    """The C++ entry of an operator overload, resolved once: a call then skips the Python-level checks of
    ``OpOverload.__call__`` (for fake script objects, which only tracing creates), ~10 us per call."""
    return getattr(overload, "_op", overload)


class PackedWeight(abc.ABC):
    """A weight ``[out, in]`` prepared for one kernel. ``linear(x, bias)``: ``[..., in] -> [..., out]``."""
    kind: str

    def __init__(self, weight: torch.Tensor) -> None:
        self.shape = tuple(weight.shape)
        self.dtype = weight.dtype

    @abc.abstractmethod
    def linear(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        """``x @ weight.T + bias`` with the packed weight."""

    def linear_activation(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor],
                          activation: tp.Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``activation(x @ weight.T + bias)``, fused into the kernel where it can be."""
        return activation(self.linear(x, bias))

    @abc.abstractmethod
    def dense(self) -> torch.Tensor:
        """The weight as a plain ``[out, in]`` tensor of the original dtype (dequantized if quantized)."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """Bytes of memory the packed weight occupies."""


class OneDNNWeight(PackedWeight):
    """float32 weight reordered once into oneDNN's layout (``rows_hint``: expected rows of the input)."""
    kind = "onednn"

    def __init__(self, weight: torch.Tensor, rows_hint: int) -> None:
        super().__init__(weight)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().float().contiguous(), rows_hint)
        self._op = _raw(torch.ops.mkldnn._linear_pointwise.default)

    def linear(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise TypeError(f"onednn-packed weights take float32 inputs, got {x.dtype}.")
        return self._op(x, self.packed, bias, "none", [], "")

    def linear_activation(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor],
                          activation: tp.Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if activation is F.gelu and x.dtype == torch.float32:  # exact (erf) GELU, as F.gelu's default
            return self._op(x, self.packed, bias, "gelu", [], "none")
        if activation is F.relu and x.dtype == torch.float32:
            return self._op(x, self.packed, bias, "relu", [], "")
        return activation(self.linear(x, bias))

    def dense(self) -> torch.Tensor:
        return self.packed.to_dense().to(self.dtype)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * 4


class BF16Weight(PackedWeight):
    """Weight rounded to bfloat16, packed by fbgemm as float16; float32 activations and accumulation."""
    kind = "bf16"

    def __init__(self, weight: torch.Tensor, rows_hint: int) -> None:
        super().__init__(weight)
        rounded = weight.detach().to(torch.bfloat16).float()
        if bool(rounded.abs().max() > _FP16_MAX):
            raise ValueError(f"A weight holds values beyond float16's range ({_FP16_MAX}); bf16 packing needs it.")
        self.packed = torch.ops.quantized.linear_prepack_fp16(rounded.contiguous(), None)
        self._op = _raw(torch.ops.quantized.linear_dynamic_fp16.default)

    def linear(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        out = self._op(x if x.dtype == torch.float32 else x.float(), self.packed)
        return out if bias is None else out + bias

    def dense(self) -> torch.Tensor:
        return torch.ops.quantized.linear_unpack_fp16(self.packed)[0].to(self.dtype)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * 2


class Int8Weight(PackedWeight):
    """Symmetric int8 weight with one scale per output row, packed by fbgemm; activations are quantized to
    8 bits per call (dynamic, per tensor, 7-bit range as PyTorch's dynamic quantization does on x86), the products
    accumulated in int32 and rescaled to float32."""
    kind = "int8"

    def __init__(self, weight: torch.Tensor, rows_hint: int) -> None:
        super().__init__(weight)
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1).clamp_min(1e-12) / 127.0).double()
        zero_points = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch >= 2.10 flags quantized tensors as deprecated; fbgemm needs one
            warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated")
            qweight = torch.quantize_per_channel(w, scales, zero_points, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None)
        self._op = _raw(torch.ops.quantized.linear_dynamic.default)

    def linear(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        if x.dtype != torch.float32:
            return self.linear(x.float(), bias).to(x.dtype)
        out = self._op(x, self.packed, True)
        return out if bias is None else out + bias

    def dense(self) -> torch.Tensor:
        return torch.ops.quantized.linear_unpack(self.packed)[0].dequantize().to(self.dtype)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] + self.shape[0] * 12  # + per row: scale, zero point, column sum


class _NativePacked(PackedWeight):
    """A weight for the native matrix-vector kernels, stored in their packed layout (one stream of weights per
    block of rows) when its shape allows, else as a plain ``[out, in]`` matrix. Subclasses choose the number
    format in :meth:`_convert`; activations and accumulation are float32."""
    shares_parameter = False

    def __init__(self, weight: torch.Tensor, rows_hint: int) -> None:
        super().__init__(weight)
        self.scale: tp.Optional[torch.Tensor] = None
        plain = self._convert(weight.detach())
        self.is_packed = native_kernels.can_pack(self.shape, plain.dtype)
        self.stored = native_kernels.pack(plain) if self.is_packed else plain
        # the arguments of the kernel call that do not change: ~3 us less per call than linear_packed()
        self._call = native_kernels.bind(self.stored, self.scale, self.is_packed)
        self._in_features = self.shape[1]

    def _convert(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def linear(self, x: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        if bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous()):
            bias = bias.float().contiguous()
        if (x.dtype is torch.float32 and x.is_contiguous() and x.shape[-1] == self._in_features
                and x.device.type == "cpu"):
            return self._call(x, bias)  # the hot path of a decoding step
        if self.is_packed:
            out = native_kernels.linear_packed(x, self.stored, bias, self.scale)
        else:
            out = native_kernels.linear(x, self.stored, bias, self.scale)
        return out if x.dtype == torch.float32 else out.to(x.dtype)

    def _plain(self) -> torch.Tensor:
        return native_kernels.unpack(self.stored) if self.is_packed else self.stored

    @property
    def nbytes(self) -> int:
        scale_bytes = 0 if self.scale is None else self.scale.numel() * 4
        return self.stored.numel() * self.stored.element_size() + scale_bytes


class NativeWeight(_NativePacked):
    """float32 weight for the native kernels: exact float32 products, summed in a fixed order per output (the
    same for any number of rows). A weight whose shape cannot be packed is used in place: the module's
    Parameter keeps its data and this object holds a view of its rows."""
    kind = "native"

    def __init__(self, weight: torch.Tensor, rows_hint: int) -> None:
        if weight.dtype != torch.float32:
            raise ValueError(f"native packing needs a float32 weight, got {weight.dtype}.")
        super().__init__(weight, rows_hint)
        self.shares_parameter = not self.is_packed and weight.is_contiguous()

    def _convert(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.contiguous()  # the tensor itself when already contiguous

    def dense(self) -> torch.Tensor:
        return self._plain()


class NativeBF16Weight(_NativePacked):
    """Weight rounded to bfloat16 (2 bytes), expanded to float32 in registers by the native kernel."""
    kind = "bf16"

    def _convert(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.to(torch.bfloat16).contiguous()

    def dense(self) -> torch.Tensor:
        return self._plain().to(self.dtype)


class NativeInt8Weight(_NativePacked):
    """int8 weights, one scale per output row (symmetric, ``scale = max|row| / 127``); the native kernel quantizes
    each row of activations to int16 (its own scale, ``max|x| / 32767``) and sums the products exactly in
    integers: the error is that of the int8 weights (the int16 rounding of the activations is ~250x finer)."""
    kind = "int8"

    def _convert(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.float()
        peak = torch.linalg.vector_norm(w, ord=float("inf"), dim=1)  # max |row|, one pass, no temporary
        self.scale = (peak.clamp_min(1e-12) / 127.0).contiguous()
        # round(w / scale) in blocks of rows that stay in the cache (a 1.5B-parameter LM: one pass, not four)
        out = torch.empty(w.shape, dtype=torch.int8)
        rows = max(1, (256 * 1024) // max(1, w.shape[1]))
        buf = torch.empty(min(rows, w.shape[0]), w.shape[1])
        for r0 in range(0, w.shape[0], rows):
            r1 = min(r0 + rows, w.shape[0])
            block = buf[:r1 - r0]
            torch.div(w[r0:r1], self.scale[r0:r1, None], out=block)
            block.round_().clamp_(-127, 127)
            out[r0:r1].copy_(block)
        return out

    def dense(self) -> torch.Tensor:
        scale = tp.cast(torch.Tensor, self.scale)  # set by _convert
        return (self._plain().float() * scale[:, None]).to(self.dtype)


def _packer(kind: str) -> tp.Callable[[torch.Tensor, int], PackedWeight]:
    """The class for ``kind``: the native kernels where they are built, PyTorch's (oneDNN, fbgemm) otherwise."""
    native = native_kernels.available()
    if kind == "native":
        return NativeWeight
    if kind == "bf16":
        return NativeBF16Weight if native else BF16Weight
    if kind == "int8":
        return NativeInt8Weight if native else Int8Weight
    return OneDNNWeight


class PackableWeights(nn.Module):
    """Mixin put in front of a module class whose linear maps read row blocks of its own 2-D Parameters.

    Such a class lists those blocks in ``weight_pieces()`` and computes each map with ``linear_piece(x, piece,
    bias)`` (e.g. :class:`~audiocraft.modules.transformer.StreamingMultiheadAttention`). :func:`pack_linear_weights`
    gives the module the class ``packed_class(cls)``, whose :meth:`linear_piece` uses the packed weight when there
    is one and ``F.linear`` on the dense block otherwise; :func:`unpack_linear_weights` gives the class back.
    """

    weight_pieces: tp.Callable[[], WeightPieces]  # provided by the class it is put in front of

    @property
    def packed_kind(self) -> tp.Optional[str]:
        """The kind of packing in use, or None."""
        return self.__dict__.get("_packed_kind")

    def _pieces(self) -> WeightPieces:
        pieces = self.__dict__.get("_pieces_cache")
        if pieces is None:
            pieces = self.weight_pieces()
            self.__dict__["_pieces_cache"] = pieces
        return pieces

    def pack_weights(self, kind: str = "onednn", rows_hint: int = 2) -> int:
        """Pack this module's own weights (not its children's) with ``kind``; returns the number of pieces."""
        if kind not in PACK_KINDS:
            raise ValueError(f"Unknown packing kind {kind!r}; expected one of {PACK_KINDS}.")
        self.unpack_weights()
        pieces = self._pieces()
        packed: tp.Dict[str, PackedWeight] = {}
        with torch.no_grad():
            packer = _packer(kind)
            for piece, (name, start, end) in pieces.items():
                weight = getattr(self, name)
                packed[piece] = packer(weight[start:end], rows_hint)
            # one copy of each weight: the packed one, or the Parameter where a piece uses it in place
            for name in {name for name, _, _ in pieces.values()} - self._shared_names(packed):
                param = getattr(self, name)
                param.data = torch.empty(0, dtype=param.dtype, device=param.device)
        self.__dict__["_packed"] = packed
        self.__dict__["_packed_kind"] = kind
        return len(packed)

    def _shared_names(self, packed: tp.Dict[str, PackedWeight]) -> tp.Set[str]:
        """Parameters that keep their data while packed (a piece uses it in place)."""
        return {name for piece, (name, _, _) in self._pieces().items()
                if piece in packed and getattr(packed[piece], "shares_parameter", False)}

    def _dense_weights(self) -> tp.Dict[str, torch.Tensor]:
        """Parameter name -> dense weight rebuilt from the packed pieces (rows in order), for the Parameters
        emptied by packing."""
        packed: tp.Dict[str, PackedWeight] = self.__dict__.get("_packed") or {}
        shared = self._shared_names(packed)
        blocks: tp.Dict[str, tp.List[tp.Tuple[int, torch.Tensor]]] = {}
        for piece, (name, start, _) in self._pieces().items():
            if piece in packed and name not in shared:
                blocks.setdefault(name, []).append((start, packed[piece].dense()))
        return {name: torch.cat([block for _, block in sorted(parts, key=lambda p: p[0])], dim=0)
                for name, parts in blocks.items()}

    def unpack_weights(self) -> int:
        """Give the Parameters their dense weights back; returns the number of pieces unpacked."""
        packed = self.__dict__.get("_packed")
        if not packed:
            return 0
        for name, dense in self._dense_weights().items():
            getattr(self, name).data = dense
        self.__dict__["_packed"] = None
        self.__dict__["_packed_kind"] = None
        return len(packed)

    def linear_piece(self, x: torch.Tensor, piece: str, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        return self.packed_linear(x, piece, bias)

    def packed_linear(self, x: torch.Tensor, piece: str, bias: tp.Optional[torch.Tensor],
                      activation: tp.Optional[tp.Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        """The linear map of ``piece``: ``[..., in] -> [..., rows of the piece]``, then ``activation`` if given
        (fused into the kernel where it can be)."""
        packed = self.__dict__.get("_packed")
        if packed and not torch.is_grad_enabled():  # the fast path of inference
            if activation is None:
                return packed[piece].linear(x, bias)
            return packed[piece].linear_activation(x, bias, activation)
        out = self._linear(x, piece, bias)
        return out if activation is None else activation(out)

    def _linear(self, x: torch.Tensor, piece: str, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        packed = self.__dict__.get("_packed")
        if packed:
            name = self._pieces()[piece][0]
            if torch.is_grad_enabled() and getattr(self, name).requires_grad:
                warnings.warn(f"{type(self).__name__}: a packed weight needs gradients; unpacking it.", stacklevel=2)
                self.unpack_weights()
            else:
                return packed[piece].linear(x, bias)
        name, start, end = self._pieces()[piece]
        weight = getattr(self, name)
        if start != 0 or end != weight.shape[0]:
            weight = weight[start:end]
        return F.linear(x, weight, bias)

    # ---- keep the rest of nn.Module consistent --------------------------------------------------------
    def _save_to_state_dict(self, destination: tp.Dict[str, tp.Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.__dict__.get("_packed"):
            for name, dense in self._dense_weights().items():
                destination[prefix + name] = dense

    def _load_from_state_dict(self, state_dict: tp.Dict[str, tp.Any], prefix: str, *args: tp.Any,
                              **kwargs: tp.Any) -> None:
        kind, rows_hint = self.packed_kind, self.__dict__.get("_rows_hint", 2)
        self.unpack_weights()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if kind is not None:
            self.pack_weights(kind, rows_hint)

    def _apply(self, fn: tp.Callable[[torch.Tensor], torch.Tensor], *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        self.unpack_weights()
        return super()._apply(fn, *args, **kwargs)


class PackedLinear(PackableWeights, nn.Linear):
    """``nn.Linear`` whose weight may be packed (see :func:`pack_linear_weights`); same parameters and keys."""

    def weight_pieces(self) -> WeightPieces:
        return {"weight": ("weight", 0, self.out_features)}

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.packed_linear(input, "weight", self.bias)

    def forward_activation(self, input: torch.Tensor,
                           activation: tp.Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``activation(self(input))``, fused into the kernel where it can be."""
        return self.packed_linear(input, "weight", self.bias, activation)


_PACKED_CLASSES: tp.Dict[type, type] = {nn.Linear: PackedLinear}
_ORIGINAL_CLASSES: tp.Dict[type, type] = {PackedLinear: nn.Linear}


def packed_class(cls: type) -> type:
    """The class a module of class ``cls`` has while its weights are packed: :class:`PackedLinear` for
    ``nn.Linear``, ``Packed<cls>`` (:class:`PackableWeights` in front of ``cls``, same parameters and state-dict
    keys) for a class with ``weight_pieces``."""
    if issubclass(cls, PackableWeights):
        return cls
    packed = _PACKED_CLASSES.get(cls)
    if packed is None:
        if not callable(getattr(cls, "weight_pieces", None)):
            raise TypeError(f"{cls.__name__} cannot hold packed weights: it is not nn.Linear and has no "
                            "weight_pieces().")
        name = f"Packed{cls.__name__}"
        packed = type(name, (PackableWeights, cls), {"__module__": __name__, "__qualname__": name})
        if name not in globals():
            globals()[name] = packed  # picklable by name
        _PACKED_CLASSES[cls] = packed
        _ORIGINAL_CLASSES[packed] = cls
    return packed


def _is_packable(module: nn.Module) -> bool:
    if type(module) is nn.Linear or isinstance(module, PackableWeights):
        return True
    pieces: tp.Any = getattr(module, "weight_pieces", None)
    return callable(pieces) and bool(pieces())


def pack_linear_weights(module: nn.Module, kind: str = "onednn", rows_hint: int = 2,
                        release_sources: bool = False) -> int:
    """Pack, in place, every linear weight under ``module``: plain ``nn.Linear`` submodules (their class becomes
    :class:`PackedLinear`, same parameters) and modules with ``weight_pieces`` (their class becomes
    ``packed_class(cls)``). Returns the pieces packed.

    Args:
        kind: one of :data:`PACK_KINDS` (see the module docstring for what each computes).
        rows_hint: rows the inputs are expected to have (oneDNN picks its layout for it; any count works).
        release_sources: after packing each module, release the pages of its former dense weights that are
            mapped from a checkpoint file (see :class:`audiocraft.utils.checkpoint_io.FilePages`), so that
            packing a memory-mapped model never holds two copies of it in memory.
    Raises:
        ValueError: unknown kind, or a weight not on the CPU / not floating point.
        RuntimeError: this PyTorch build lacks the kernels of ``kind``.
    """
    if kind not in PACK_KINDS:
        raise ValueError(f"Unknown packing kind {kind!r}; expected one of {PACK_KINDS}.")
    if not packing_available(kind):
        raise RuntimeError(f"This PyTorch build has no kernels for {kind!r} packing.")
    if not isinstance(rows_hint, int) or rows_hint < 1:
        raise ValueError(f"rows_hint must be a positive int, got {rows_hint!r}.")
    targets = [child for child in module.modules() if _is_packable(child)]
    for child in targets:
        pieces_of: tp.Any = getattr(child, "weight_pieces", None)
        pieces: WeightPieces = pieces_of() if pieces_of is not None else {"weight": ("weight", 0, 0)}
        for name in {name for name, _, _ in pieces.values()}:
            weight = getattr(child, name)
            if weight.device.type != "cpu" or not weight.is_floating_point():
                raise ValueError(f"Packing needs floating point CPU weights; {type(child).__name__}.{name} is "
                                 f"{weight.dtype} on {weight.device}.")
    count = 0
    pages = FilePages() if release_sources else None
    for child in targets:
        child.__class__ = packed_class(type(child))
        assert isinstance(child, PackableWeights)
        child.__dict__["_rows_hint"] = rows_hint
        sources = [getattr(child, name).data for name in {name for name, _, _ in child._pieces().values()}]
        count += child.pack_weights(kind, rows_hint)
        if pages is not None:
            pages.release(sources)
        del sources
    release_free_memory()
    return count


def release_free_memory() -> bool:
    """Give the memory freed by packing back to the OS (glibc keeps freed heap blocks, which inflates the
    resident size by up to the size of the dense weights). Returns whether it could (glibc only)."""
    try:
        import ctypes
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def unpack_linear_weights(module: nn.Module) -> int:
    """Undo :func:`pack_linear_weights` (quantized weights come back dequantized). Returns the pieces unpacked."""
    count = 0
    for child in module.modules():
        if isinstance(child, PackableWeights):
            count += child.unpack_weights()
        original = _ORIGINAL_CLASSES.get(type(child))
        if original is not None:
            child.__class__ = original
    release_free_memory()
    return count


def packed_weight_bytes(module: nn.Module) -> int:
    """Bytes held by the packed weights under ``module``."""
    total = 0
    for child in module.modules():
        packed = child.__dict__.get("_packed") if isinstance(child, PackableWeights) else None
        total += sum(p.nbytes for p in (packed or {}).values())
    return total
