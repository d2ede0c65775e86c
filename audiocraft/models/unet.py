"""The 1D U-Net of MultiBandDiffusion: predicts the noise of a noisy waveform ``[B, C, T]`` at a diffusion step,
conditioned on a codec latent ``[B, D, F]`` added at the bottleneck.

Layout (Audiocraft's ``DiffusionUnet``; submodule and state-dict names are Audiocraft's):

- ``encoders[d]``: right-pad to a multiple of the stride, strided conv (kernel 8, stride 4, no bias), GroupNorm,
  ReLU, residual blocks (GroupNorm, ReLU, conv kernel 3, twice; dilation ``2 ** i``). The step embedding
  (``embedding``, then ``embeddings[d - 1]`` when ``emb_all_layers``) is added after each encoder; every encoder
  output is kept as a skip.
- bottleneck: ``conv_codec`` (1x1 conv) of the condition, nearest-interpolated to the bottleneck length, added IN
  PLACE (so the deepest skip holds it too), then a post-norm transformer (8 heads, 6 layers, feed-forward 2048,
  no biases, dropout 0.1, sinusoidal positions), or a BiLSTM, or zeros when neither is enabled.
- ``decoders``: crop to the skip length, add the skip, residual blocks, GroupNorm, ReLU, transposed conv; the
  output is cropped to the input length.

MultiBandDiffusion runs the U-Net in TRAINING mode (Audiocraft never calls ``eval()`` on it): the transformer's
dropouts then draw from the global RNG at inference, and they are part of the result.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import typing as tp

import torch
from torch import nn
from torch.nn import functional as F

from ..backends.diffusion import TORCH_DIFFUSION_OPS, DiffusionOps
from ..modules.transformer import create_sin_embedding


@dataclass
class Output:
    """What :meth:`DiffusionUnet.forward` returns: ``sample`` ``[B, C, T]`` (the noise estimate)."""
    sample: torch.Tensor


def _norm_act(norm: nn.Module, activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(norm(x))``, a ReLU applied in place on the fresh normalised tensor."""
    y = norm(x)
    return torch.relu_(y) if type(activation) is nn.ReLU else activation(y)


