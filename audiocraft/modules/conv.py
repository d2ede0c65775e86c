"""1D convolutions with Audiocraft's padding rules, optional weight norm, and exact streaming.

``StreamableConv1d`` pads its input so that every input sample is covered by a window ("same" length at
stride 1, ``ceil(T / stride)`` frames otherwise):

- causal: the whole ``kernel_size_eff - stride`` padding goes on the left;
- non-causal: ``padding_total // 2`` on the right and the rest on the left;
- plus ``get_extra_padding_for_conv1d`` zeros/reflection on the right so that the last window is complete.

``StreamableConvTranspose1d`` runs a plain transposed convolution and trims ``kernel_size - stride`` samples:
all on the right for causal models (``trim_right_ratio`` of them, the rest on the left), half/half otherwise.

Streaming (inside ``with module.streaming():``) is exact: concatenating the outputs of successive calls and
of a final ``flush()`` gives the same tensor as one call on the concatenated input. A call returns only the
output samples that no future input can change, so a non-causal convolution holds back its right padding
(``padding_total // 2`` samples at its input rate, its *lookahead*) until more input or ``flush()`` arrives;
``flush()`` pads the end of the stream exactly like the one-shot path and resets the module for a new stream.

Weight norm uses the legacy ``torch.nn.utils.weight_norm`` layout of the official checkpoints: parameters
``weight_g`` (``[C_out, 1, 1]``, one gain per slice along dim 0) and ``weight_v`` (the direction), with
``weight = weight_g * weight_v / ||weight_v||`` (norm over every dim but 0).
"""
from __future__ import annotations

import dataclasses
import math
import typing as tp
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from .streaming import StreamingError, StreamingModule, StreamingState
from ..utils.validation import ArgumentError

CONV_NORMALIZATIONS = frozenset(["none", "weight_norm", "spectral_norm", "time_group_norm"])
PAD_MODES = frozenset(["constant", "reflect", "replicate", "circular"])


