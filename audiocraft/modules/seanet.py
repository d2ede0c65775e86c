"""SEANet encoder / decoder (the convolutional auto-encoder of EnCodec), with exact streaming.

Encoder: ``[B, channels, T]`` -> ``[B, dimension, ceil(T / hop_length)]``, ``hop_length = prod(ratios)``.
Decoder: ``[B, dimension, F]`` -> ``[B, channels, F * hop_length]``.

Both keep their layers in ``model`` (a sequential, so parameters read ``encoder.model.<i>...`` like the
official checkpoints) and stream: inside ``with decoder.streaming():`` each call decodes the new latent frames
and returns the audio samples that are final; ``decoder.flush()`` ends the stream and returns the rest. The
concatenation equals the one-shot decoding (up to float round-off). For a causal decoder nothing is held back
(``streaming_delay == 0``); a non-causal decoder holds back ``streaming_delay`` output samples, the sum of the
right paddings of its convolutions and the left trims of its transposed convolutions, each scaled to the
output rate (2402 samples = 3.75 frames for the MusicGen 32 kHz EnCodec).
"""
from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np
import torch
from torch import nn

from .conv import StreamableConv1d, StreamableConvTranspose1d
from .lstm import StreamableLSTM
from .streaming import StreamingModule, StreamingSequential, StreamingState
from ..utils.validation import ArgumentError


def _activation(name: str, params: tp.Optional[tp.Dict[str, tp.Any]], argument: str) -> nn.Module:
    klass = getattr(nn, name, None) if isinstance(name, str) else None
    if not (isinstance(klass, type) and issubclass(klass, nn.Module)):
        raise ArgumentError(f"{argument}={name!r} is not a torch.nn activation class name (e.g. 'ELU', 'ReLU')")
    return klass(**(params or {}))


@dataclasses.dataclass
class _ResnetState(StreamingState):
    pending: torch.Tensor  # [B, C, n] shortcut output waiting for the (delayed) block output