class ResBlock(nn.Module):
    """``x + conv2(relu(norm2(conv1(relu(norm1(x))))))`` with same-length convs (kernel 3 by default)."""

    def __init__(self, channels: int, kernel: int = 3, norm_groups: int = 4, dilation: int = 1,
                 activation: tp.Type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> None:
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.norm1 = nn.GroupNorm(norm_groups, channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel, 1, padding, dilation=dilation)
        self.activation1 = activation()
        self.dropout1 = nn.Dropout1d(dropout)
        self.norm2 = nn.GroupNorm(norm_groups, channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, 1, padding, dilation=dilation)
        self.activation2 = activation()
        self.dropout2 = nn.Dropout1d(dropout)
        self.ops: DiffusionOps = TORCH_DIFFUSION_OPS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ops.conv1d(self.conv1, _norm_act(self.norm1, self.activation1, x))
        if self.dropout1.p:  # p = 0 draws nothing: skipping it changes nothing
            h = self.dropout1(h)
        h = self.ops.conv1d(self.conv2, _norm_act(self.norm2, self.activation2, h))
        if self.dropout2.p:
            h = self.dropout2(h)
        return h.add_(x)  # x + h


class EncoderLayer(nn.Module):
    """Strided conv ``chin -> chout`` (input right-padded to a multiple of ``stride``), GroupNorm, activation,
    residual blocks. ``[B, chin, T]`` -> ``[B, chout, ceil(T / stride)]``."""

    def __init__(self, chin: int, chout: int, kernel: int = 4, stride: int = 2, norm_groups: int = 4,
                 res_blocks: int = 1, activation: tp.Type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> None:
        super().__init__()
        padding = (kernel - stride) // 2
        self.conv = nn.Conv1d(chin, chout, kernel, stride, padding, bias=False)
        self.norm = nn.GroupNorm(norm_groups, chout)
        self.activation = activation()
        self.res_blocks = nn.Sequential(*[ResBlock(chout, norm_groups=norm_groups, dilation=2 ** idx,
                                                   dropout=dropout) for idx in range(res_blocks)])
        self.ops: DiffusionOps = TORCH_DIFFUSION_OPS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.conv.stride[0]
        pad = (stride - x.shape[-1] % stride) % stride
        x = self.ops.conv1d(self.conv, x, length=x.shape[-1] + pad)
        return self.res_blocks(_norm_act(self.norm, self.activation, x))


class DecoderLayer(nn.Module):
    """Residual blocks, GroupNorm, activation, transposed conv ``chin -> chout`` (x ``stride`` in time)."""

    def __init__(self, chin: int, chout: int, kernel: int = 4, stride: int = 2, norm_groups: int = 4,
                 res_blocks: int = 1, activation: tp.Type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> None:
        super().__init__()
        padding = (kernel - stride) // 2
        self.res_blocks = nn.Sequential(*[ResBlock(chin, norm_groups=norm_groups, dilation=2 ** idx,
                                                   dropout=dropout) for idx in range(res_blocks)])
        self.norm = nn.GroupNorm(norm_groups, chin)
        self.convtr = nn.ConvTranspose1d(chin, chout, kernel, stride, padding, bias=False)
        self.activation = activation()
        self.ops: DiffusionOps = TORCH_DIFFUSION_OPS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.conv_transpose1d(self.convtr, _norm_act(self.norm, self.activation, self.res_blocks(x)))


class BLSTM(nn.Module):
    """Two-layer bidirectional LSTM with ``dim`` hidden units and a linear ``2 dim -> dim``, on ``[B, dim, T]``."""

    def __init__(self, dim: int, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(bidirectional=True, num_layers=layers, hidden_size=dim, input_size=dim)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lstm(x.permute(2, 0, 1))[0]
        return self.linear(y).permute(1, 2, 0)


# ------------------------------------------------------------------------------------------------ transformer
class BottleneckAttention(nn.Module):
    """Self-attention of the bottleneck transformer. Its parameters live in ``mha`` (a
    ``torch.nn.MultiheadAttention``, as in Audiocraft's ``custom=False`` attention: keys ``mha.in_proj_weight``,
    ``mha.out_proj.weight``). The computation follows that module's training path on CPU (PyTorch's reference
    scaled-dot-product attention: queries and keys each scaled by ``D ** -0.25``, softmax, dropout of the
    ``[B, H, T, T]`` weights, time-major output projection) so that its dropouts draw the same random numbers."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.1, bias: bool = False) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True)
        self.ops: DiffusionOps = TORCH_DIFFUSION_OPS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, E]`` -> ``[B, T, E]`` (a transposed view of a ``[T, B, E]`` tensor)."""
        mha = self.mha
        B, T, E = x.shape
        H = mha.num_heads
        D = E // H
        proj = F.linear(x.transpose(0, 1), mha.in_proj_weight, mha.in_proj_bias)  # [T, B, 3E]
        q, k, v = proj.view(T, B, 3, H, D).permute(2, 1, 3, 0, 4).unbind(0)  # [B, H, T, D] each
        factor = math.sqrt(1.0 / math.sqrt(D))
        weights = torch.matmul(q * factor, k.transpose(-2, -1) * factor).softmax(dim=-1)  # [B, H, T, T]
        weights = self.ops.dropout(weights, mha.dropout, self.training)
        out = torch.matmul(weights, v).permute(2, 0, 1, 3).reshape(T, B, E)
        return F.linear(out, mha.out_proj.weight, mha.out_proj.bias).transpose(0, 1)


class BottleneckTransformerLayer(nn.Module):
    """Post-norm transformer layer (Audiocraft's ``StreamingTransformerLayer`` with ``norm_first=False``):
    ``x = norm1(x + drop(attn(x)))``, ``x = norm2(x + drop(linear2(drop(relu(linear1(x))))))``."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 bias_ff: bool = False, bias_attn: bool = False) -> None:
        super().__init__()
        self.self_attn = BottleneckAttention(d_model, num_heads, dropout=dropout, bias=bias_attn)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias_ff)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias_ff)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout = dropout
        self.ops: DiffusionOps = TORCH_DIFFUSION_OPS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, train, drop = self.dropout, self.training, self.ops.dropout
        x = self.norm1(drop(self.self_attn(x), p, train).add_(x))  # x + drop(attn(x))
        h = drop(torch.relu_(self.linear1(x)), p, train)
        return self.norm2(drop(self.linear2(h), p, train).add_(x))


class BottleneckTransformer(nn.Module):
    """``num_layers`` post-norm layers after a sinusoidal position embedding (max period 10000), on ``[B, T, C]``."""

    def __init__(self, d_model: int, num_heads: int = 8, num_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, bias_ff: bool = False, bias_attn: bool = False,
                 max_period: float = 10_000) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"the bottleneck width d_model={d_model} must be divisible by num_heads={num_heads}")
        self.max_period = max_period
        self._positions: tp.Optional[torch.Tensor] = None  # cached sinusoidal embedding (the same at every step)
        self.layers = nn.ModuleList([
            BottleneckTransformerLayer(d_model, num_heads, dim_feedforward, dropout, bias_ff, bias_attn)
            for _ in range(num_layers)])

    def position_embedding(self, length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Sinusoidal embedding ``[1, length, dim]`` of positions ``0 .. length - 1`` (cached: every diffusion step
        of a decode uses the same one)."""
        cached = self._positions
        if (cached is None or cached.shape[1] != length or cached.shape[2] != dim or cached.device != device
                or cached.dtype != dtype):
            with torch.inference_mode(False), torch.no_grad():  # usable in and out of inference mode
                positions = torch.arange(length, device=device).view(1, -1, 1)
                cached = create_sin_embedding(positions, dim, max_period=self.max_period, dtype=dtype)
            self._positions = cached
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x + self.position_embedding(T, C, x.device, x.dtype)
        for layer in self.layers:
            x = layer(x)
        return x


# ------------------------------------------------------------------------------------------------ U-Net
def _step_embedding(num_steps: int, dim: int) -> nn.Embedding:
    """``nn.Embedding(num_steps, dim)`` (same N(0, 1) initialisation), built without initialising when created on
    the meta device (there ``normal_`` would import torch's compiler stack: seconds)."""
    weight = torch.empty(num_steps, dim)
    if not weight.is_meta:
        nn.init.normal_(weight)
    return nn.Embedding(num_steps, dim, _weight=weight)


class DiffusionUnet(nn.Module):
    """Audiocraft's diffusion U-Net.

    Args:
        chin: audio channels. hidden: channels after the first encoder; each next encoder has
            ``min(int(previous * growth), max_channels)``. depth: number of encoders / decoders.
        num_steps: diffusion steps (rows of the step embeddings). emb_all_layers: add a step embedding after
            every encoder (else only after the first).
        cross_attention: not supported (Audiocraft's is experimental); must be False.
        bilstm / transformer: bottleneck model (transformer wins; neither: the bottleneck is zeroed, the
            condition then reaches the decoders only through the deepest skip).
        codec_dim: channels of the condition (codec latent); None: unconditional.
        **kwargs: ``EncoderLayer`` / ``DecoderLayer`` options: kernel, stride, norm_groups, res_blocks, dropout.
    """

    def __init__(self, chin: int = 3, hidden: int = 24, depth: int = 3, growth: float = 2.,
                 max_channels: int = 10_000, num_steps: int = 1000, emb_all_layers: bool = False,
                 cross_attention: bool = False, bilstm: bool = False, transformer: bool = False,
                 codec_dim: tp.Optional[int] = None, **kwargs: tp.Any) -> None:
        super().__init__()
        if cross_attention:
            raise ValueError("DiffusionUnet(cross_attention=True) is not supported; only the additive bottleneck "
                             "conditioning (cross_attention=False) is")
        unknown = sorted(set(kwargs) - {"kernel", "stride", "norm_groups", "res_blocks", "dropout"})
        if unknown:
            raise TypeError(f"DiffusionUnet got unexpected option(s) {unknown}; allowed: kernel, stride, "
                            "norm_groups, res_blocks, dropout")
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.embeddings: tp.Optional[nn.ModuleList] = nn.ModuleList() if emb_all_layers else None
        self.embedding = _step_embedding(num_steps, hidden)
        for d in range(depth):
            self.encoders.append(EncoderLayer(chin, hidden, **kwargs))
            self.decoders.insert(0, DecoderLayer(hidden, chin, **kwargs))
            if self.embeddings is not None and d > 0:
                self.embeddings.append(_step_embedding(num_steps, hidden))
            chin, hidden = hidden, min(int(hidden * growth), max_channels)
        self.bilstm: tp.Optional[nn.Module] = BLSTM(chin) if bilstm else None
        self.use_transformer = transformer
        self.cross_attention = False
        if transformer:
            self.transformer = BottleneckTransformer(chin, 8, 6, bias_ff=False, bias_attn=False)
        self.use_codec = codec_dim is not None
        if codec_dim is not None:
            self.conv_codec = nn.Conv1d(codec_dim, chin, 1)
        self.ops: DiffusionOps = TORCH_DIFFUSION_OPS

    def set_ops(self, ops: DiffusionOps) -> None:
        """Compute every convolution and dropout of the U-Net with ``ops`` (see :mod:`audiocraft.backends`)."""
        for module in self.modules():
            if isinstance(getattr(module, "ops", None), DiffusionOps):
                setattr(module, "ops", ops)

    def bottleneck_length(self, length: int) -> int:
        """Length at the bottleneck of an input of ``length`` samples (each encoder: ``ceil(length / stride)``)."""
        for encoder in self.encoders:
            stride = tp.cast(EncoderLayer, encoder).conv.stride[0]
            length = -(-length // stride)
        return length

    def condition_embedding(self, condition: torch.Tensor, length: int) -> torch.Tensor:
        """The condition ``[B, codec_dim, F]`` as added at the bottleneck: ``[B, C, length]`` (1x1 conv, then
        nearest interpolation). Constant over the diffusion steps: compute it once and pass it to ``forward``
        as ``condition_emb``."""
        emb = self.ops.conv1d(self.conv_codec, condition)
        if emb.shape[-1] > 2 * length:
            raise ValueError(f"the condition has {emb.shape[-1]} frames for a bottleneck of {length}: it would be "
                             "downsampled by a factor >= 2 (is the audio length right for these tokens?)")
        return F.interpolate(emb, length)

    def forward(self, x: torch.Tensor, step: tp.Union[int, torch.Tensor],
                condition: tp.Optional[torch.Tensor] = None,
                condition_emb: tp.Optional[torch.Tensor] = None) -> Output:
        """Noisy audio ``x`` ``[B, chin, T]`` at diffusion ``step`` (int, or ``[B]`` longs), condition
        ``[B, codec_dim, F]`` (or its precomputed ``condition_embedding``) -> ``Output(sample [B, chin, T])``."""
        bs = x.shape[0]
        if isinstance(step, torch.Tensor):
            steps = step
        else:
            steps = torch.tensor([step], device=x.device, dtype=torch.long).expand(bs)
        skips = []
        z = x
        for idx, encoder in enumerate(self.encoders):
            z = encoder(z)
            table = self.embedding if idx == 0 else (self.embeddings[idx - 1] if self.embeddings is not None
                                                     else None)
            if table is not None:
                z.add_(table(steps).view(bs, -1, 1))
            skips.append(z)

        if self.use_codec:
            if condition_emb is None:
                if condition is None:
                    raise ValueError("this DiffusionUnet is conditional (codec_dim is set): pass a condition")
                condition_emb = self.condition_embedding(condition, z.shape[-1])
            if condition_emb.shape != z.shape:
                raise ValueError(f"the condition embedding has shape {list(condition_emb.shape)}, the bottleneck "
                                 f"{list(z.shape)}")
            z += condition_emb  # in place: the deepest skip gets the condition too (as in Audiocraft)
        if self.use_transformer:
            z = self.transformer(z.permute(0, 2, 1)).permute(0, 2, 1)
        elif self.bilstm is not None:
            z = self.bilstm(z)
        else:
            z = torch.zeros_like(z)

        for decoder in self.decoders:
            s = skips.pop(-1)
            z = decoder(z[:, :, :s.shape[2]].add_(s))  # z + s (z is a fresh tensor)
        return Output(z[:, :, :x.shape[2]])