# ---------------------------------------------------------------------------------------------- padding helpers
def _extra_padding(length: int, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    """Right padding needed so that the last window over ``length + padding_total`` samples is complete."""
    span = length - kernel_size + padding_total
    n_windows_minus_one = -((-span) // stride)  # ceil(span / stride), exact integer arithmetic
    ideal_length = n_windows_minus_one * stride + kernel_size - padding_total
    return ideal_length - length


def get_extra_padding_for_conv1d(x: torch.Tensor, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    """Extra right padding for ``x`` ``[..., T]`` so that a strided conv sees full windows up to its end.

    With ``padding_total`` already planned, the conv produces ``ceil((T - kernel_size + padding_total) / stride)
    + 1`` frames once this many samples are appended, and no input sample is dropped.
    """
    return _extra_padding(x.shape[-1], kernel_size, stride, padding_total)


def pad_for_conv1d(x: torch.Tensor, kernel_size: int, stride: int, padding_total: int = 0) -> torch.Tensor:
    """Zero-pad ``x`` ``[..., T]`` on the right by ``get_extra_padding_for_conv1d``."""
    return F.pad(x, (0, get_extra_padding_for_conv1d(x, kernel_size, stride, padding_total)))


def pad1d(x: torch.Tensor, paddings: tp.Tuple[int, int], mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """``F.pad`` on the last dim of ``x`` ``[B, C, T]``, where ``reflect`` also works when ``T <= padding``.

    For reflection of an input shorter than the padding, the input is first extended with zeros to
    ``max(paddings) + 1`` samples, reflected, and the added zeros removed again.
    """
    padding_left, padding_right = paddings
    if padding_left < 0 or padding_right < 0:
        raise ArgumentError(f"paddings must be non-negative, got {paddings}")
    if mode != "reflect":
        if mode == "constant":
            return F.pad(x, (padding_left, padding_right), mode, value)
        return F.pad(x, (padding_left, padding_right), mode)
    length = x.shape[-1]
    max_pad = max(padding_left, padding_right)
    extra = max_pad - length + 1 if length <= max_pad else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (padding_left, padding_right), mode)
    return padded[..., :padded.shape[-1] - extra]


def unpad1d(x: torch.Tensor, paddings: tp.Tuple[int, int]) -> torch.Tensor:
    """Remove ``paddings = (left, right)`` samples from the last dim of ``x``."""
    padding_left, padding_right = paddings
    if padding_left < 0 or padding_right < 0:
        raise ArgumentError(f"paddings must be non-negative, got {paddings}")
    if padding_left + padding_right > x.shape[-1]:
        raise ArgumentError(f"cannot remove paddings {paddings} from a signal of length {x.shape[-1]}")
    return x[..., padding_left:x.shape[-1] - padding_right]


# ---------------------------------------------------------------------------------------------- weight norm
def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    """L2 norm of each slice ``v[i]``, shaped ``[v.shape[0], 1, ..., 1]``."""
    return torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)


def _weight_norm_weight(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    return weight_v * (weight_g / _norm_except_dim0(weight_v))


def _to_weight_norm(module: nn.Module) -> None:
    """Replace ``module.weight`` by the parameters ``weight_g`` / ``weight_v`` (same effective weight)."""
    weight = module._parameters.pop("weight")
    assert weight is not None
    if weight.is_meta:  # shapes only (norms on meta tensors go through slow decompositions)
        gain = weight.new_empty((weight.shape[0],) + (1,) * (weight.dim() - 1))
    else:
        gain = _norm_except_dim0(weight.detach())
    module.weight_g = nn.Parameter(gain)
    module.weight_v = nn.Parameter(weight.detach())


class _LegacyWeightNorm(nn.Module):
    """Put in front of a convolution class: legacy weight norm, parameters ``bias``, ``weight_g``, ``weight_v``.

    ``self.weight`` still reads as the effective weight (computed on access, differentiable).
    """

    def __init__(self, *args: tp.Any, **kwargs: tp.Any) -> None:
        super().__init__(*args, **kwargs)
        _to_weight_norm(self)

    def __getattr__(self, name: str) -> tp.Any:
        if name == "weight" and "weight_v" in self._parameters:
            return _weight_norm_weight(self.weight_g, self.weight_v)
        return super().__getattr__(name)


class _WeightNormConv1d(_LegacyWeightNorm, nn.Conv1d):
    """``nn.Conv1d`` with legacy weight norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _weight_norm_weight(self.weight_g, self.weight_v), self.bias)


class _WeightNormConvTranspose1d(_LegacyWeightNorm, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with legacy weight norm (``weight_g`` is ``[C_in, 1, 1]``, as torch's dim=0)."""

    def forward(self, x: torch.Tensor, output_size: tp.Optional[tp.List[int]] = None) -> torch.Tensor:
        if output_size is not None:
            raise ArgumentError("output_size is not supported by the weight-normed transposed convolution")
        weight = _weight_norm_weight(self.weight_g, self.weight_v)
        padding = tp.cast(tp.Tuple[int], self.padding)
        return F.conv_transpose1d(x, weight, self.bias, self.stride, padding, self.output_padding,
                                  self.groups, self.dilation)


def _check_norm(norm: str) -> None:
    if norm not in CONV_NORMALIZATIONS:
        raise ArgumentError(f"norm={norm!r} is not supported; allowed: {sorted(CONV_NORMALIZATIONS)}")


def _norm_module(out_channels: int, causal: bool, norm: str, norm_kwargs: tp.Dict[str, tp.Any]) -> nn.Module:
    if norm == "time_group_norm":
        if causal:
            raise ArgumentError("norm='time_group_norm' normalises over time and cannot be causal (causal=True)")
        return nn.GroupNorm(1, out_channels, **norm_kwargs)
    return nn.Identity()


class NormConv1d(nn.Module):
    """``nn.Conv1d`` (attribute ``conv``) followed by an optional normalisation (attribute ``norm``).

    Args:
        norm: one of ``none``, ``weight_norm`` (legacy ``weight_g``/``weight_v`` parameters),
            ``spectral_norm`` (``torch.nn.utils.spectral_norm``) or ``time_group_norm`` (``GroupNorm(1, C)``).
        norm_kwargs: keyword arguments of the ``GroupNorm`` for ``time_group_norm``.
    Input ``[B, C_in, T]`` -> ``[B, C_out, T']`` (no implicit padding beyond ``padding``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, *, causal: bool = False,
                 norm: str = "none", norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None) -> None:
        super().__init__()
        _check_norm(norm)
        conv_cls = _WeightNormConv1d if norm == "weight_norm" else nn.Conv1d
        self.conv: nn.Conv1d = conv_cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                        dilation=dilation, groups=groups, bias=bias)
        if norm == "spectral_norm":
            self.conv = nn.utils.spectral_norm(self.conv)
        self.norm = _norm_module(out_channels, causal, norm, dict(norm_kwargs or {}))
        self.norm_type = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class NormConvTranspose1d(nn.Module):
    """``nn.ConvTranspose1d`` (attribute ``convtr``) followed by an optional normalisation (``norm``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 output_padding: int = 0, groups: int = 1, bias: bool = True, dilation: int = 1, *,
                 causal: bool = False, norm: str = "none",
                 norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None) -> None:
        super().__init__()
        _check_norm(norm)
        conv_cls = _WeightNormConvTranspose1d if norm == "weight_norm" else nn.ConvTranspose1d
        self.convtr: nn.ConvTranspose1d = conv_cls(in_channels, out_channels, kernel_size, stride=stride,
                                                   padding=padding, output_padding=output_padding, groups=groups,
                                                   bias=bias, dilation=dilation)
        if norm == "spectral_norm":
            self.convtr = nn.utils.spectral_norm(self.convtr)
        self.norm = _norm_module(out_channels, causal, norm, dict(norm_kwargs or {}))
        self.norm_type = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.convtr(x))


def _streaming_weight(module: nn.Module, norm_type: str, owner: str) -> tp.Optional[torch.Tensor]:
    """Effective weight to reuse for a whole stream, or None when it must be recomputed at every call."""
    if norm_type in ("time_group_norm", "spectral_norm"):
        raise StreamingError(f"{owner} with norm={norm_type!r} cannot stream (only 'none' and 'weight_norm' can).")
    weight = tp.cast(torch.Tensor, module.weight)
    if torch.is_grad_enabled() and weight.requires_grad:
        return None  # keep the autograd graph: recompute at every call
    return weight.detach()


# ---------------------------------------------------------------------------------------------- streamable conv
@dataclasses.dataclass
class _Conv1dState(StreamingState):
    buffer: torch.Tensor  # [B, C_in, n] input not consumed yet (left padding included once started)
    tail: torch.Tensor  # [B, C_in, m] last raw input samples (non-constant pad modes only, else m = 0)
    seen: int  # raw input samples received
    emitted: int  # output frames returned
    started: bool  # left padding applied (reflect/replicate wait for enough samples)
    weight: tp.Optional[torch.Tensor]  # effective weight reused during the stream (None: recompute)


class StreamableConv1d(StreamingModule[_Conv1dState]):
    """Conv1d with Audiocraft's asymmetric padding; exact streaming with ``lookahead`` input samples.

    Args:
        causal: pad only on the left (no lookahead).
        norm, norm_kwargs: see ``NormConv1d``.
        pad_mode: ``constant`` (zeros), ``reflect``, ``replicate`` (or ``circular``, not streamable).
    Input ``[B, C_in, T]`` -> ``[B, C_out, ceil(T / stride)]``. Submodule ``conv`` (a ``NormConv1d``).
    """

    state_cls = _Conv1dState

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True, causal: bool = False, norm: str = "none",
                 norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None, pad_mode: str = "reflect") -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ArgumentError(f"pad_mode={pad_mode!r} is not supported; allowed: {sorted(PAD_MODES)}")
        if stride > 1 and dilation > 1:
            warnings.warn(f"StreamableConv1d has been initialized with stride > 1 and dilation > 1 "
                          f"(kernel_size={kernel_size} stride={stride}, dilation={dilation}).")
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups,
                               bias=bias, causal=causal, norm=norm, norm_kwargs=norm_kwargs)
        self.causal = causal
        self.pad_mode = pad_mode

    # ---- geometry ------------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        return int(self.conv.conv.stride[0])

    @property
    def effective_kernel_size(self) -> int:
        """Kernel span including dilation: ``(kernel_size - 1) * dilation + 1``."""
        return (int(self.conv.conv.kernel_size[0]) - 1) * int(self.conv.conv.dilation[0]) + 1

    @property
    def paddings(self) -> tp.Tuple[int, int]:
        """``(left, right)`` padding before the end-of-signal extra padding."""
        total = self.effective_kernel_size - self.stride
        right = 0 if self.causal else total // 2
        return total - right, right

    @property
    def lookahead(self) -> int:
        """Input samples a streamed output waits for beyond its own position (right padding)."""
        return self.paddings[1]

    # ---- one-shot ------------------------------------------------------------------------------
    def _forward_full(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.paddings
        right += _extra_padding(x.shape[-1], self.effective_kernel_size, self.stride, left + right)
        if self.pad_mode == "constant" and left == right and self.conv.norm_type in ("none", "weight_norm"):
            # symmetric zero padding: let the convolution pad (no padded copy of x)
            conv = self.conv.conv
            y = F.conv1d(x, conv.weight, conv.bias, conv.stride, left, conv.dilation, conv.groups)
            return self.conv.norm(y)
        return self.conv(pad1d(x, (left, right), mode=self.pad_mode))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming:
            return self._forward_full(x)
        return self._forward_stream(x)

    # ---- streaming -----------------------------------------------------------------------------
    def _tail_capacity(self) -> int:
        if self.pad_mode == "constant":
            return 0
        left, right = self.paddings
        return max(left, right + self.stride - 1) + 1

    def _init_streaming_state(self, x: torch.Tensor) -> _Conv1dState:
        if self.pad_mode == "circular":
            raise StreamingError("StreamableConv1d with pad_mode='circular' cannot stream (it needs the signal end).")
        weight = _streaming_weight(self.conv.conv, self.conv.norm_type, type(self).__name__)
        empty = x[..., :0]
        started = self.pad_mode == "constant"
        buffer = F.pad(empty, (self.paddings[0], 0)) if started else empty
        return _Conv1dState(buffer=buffer, tail=empty, seen=0, emitted=0, started=started, weight=weight)

    def _empty_output(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.conv.conv.out_channels, 0)

    def _conv(self, state: _Conv1dState, x: torch.Tensor) -> torch.Tensor:
        if state.weight is None:
            return self.conv(x)
        conv = self.conv.conv
        return F.conv1d(x, state.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    def _consume(self, state: _Conv1dState) -> torch.Tensor:
        """Run the conv on every complete window of the buffer and drop the consumed samples."""
        kernel, stride = self.effective_kernel_size, self.stride
        length = state.buffer.shape[-1]
        if length < kernel:
            return self._empty_output(state.buffer)
        n_frames = (length - kernel) // stride + 1
        out = self._conv(state, state.buffer[..., :(n_frames - 1) * stride + kernel])
        state.buffer = state.buffer[..., n_frames * stride:]
        state.emitted += n_frames
        return out

    def _forward_stream(self, x: torch.Tensor) -> torch.Tensor:
        state = self._get_or_init_state(x)
        if x.shape[-1] == 0:
            return self._empty_output(x)
        state.seen += x.shape[-1]
        capacity = self._tail_capacity()
        if capacity:
            state.tail = torch.cat([state.tail, x], dim=-1)[..., -capacity:]
        state.buffer = torch.cat([state.buffer, x], dim=-1)
        if not state.started:
            left = self.paddings[0]
            needed = left + 1 if self.pad_mode == "reflect" else 1
            if state.buffer.shape[-1] < needed:
                return self._empty_output(x)
            state.buffer = pad1d(state.buffer, (left, 0), mode=self.pad_mode)
            state.started = True
        return self._consume(state)

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End the stream: process ``x`` if given, pad the end as the one-shot path does, return the rest.

        Returns None if the stream received no input at all. The module is then ready for a new stream.
        """
        if not self.is_streaming:
            return None if x is None else self(x)
        head = None if x is None else self._forward_stream(x)
        state = self._streaming_state
        self._streaming_state = None
        if state is None or state.seen == 0:
            return head
        capacity = self._tail_capacity()
        if capacity and state.seen <= capacity:
            # Short stream with a data-dependent padding: redo it in one shot, skip what was returned.
            rest = self._forward_full(state.tail)[..., state.emitted:]
        else:
            left, right = self.paddings
            right += _extra_padding(state.seen, self.effective_kernel_size, self.stride, left + right)
            if right:
                if capacity:
                    pad = pad1d(state.tail, (0, right), mode=self.pad_mode)[..., -right:]
                else:
                    pad = F.pad(state.buffer[..., :0], (0, right))
                state.buffer = torch.cat([state.buffer, pad], dim=-1)
            rest = self._consume(state)
        return rest if head is None else torch.cat([head, rest], dim=-1)


@dataclasses.dataclass
class _ConvTr1dState(StreamingState):
    partial: tp.Optional[torch.Tensor]  # [B, C_out, kernel - stride] overlap-add tail, bias not added
    to_trim: int  # output samples still to drop on the left
    weight: tp.Optional[torch.Tensor]  # effective weight reused during the stream (None: recompute)


class StreamableConvTranspose1d(StreamingModule[_ConvTr1dState]):
    """ConvTranspose1d that trims ``kernel_size - stride`` samples, Audiocraft style; exact streaming.

    Args:
        causal: trim ``ceil(padding_total * trim_right_ratio)`` samples on the right and the rest on the left
            (else half on the right, rest on the left).
        trim_right_ratio: share of the trimming done on the right for causal convs (1.0: all).
    Input ``[B, C_in, T]`` -> ``[B, C_out, T * stride]`` when ``kernel_size >= stride``.
    Submodule ``convtr`` (a ``NormConvTranspose1d``).

    Streaming: output positions ``< T_seen * stride`` are final once ``T_seen`` input frames arrived; the
    ``kernel_size - stride`` overlapping samples wait for the next frame (or ``flush()``).
    """

    state_cls = _ConvTr1dState

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 causal: bool = False, norm: str = "none", trim_right_ratio: float = 1.0,
                 norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None) -> None:
        super().__init__()
        if not (causal or trim_right_ratio == 1.0):
            raise ArgumentError(f"trim_right_ratio={trim_right_ratio} != 1.0 only makes sense for causal convs")
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ArgumentError(f"trim_right_ratio must be in [0, 1], got {trim_right_ratio}")
        if kernel_size < stride:
            raise ArgumentError(f"kernel_size={kernel_size} must be >= stride={stride}")
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride, causal=causal, norm=norm,
                                          norm_kwargs=norm_kwargs)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio

    @property
    def stride(self) -> int:
        return int(self.convtr.convtr.stride[0])

    @property
    def paddings(self) -> tp.Tuple[int, int]:
        """``(left, right)`` output samples trimmed from the full transposed convolution."""
        total = int(self.convtr.convtr.kernel_size[0]) - self.stride
        right = math.ceil(total * self.trim_right_ratio) if self.causal else total // 2
        return total - right, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming:
            return unpad1d(self.convtr(x), self.paddings)
        return self._forward_stream(x)

    # ---- streaming -----------------------------------------------------------------------------
    def _init_streaming_state(self, x: torch.Tensor) -> _ConvTr1dState:
        weight = _streaming_weight(self.convtr.convtr, self.convtr.norm_type, type(self).__name__)
        return _ConvTr1dState(partial=None, to_trim=self.paddings[0], weight=weight)

    def _emit(self, state: _ConvTr1dState, y: torch.Tensor) -> torch.Tensor:
        bias = self.convtr.convtr.bias
        if bias is not None:
            y = y + bias[:, None]
        if state.to_trim:
            drop = min(state.to_trim, y.shape[-1])
            y = y[..., drop:]
            state.to_trim -= drop
        return y

    def _forward_stream(self, x: torch.Tensor) -> torch.Tensor:
        state = self._get_or_init_state(x)
        conv = self.convtr.convtr
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], conv.out_channels, 0)
        weight = state.weight if state.weight is not None else conv.weight
        y = F.conv_transpose1d(x, weight, None, conv.stride, 0, 0, conv.groups, conv.dilation)
        if state.partial is not None:
            overlap = state.partial.shape[-1]
            y = torch.cat([y[..., :overlap] + state.partial, y[..., overlap:]], dim=-1)
        n_final = x.shape[-1] * self.stride
        state.partial = y[..., n_final:]
        return self._emit(state, y[..., :n_final])

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End the stream: process ``x`` if given and return the overlap tail minus the right trim."""
        if not self.is_streaming:
            return None if x is None else self(x)
        head = None if x is None else self._forward_stream(x)
        state = self._streaming_state
        self._streaming_state = None
        if state is None or state.partial is None:
            return head
        keep = state.partial.shape[-1] - self.paddings[1]
        rest = self._emit(state, state.partial[..., :max(keep, 0)])
        return rest if head is None else torch.cat([head, rest], dim=-1)