class SEANetResnetBlock(StreamingModule[_ResnetState]):
    """Residual block ``shortcut(x) + block(x)``; ``block`` = (activation, conv) per kernel size.

    Args:
        dim: channels in and out.
        kernel_sizes, dilations: per conv of the block (Audiocraft: ``[residual_kernel_size, 1]``).
        compress: hidden channels are ``dim // compress``.
        true_skip: identity shortcut; else a 1x1 ``StreamableConv1d``.
    Input ``[B, dim, T]`` -> ``[B, dim, T]``.
    """

    state_cls = _ResnetState

    def __init__(self, dim: int, kernel_sizes: tp.Sequence[int] = (3, 1), dilations: tp.Sequence[int] = (1, 1),
                 activation: str = "ELU", activation_params: tp.Optional[tp.Dict[str, tp.Any]] = None,
                 norm: str = "none", norm_params: tp.Optional[tp.Dict[str, tp.Any]] = None, causal: bool = False,
                 pad_mode: str = "reflect", compress: int = 2, true_skip: bool = True) -> None:
        super().__init__()
        if len(kernel_sizes) != len(dilations):
            raise ArgumentError(f"kernel_sizes {list(kernel_sizes)} and dilations {list(dilations)} differ in length")
        if activation_params is None:
            activation_params = {"alpha": 1.0}
        hidden = dim // compress
        layers: tp.List[nn.Module] = []
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations)):
            in_chs = dim if i == 0 else hidden
            out_chs = dim if i == len(kernel_sizes) - 1 else hidden
            layers += [_activation(activation, activation_params, "activation"),
                       StreamableConv1d(in_chs, out_chs, kernel_size=kernel_size, dilation=dilation, norm=norm,
                                        norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)]
        self.block = StreamingSequential(*layers)
        self.shortcut: nn.Module
        if true_skip:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = StreamableConv1d(dim, dim, kernel_size=1, norm=norm, norm_kwargs=norm_params,
                                             causal=causal, pad_mode=pad_mode)

    def _init_streaming_state(self, x: torch.Tensor) -> _ResnetState:
        return _ResnetState(pending=x[..., :0])

    def _merge(self, skip: tp.Optional[torch.Tensor], out: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        """Add the block output to the shortcut samples of the same positions (the block lags behind)."""
        state = self._streaming_state
        assert state is not None
        if skip is not None:
            state.pending = torch.cat([state.pending, skip], dim=-1)
        if out is None:
            return None
        n = out.shape[-1]
        result = state.pending[..., :n] + out
        state.pending = state.pending[..., n:]
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming:
            return self.shortcut(x) + self.block(x)
        self._get_or_init_state(x)
        out = self._merge(self.shortcut(x), self.block(x))
        assert out is not None
        return out

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End the stream: process ``x`` if given, then flush the block and return the remaining samples."""
        if not self.is_streaming:
            return None if x is None else self(x)
        if x is not None:
            self._get_or_init_state(x)
        if self._streaming_state is None:
            return None
        if isinstance(self.shortcut, StreamingModule):
            skip = self.shortcut.flush(x)
        else:
            skip = None if x is None else self.shortcut(x)
        out = self._merge(skip, self.block.flush(x))
        self._streaming_state = None
        return out


def _stream_lag(module: nn.Module) -> tp.Tuple[int, int]:
    """``(up, lag)`` such that ``n`` final input samples give ``up * n - lag`` final outputs (steady state)."""
    if isinstance(module, StreamableConv1d):
        if module.stride != 1:
            raise ArgumentError("streaming_delay is only defined for stride-1 convolutions (decoder side)")
        return 1, module.lookahead
    if isinstance(module, StreamableConvTranspose1d):
        return module.stride, module.paddings[0]
    if isinstance(module, SEANetResnetBlock):
        return _stream_lag(module.block)
    if isinstance(module, nn.Sequential):
        up, lag = 1, 0
        for child in module:
            child_up, child_lag = _stream_lag(child)
            up, lag = up * child_up, lag * child_up + child_lag
        return up, lag
    return 1, 0


def _check_disable_norm(disable_norm_outer_blocks: int, n_blocks: int) -> None:
    if not 0 <= disable_norm_outer_blocks <= n_blocks:
        raise ArgumentError(f"disable_norm_outer_blocks={disable_norm_outer_blocks} must be in [0, {n_blocks}] "
                            f"(number of blocks = len(ratios) + 2)")


class _SEANet(StreamingModule):
    """What the encoder and the decoder share: their geometry attributes and the residual stacks."""

    def _setup(self, channels: int, dimension: int, n_filters: int, n_residual_layers: int, ratios: tp.List[int],
               disable_norm_outer_blocks: int, activation_params: tp.Optional[tp.Dict[str, tp.Any]]
               ) -> tp.Dict[str, tp.Any]:
        """Store the geometry (``ratios`` in the order they are applied); returns the activation parameters."""
        self.channels = channels
        self.dimension = dimension
        self.n_filters = n_filters
        self.ratios = ratios
        self.n_residual_layers = n_residual_layers
        self.hop_length = int(np.prod(self.ratios))
        self.n_blocks = len(self.ratios) + 2
        self.disable_norm_outer_blocks = disable_norm_outer_blocks
        _check_disable_norm(disable_norm_outer_blocks, self.n_blocks)
        return {"alpha": 1.0} if activation_params is None else activation_params

    def _residual_blocks(self, dim: int, norm: str, residual_kernel_size: int, dilation_base: int,
                         **kwargs: tp.Any) -> tp.List[nn.Module]:
        """``n_residual_layers`` residual blocks of width ``dim``, the j-th dilated by ``dilation_base ** j``."""
        return [SEANetResnetBlock(dim, kernel_sizes=[residual_kernel_size, 1], dilations=[dilation_base ** j, 1],
                                  norm=norm, **kwargs)
                for j in range(self.n_residual_layers)]


class SEANetEncoder(_SEANet):
    """SEANet encoder: conv, then per ratio (residual blocks, activation, strided conv), LSTM, final conv.

    Args (Audiocraft names): channels, dimension (latent size), n_filters (base width, doubled per ratio),
    n_residual_layers, ratios (downsampling, applied in reverse order), activation / activation_params,
    norm / norm_params, kernel_size, last_kernel_size, residual_kernel_size, dilation_base (dilation of the
    j-th residual layer is ``dilation_base ** j``), causal, pad_mode, true_skip, compress, lstm (number of LSTM
    layers, 0 for none), disable_norm_outer_blocks (no norm in that many outer blocks).
    Input ``[B, channels, T]`` -> ``[B, dimension, ceil(T / hop_length)]``.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32, n_residual_layers: int = 3,
                 ratios: tp.Sequence[int] = (8, 5, 4, 2), activation: str = "ELU",
                 activation_params: tp.Optional[tp.Dict[str, tp.Any]] = None, norm: str = "none",
                 norm_params: tp.Optional[tp.Dict[str, tp.Any]] = None, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 causal: bool = False, pad_mode: str = "reflect", true_skip: bool = True, compress: int = 2,
                 lstm: int = 0, disable_norm_outer_blocks: int = 0) -> None:
        super().__init__()
        activation_params = self._setup(channels, dimension, n_filters, n_residual_layers,
                                        list(reversed(list(ratios))), disable_norm_outer_blocks, activation_params)
        conv_args: tp.Dict[str, tp.Any] = dict(norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)
        resnet_args: tp.Dict[str, tp.Any] = dict(
            residual_kernel_size=residual_kernel_size, dilation_base=dilation_base, norm_params=norm_params,
            activation=activation, activation_params=activation_params, causal=causal, pad_mode=pad_mode,
            compress=compress, true_skip=true_skip)

        mult = 1
        layers: tp.List[nn.Module] = [
            StreamableConv1d(channels, mult * n_filters, kernel_size,
                             norm="none" if disable_norm_outer_blocks >= 1 else norm, **conv_args)]
        for i, ratio in enumerate(self.ratios):
            block_norm = "none" if disable_norm_outer_blocks >= i + 2 else norm
            layers += self._residual_blocks(mult * n_filters, block_norm, **resnet_args)
            layers += [_activation(activation, activation_params, "activation"),
                       StreamableConv1d(mult * n_filters, mult * n_filters * 2, kernel_size=ratio * 2, stride=ratio,
                                        norm=block_norm, **conv_args)]
            mult *= 2
        if lstm:
            layers.append(StreamableLSTM(mult * n_filters, num_layers=lstm))
        layers += [_activation(activation, activation_params, "activation"),
                   StreamableConv1d(mult * n_filters, dimension, last_kernel_size,
                                    norm="none" if disable_norm_outer_blocks == self.n_blocks else norm,
                                    **conv_args)]
        self.model = StreamingSequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, channels, T]`` -> ``[B, dimension, frames]`` (in streaming: the frames that are final)."""
        return self.model(x)

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End an encoder stream: the last latent frames (end padding applied), None if nothing was fed."""
        return self.model.flush(x)


class SEANetDecoder(_SEANet):
    """SEANet decoder, mirror of the encoder: conv, LSTM, per ratio (activation, transposed conv, residual
    blocks), activation, final conv, optional final activation.

    Args: as ``SEANetEncoder`` (ratios are upsampling factors, applied in the given order), plus
    trim_right_ratio (transposed-conv trimming of causal models), final_activation / final_activation_params.
    Input ``[B, dimension, F]`` -> ``[B, channels, F * hop_length]``.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32, n_residual_layers: int = 3,
                 ratios: tp.Sequence[int] = (8, 5, 4, 2), activation: str = "ELU",
                 activation_params: tp.Optional[tp.Dict[str, tp.Any]] = None,
                 final_activation: tp.Optional[str] = None,
                 final_activation_params: tp.Optional[tp.Dict[str, tp.Any]] = None, norm: str = "none",
                 norm_params: tp.Optional[tp.Dict[str, tp.Any]] = None, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                 causal: bool = False, pad_mode: str = "reflect", true_skip: bool = True, compress: int = 2,
                 lstm: int = 0, disable_norm_outer_blocks: int = 0, trim_right_ratio: float = 1.0) -> None:
        super().__init__()
        activation_params = self._setup(channels, dimension, n_filters, n_residual_layers, list(ratios),
                                        disable_norm_outer_blocks, activation_params)
        conv_args: tp.Dict[str, tp.Any] = dict(norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)
        resnet_args: tp.Dict[str, tp.Any] = dict(
            residual_kernel_size=residual_kernel_size, dilation_base=dilation_base, norm_params=norm_params,
            activation=activation, activation_params=activation_params, causal=causal, pad_mode=pad_mode,
            compress=compress, true_skip=true_skip)

        mult = int(2 ** len(self.ratios))
        layers: tp.List[nn.Module] = [
            StreamableConv1d(dimension, mult * n_filters, kernel_size,
                             norm="none" if disable_norm_outer_blocks == self.n_blocks else norm, **conv_args)]
        if lstm:
            layers.append(StreamableLSTM(mult * n_filters, num_layers=lstm))
        for i, ratio in enumerate(self.ratios):
            block_norm = "none" if disable_norm_outer_blocks >= self.n_blocks - (i + 1) else norm
            layers += [_activation(activation, activation_params, "activation"),
                       StreamableConvTranspose1d(mult * n_filters, mult * n_filters // 2, kernel_size=ratio * 2,
                                                 stride=ratio, norm=block_norm, norm_kwargs=norm_params,
                                                 causal=causal, trim_right_ratio=trim_right_ratio)]
            layers += self._residual_blocks(mult * n_filters // 2, block_norm, **resnet_args)
            mult //= 2
        layers += [_activation(activation, activation_params, "activation"),
                   StreamableConv1d(n_filters, channels, last_kernel_size,
                                    norm="none" if disable_norm_outer_blocks >= 1 else norm, **conv_args)]
        if final_activation is not None:
            layers.append(_activation(final_activation, final_activation_params, "final_activation"))
        self.model = StreamingSequential(*layers)

    @property
    def streaming_delay(self) -> int:
        """Output samples a streaming decoder holds back until more frames (or ``flush()``) arrive.

        After ``F`` frames (in steady state), ``F * hop_length - streaming_delay`` samples have been returned.
        0 for a causal decoder.
        """
        return _stream_lag(self.model)[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, dimension, F]`` -> ``[B, channels, F * hop_length]`` (in streaming: the final samples)."""
        return self.model(z)

    def flush(self, z: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """End a decoder stream: the held-back samples (end padding applied), None if nothing was fed."""
        return self.model.flush(z)
