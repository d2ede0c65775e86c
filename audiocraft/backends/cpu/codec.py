"""Fast EnCodec decoding on CPU: the SEANet decoder run time-major on matrix products, in blocks, streaming exactly.

:class:`~audiocraft.modules.seanet.SEANetDecoder` computes in PyTorch's ``[B, C, T]`` layout, one convolution
after the other over the whole signal. On a CPU that is slow where the signal is long and the channels few (the
last layers run at the audio rate): oneDNN's transposed convolutions run at a third of the speed of a matrix
product, every layer allocates (and page-faults) a buffer of the whole signal, and the memory grows with the
audio's length (30 s x batch 4: ~1 GB per layer at 64 channels).

:func:`prepare_decoder` swaps a decoder's class for :class:`FastSEANetDecoder` (same parameters, same state-dict
keys, same results within float round-off, ~1e-7): its inference forward (no gradient, CPU) runs a plan made
once from the effective weights (weight norm applied):

- **time-major blocks** ``[B, n, C]``: a stride-1 convolution is one matrix product per tap over shifted rows of
  its input; a transposed convolution of stride ``s`` is ``ceil(K / s)`` products ``[n, C_in] @ [C_in, s * C_out]``
  whose rows, laid end to end, *are* the upsampled output (no scatter, no padding copies);
- **exact streaming everywhere**: every layer keeps the state of the streaming modules (the input history of a
  convolution, the overlap of a transposed convolution, the LSTM's ``(h, c)``, a residual block's pending skip),
  so one-shot decoding is streaming over blocks followed by the flush. The layers up to the first transposed
  convolution (the frame-rate LSTM, whose weights are large) run on blocks of up to ``frames_per_block`` frames,
  the upsampling layers on sub-blocks of ``rows_per_sub_block`` rows; buffers stay in the CPU caches and the
  memory stays bounded whatever the length;
- **fused element-wise work**: the activation before a convolution writes straight into its input buffer (after
  the history rows), the one after a residual block's first convolution works in place, the residual sum and the
  bias are the starting value of the last product.

Inside ``decoder.streaming()`` the same plan decodes each call's frames; the samples each call returns are those of
the plain streaming decoder. Training (gradients), other devices, and layers the plan does not know (reflect
padding, strided convolutions, group / spectral norms) use the plain modules. Parameters changed in place (a
``load_state_dict``) are seen at the next call: the plan is rebuilt when a parameter's version changes.
"""
from __future__ import annotations

import dataclasses
import math
import typing as tp

import torch
from torch import nn
from torch.nn import functional as F

from ...modules.conv import StreamableConv1d, StreamableConvTranspose1d
from ...modules.lstm import StreamableLSTM
from ...modules.seanet import SEANetDecoder, SEANetResnetBlock
from ...modules.streaming import StreamingError, StreamingState
from . import codec_kernels

# Element-wise activations (their result does not depend on the layout). PReLU is not: its weight is per channel.
ELEMENTWISE = (nn.ELU, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.CELU,
               nn.SELU, nn.Softplus, nn.Mish, nn.Hardtanh, nn.ReLU6)
_NORMS = ("none", "weight_norm")


class Unsupported(Exception):
    """A layer the plan does not know: the decoder keeps its plain modules."""


def _activate_into(act: tp.Optional[nn.Module], x: torch.Tensor, out: torch.Tensor) -> None:
    """``out[...] = act(x)`` (``out``: a view of ``x``'s shape)."""
    if act is None or type(act) is nn.Identity:
        out.copy_(x)
    elif type(act) is nn.ELU:
        if not codec_kernels.elu_into(x, out, act.alpha):
            torch.ops.aten.elu.out(x, act.alpha, 1, 1, out=out)
    else:
        out.copy_(act(x))


def _activate(act: tp.Optional[nn.Module], x: torch.Tensor, owned: bool) -> torch.Tensor:
    """``act(x)``, in place when the caller owns ``x``."""
    if act is None or type(act) is nn.Identity:
        return x
    if type(act) is nn.ELU:
        out = x if owned else torch.empty_like(x)
        if codec_kernels.elu_into(x, out, act.alpha):
            return out
        return F.elu_(x, act.alpha) if owned else F.elu(x, act.alpha)
    return act(x)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x [n, C]`` with unit stride along C and rows apart by at least C (what a matrix product reads in place)."""
    if x.stride(-1) != 1 or (x.shape[0] > 1 and x.stride(0) < x.shape[1]):
        return x.contiguous()
    return x


def _check_conv(norm: str, what: str) -> None:
    if norm not in _NORMS:
        raise Unsupported(f"{what} with norm={norm!r}")


# ---------------------------------------------------------------------------------------------- states
@dataclasses.dataclass
class _ConvState(StreamingState):
    hist: torch.Tensor  # [B, h, C_in] activated input rows not consumed yet (the left padding at the start)
    seen: int  # input rows received


@dataclasses.dataclass
class _ConvTrState(StreamingState):
    partial: tp.Optional[torch.Tensor]  # [B, G - 1, s * C_out] overlap of the next rows, bias not added
    to_trim: int  # output rows still to drop on the left


@dataclasses.dataclass
class _LSTMState(StreamingState):
    hidden: torch.Tensor  # [L, B, H]
    cell: torch.Tensor  # [L, B, H]


@dataclasses.dataclass
class _ResState(StreamingState):
    pending: torch.Tensor  # [B, p, C] shortcut rows waiting for the (delayed) block output


States = tp.List[StreamingState]


# ---------------------------------------------------------------------------------------------- layers
class _Op:
    """One layer of the plan on time-major blocks ``[B, n, C]``; its streaming state lives at ``states[slot]``."""

    slot = -1
    width = 1  # values per input row in its widest buffer (input, or output per input row)
    state_cls: tp.Type[StreamingState] = StreamingState

    def new_state(self, x: torch.Tensor) -> StreamingState:
        raise NotImplementedError

    def step(self, states: States, x: torch.Tensor, owned: bool) -> torch.Tensor:
        """The output rows that no later input changes (``owned``: ``x`` may be overwritten)."""
        raise NotImplementedError

    def flush(self, states: States, x: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        """End of stream: process ``x`` (if any), then return the held-back rows (None if nothing was seen)."""
        raise NotImplementedError


class _Act(_Op):
    def __init__(self, act: nn.Module) -> None:
        self.act = act

    def step(self, states: States, x: torch.Tensor, owned: bool) -> torch.Tensor:
        return _activate(self.act, x, owned)

    def flush(self, states: States, x: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        return None if x is None else self.act(x)


class _Conv(_Op):
    """Stride-1 convolution with zero padding, its input activation first: one product per tap over shifted rows
    (or, for few output channels, one product with the taps side by side and shifted sums)."""

    state_cls = _ConvState

    def __init__(self, module: StreamableConv1d, act: tp.Optional[nn.Module]) -> None:
        if module.stride != 1 or module.pad_mode != "constant":
            raise Unsupported(f"convolution with stride {module.stride} / pad_mode {module.pad_mode!r}")
        _check_conv(module.conv.norm_type, "convolution")
        conv = module.conv.conv
        if conv.groups != 1:
            raise Unsupported("grouped convolution")
        weight = tp.cast(torch.Tensor, conv.weight).detach()  # [C_out, C_in, k], weight norm applied
        self.cout, self.cin, self.k = weight.shape
        self.dilation = int(conv.dilation[0])
        self.span = module.effective_kernel_size - 1
        self.left, self.right = module.paddings
        self.width = max(self.cin, self.cout)
        self.act = act
        self.bias = None if conv.bias is None else conv.bias.detach().contiguous()
        # few output channels: one product with every tap side by side ([C_in, k * C_out]), then shifted sums
        self.stacked = self.k > 1 and self.cout * self.k <= 64
        if self.stacked:
            self.weight = weight.permute(1, 2, 0).reshape(self.cin, self.k * self.cout).contiguous()
            self.few = weight.permute(0, 2, 1).contiguous()  # [C_out, k, C_in] for the native kernel
        else:
            self.taps = [weight[:, :, j].t().contiguous() for j in range(self.k)]  # [C_in, C_out] each

    def new_state(self, x: torch.Tensor) -> _ConvState:
        return _ConvState(hist=x.new_zeros(x.shape[0], self.left, self.cin), seen=0)

    def out_len(self, state: _ConvState, n: int, flush: bool = False) -> int:
        return state.hist.shape[1] + n + (self.right if flush else 0) - self.span

    def _input(self, state: _ConvState, x: tp.Optional[torch.Tensor], owned: bool, pad: int) -> torch.Tensor:
        """History rows, then ``act(x)``, then ``pad`` zero rows, in one buffer (``x`` itself where it can be)."""
        hist = state.hist
        h, n = hist.shape[1], 0 if x is None else x.shape[1]
        if h == 0 and pad == 0 and x is not None:
            return _activate(self.act, x, owned)
        full = hist.new_empty(hist.shape[0], h + n + pad, self.cin)
        full[:, :h] = hist
        if x is not None:
            _activate_into(self.act, x, full[:, h:h + n])
        if pad:
            full[:, h + n:].zero_()
        return full

    def _products(self, full: torch.Tensor, m: int, out: tp.Optional[torch.Tensor]) -> torch.Tensor:
        """Output rows ``[0, m)`` of ``full``; ``out`` (if given) holds the residual + bias to add to."""
        batch = full.shape[0]
        accumulate = out is not None
        if out is None:
            out = full.new_empty(batch, m, self.cout)
        d = self.dilation
        if self.stacked and all(codec_kernels.conv_few(full[b], self.few, d, None if accumulate else self.bias,
                                                       out[b], accumulate) for b in range(batch)):
            return out  # (the items share their layouts: the kernel takes all of them or none)
        if not accumulate and self.bias is not None and self.stacked:
            out.copy_(self.bias.expand(batch, m, self.cout))
        if not self.stacked and self.k == 1 and full.shape[1] == m and full.is_contiguous() and out.is_contiguous():
            rows, out2 = full.view(batch * m, self.cin), out.view(batch * m, self.cout)
            if accumulate:
                out2.addmm_(rows, self.taps[0])
            elif self.bias is not None:
                torch.addmm(self.bias, rows, self.taps[0], out=out2)
            else:
                torch.mm(rows, self.taps[0], out=out2)
            return out
        for b in range(batch):
            fb, ob = full[b], out[b]
            if self.stacked:
                prod = torch.mm(_rows(fb[:(self.k - 1) * d + m]), self.weight)  # [L, k * C_out]
                start = 0 if accumulate or self.bias is not None else 1
                if start:
                    ob.copy_(prod[:m, :self.cout])
                for j in range(start, self.k):
                    ob.add_(prod[j * d:j * d + m, j * self.cout:(j + 1) * self.cout])
                continue
            for j in range(self.k):
                rows = _rows(fb[j * d:j * d + m])
                if j == 0 and not accumulate:
                    if self.bias is not None:
                        torch.addmm(self.bias, rows, self.taps[0], out=ob)
                    else:
                        torch.mm(rows, self.taps[0], out=ob)
                else:
                    ob.addmm_(rows, self.taps[j])
        return out

    def step(self, states: States, x: torch.Tensor, owned: bool, out: tp.Optional[torch.Tensor] = None
             ) -> torch.Tensor:
        state = tp.cast(_ConvState, states[self.slot])
        state.seen += x.shape[1]
        m = self.out_len(state, x.shape[1])
        full = self._input(state, x, owned, 0)
        if m <= 0:
            state.hist = full if full is not x else full.clone()
            return x.new_empty(x.shape[0], 0, self.cout)
        y = self._products(full, m, out)
        state.hist = full[:, m:].clone()
        return y

    def flush(self, states: States, x: tp.Optional[torch.Tensor], out: tp.Optional[torch.Tensor] = None
              ) -> tp.Optional[torch.Tensor]:
        state = tp.cast(_ConvState, states[self.slot])
        if x is not None:
            state.seen += x.shape[1]
        if state.seen == 0:
            return None
        m = self.out_len(state, 0 if x is None else x.shape[1], flush=True)
        full = self._input(state, x, False, self.right)
        state.hist = full[:, :0]
        if m <= 0:
            return full.new_empty(full.shape[0], 0, self.cout)
        return self._products(full, m, out)


class _ConvTr(_Op):
    """Transposed convolution of stride ``s`` (its input activation first): ``G = ceil(K / s)`` products
    ``[n, C_in] @ [C_in, s * C_out]``; product ``g`` adds to output rows ``t + g`` of ``s * C_out`` values, which
    laid end to end are the output samples."""

    state_cls = _ConvTrState

    def __init__(self, module: StreamableConvTranspose1d, act: tp.Optional[nn.Module]) -> None:
        _check_conv(module.convtr.norm_type, "transposed convolution")
        conv = module.convtr.convtr
        if conv.groups != 1 or int(conv.dilation[0]) != 1 or int(conv.padding[0]) or int(conv.output_padding[0]):
            raise Unsupported("transposed convolution with groups / dilation / padding")
        weight = tp.cast(torch.Tensor, conv.weight).detach()  # [C_in, C_out, K]
        self.cin, self.cout, self.kernel = weight.shape
        self.s = module.stride
        self.groups = math.ceil(self.kernel / self.s)
        weight = F.pad(weight, (0, self.groups * self.s - self.kernel))  # zero taps up to G * s
        self.weights = [weight[:, :, g * self.s:(g + 1) * self.s].permute(0, 2, 1).reshape(self.cin, -1).contiguous()
                        for g in range(self.groups)]  # [C_in, s * C_out], column j * C_out + c
        bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(self.cout)
        self.bias = bias.contiguous()
        self.bias_rows = bias.repeat(self.s).contiguous()  # [s * C_out]
        self.trim_left, self.trim_right = module.paddings
        self.width = max(self.cin, self.s * self.cout)
        self.act = act

    def new_state(self, x: torch.Tensor) -> _ConvTrState:
        return _ConvTrState(partial=None, to_trim=self.trim_left)

    def _trim(self, state: _ConvTrState, y: torch.Tensor) -> torch.Tensor:
        if state.to_trim:
            drop = min(state.to_trim, y.shape[1])
            state.to_trim -= drop
            y = y[:, drop:]
        return y

    def step(self, states: States, x: torch.Tensor, owned: bool) -> torch.Tensor:
        state = tp.cast(_ConvTrState, states[self.slot])
        batch, n = x.shape[0], x.shape[1]
        if n == 0:
            return x.new_empty(batch, 0, self.cout)
        x = _activate(self.act, x, owned)
        extra = self.groups - 1
        rows = x.new_empty(batch, n + extra, self.s * self.cout)
        for b in range(batch):
            xb, rb = _rows(x[b]), rows[b]
            torch.addmm(self.bias_rows, xb, self.weights[0], out=rb[:n])
            if extra:
                rb[n:].zero_()
            for g in range(1, self.groups):
                rb[g:g + n].addmm_(xb, self.weights[g])
        if state.partial is not None:
            rows[:, :extra] += state.partial
        state.partial = rows[:, n:].clone()
        return self._trim(state, rows.view(batch, -1, self.cout)[:, :n * self.s])

    def flush(self, states: States, x: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        head = None if x is None else self.step(states, x, False)
        state = tp.cast(_ConvTrState, states[self.slot])
        if state.partial is None:
            return head
        keep = max(self.kernel - self.s - self.trim_right, 0)
        tail = self._trim(state, state.partial.view(state.partial.shape[0], -1, self.cout)[:, :keep] + self.bias)
        state.partial = None
        return tail if head is None else torch.cat([head, tail], dim=1)


class _LSTM(_Op):
    """The LSTM (with its skip connection): the input projections of a block in one product per layer, then one
    ``[B, H] @ [H, 4H]`` product and a few element-wise operations per frame (PyTorch's gate order i, f, g, o)."""

    state_cls = _LSTMState

    def __init__(self, module: StreamableLSTM) -> None:
        lstm = module.lstm
        if lstm.bidirectional or lstm.proj_size or not lstm.bias or lstm.batch_first:
            raise Unsupported("LSTM variant")
        self.skip, self.size, self.num_layers = module.skip, lstm.hidden_size, lstm.num_layers
        self.width = 4 * self.size
        self.layers = []
        for layer in range(lstm.num_layers):
            w_ih = getattr(lstm, f"weight_ih_l{layer}").detach().contiguous()  # [4H, C]
            w_hh_t = getattr(lstm, f"weight_hh_l{layer}").detach().t().contiguous()  # [H, 4H]
            bias = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")).detach()
            self.layers.append((w_ih, w_hh_t, bias.contiguous(), bias[:, None].contiguous()))
        # the recurrent weights in the layout of the native whole-layer kernel (None: per-step PyTorch products)
        self.packed = [codec_kernels.pack_lstm_weight(getattr(lstm, f"weight_hh_l{layer}").detach())
                       for layer in range(lstm.num_layers)]

    def new_state(self, x: torch.Tensor) -> _LSTMState:
        shape = (self.num_layers, x.shape[0], self.size)
        return _LSTMState(hidden=x.new_zeros(shape), cell=x.new_zeros(shape))

    def _projection(self, rows: torch.Tensor, layer: int) -> torch.Tensor:
        """``rows [N, C] @ W_ih^T + bias`` -> ``[N, 4H]``; for a few rows as ``W_ih @ rows^T`` (a stream over W_ih)."""
        w_ih, _, bias, bias_col = self.layers[layer]
        if rows.shape[0] <= 16:
            return torch.addmm(bias_col, w_ih, rows.t()).t()
        return torch.addmm(bias, rows, w_ih.t())

    def step(self, states: States, x: torch.Tensor, owned: bool) -> torch.Tensor:
        state = tp.cast(_LSTMState, states[self.slot])
        batch, steps = x.shape[0], x.shape[1]
        if steps == 0:
            return x
        size = self.size
        layer_input = x.transpose(0, 1)  # [T, B, C]
        hidden, cell = [], []
        for layer in range(self.num_layers):
            gates_in = self._projection(layer_input.reshape(steps * batch, -1), layer)
            w_hh_t = self.layers[layer][1]
            packed = self.packed[layer]
            out = x.new_empty(steps, batch, size)
            if packed is not None:  # every step in one native call
                h, c = state.hidden[layer].clone(), state.cell[layer].clone()
                codec_kernels.lstm_layer(gates_in.contiguous().view(steps, batch, 4 * size), packed, h, c, out)
                hidden.append(h)
                cell.append(c)
                layer_input = out
                continue
            h, c = state.hidden[layer], state.cell[layer].clone()
            for t in range(steps):
                gates = torch.addmm(gates_in[t * batch:(t + 1) * batch], h, w_hh_t)  # [B, 4H]
                h = out[t]
                if not codec_kernels.lstm_cell(gates, c, h):  # c and h updated in one pass
                    ifo = torch.sigmoid(gates)
                    c = torch.addcmul(ifo[:, size:2 * size] * c, ifo[:, :size],
                                      torch.tanh(gates[:, 2 * size:3 * size]))
                    torch.mul(ifo[:, 3 * size:], torch.tanh(c), out=h)
            hidden.append(h)
            cell.append(c)
            layer_input = out
        state.hidden, state.cell = torch.stack(hidden), torch.stack(cell)
        y = layer_input.transpose(0, 1)
        return (torch.add(x, y) if self.skip else y).contiguous()

    def flush(self, states: States, x: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        return None if x is None else self.step(states, x, False)


class _Res(_Op):
    """Residual block: ``shortcut(x) + block(x)``, the block's convolutions lagging behind by their look-ahead.
    The sum and the last bias are the starting value of the last convolution's products."""

    state_cls = _ResState

    def __init__(self, module: SEANetResnetBlock, slots: tp.Callable[[_Op], None]) -> None:
        layers = list(module.block)
        self.convs: tp.List[_Conv] = []
        act: tp.Optional[nn.Module] = None
        for layer in layers:
            if isinstance(layer, ELEMENTWISE) and act is None:
                act = layer
            elif isinstance(layer, StreamableConv1d):
                self.convs.append(_Conv(layer, act))
                act = None
            else:
                raise Unsupported(f"residual block layer {type(layer).__name__}")
        if act is not None or not self.convs:
            raise Unsupported("residual block ending with an activation")
        self.shortcut: tp.Optional[_Conv] = None
        if isinstance(module.shortcut, StreamableConv1d):
            self.shortcut = _Conv(module.shortcut, None)
            if self.shortcut.span:
                raise Unsupported("residual shortcut with a kernel > 1")
        elif type(module.shortcut) is not nn.Identity:
            raise Unsupported(f"residual shortcut {type(module.shortcut).__name__}")
        for conv in self.convs + ([self.shortcut] if self.shortcut is not None else []):
            slots(conv)
        self.channels = self.convs[-1].cout
        self.width = max(conv.width for conv in self.convs)

    def new_state(self, x: torch.Tensor) -> _ResState:
        return _ResState(pending=x.new_empty(x.shape[0], 0, self.channels))

    def _finish(self, state: _ResState, skip: tp.Optional[torch.Tensor], m: int,
                run: tp.Callable[[tp.Optional[torch.Tensor]], tp.Optional[torch.Tensor]]) -> tp.Optional[torch.Tensor]:
        """Run the last convolution (``run(out)``) on top of the first ``m`` shortcut rows (+ bias)."""
        pending = state.pending
        if m <= 0:
            if skip is not None and skip.shape[1]:
                state.pending = torch.cat([pending, skip], dim=1)
            run(None)
            return pending.new_empty(pending.shape[0], 0, self.channels)
        p = min(pending.shape[1], m)
        bias = self.convs[-1].bias
        out = pending.new_empty(pending.shape[0], m, self.channels)
        for dst, src in ((out[:, :p], pending[:, :p]), (out[:, p:], None if skip is None else skip[:, :m - p])):
            if dst.shape[1] == 0:
                continue
            if src is None or src.shape[1] != dst.shape[1]:  # an internal invariant of the plan, not user input
                raise RuntimeError("Prepared SEANet decoder: a residual block's shortcut rows are missing.")
            if bias is None:
                dst.copy_(src)
            else:
                torch.add(src, bias, out=dst)
        rest = [pending[:, p:]] + ([] if skip is None else [skip[:, m - p:]])
        state.pending = torch.cat(rest, dim=1) if any(r.shape[1] for r in rest) else pending[:, :0].clone()
        run(out)
        return out

    def step(self, states: States, x: torch.Tensor, owned: bool) -> torch.Tensor:
        state = tp.cast(_ResState, states[self.slot])
        skip = x if self.shortcut is None else self.shortcut.step(states, x, False)
        h = x
        for conv in self.convs[:-1]:
            h = conv.step(states, h, owned=h is not x)
        last = self.convs[-1]
        m = last.out_len(tp.cast(_ConvState, states[last.slot]), h.shape[1])
        hidden = h
        return tp.cast(torch.Tensor, self._finish(state, skip, m,
                                                  lambda o: last.step(states, hidden, hidden is not x, o)))

    def flush(self, states: States, x: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        state = tp.cast(_ResState, states[self.slot])
        skip = x
        if x is not None and self.shortcut is not None:
            skip = self.shortcut.step(states, x, False)
        h = x
        for conv in self.convs[:-1]:
            h = conv.flush(states, h)
        last = self.convs[-1]
        last_state = tp.cast(_ConvState, states[last.slot])
        if last_state.seen == 0 and h is None:
            return None
        m = last.out_len(last_state, 0 if h is None else h.shape[1], flush=True)
        hidden = h
        return self._finish(state, skip, m, lambda o: last.flush(states, hidden, o))


# ---------------------------------------------------------------------------------------------- the plan
class DecoderPlan:
    """The layers of a :class:`SEANetDecoder` as time-major operations (see the module docstring).

    Args:
        decoder: the decoder (its weights are read now: rebuild the plan when they change).
        frames_per_block: frames run at once through the layers up to the first transposed convolution.
        values_per_piece: the remaining layers take their input in pieces of at most this many values (rows x
            batch x the layer's widest row, at least one row): each layer's input and output stay in the CPU's
            L2 cache for the next one, with few enough operations that their overhead stays small.
    Raises:
        Unsupported: a layer the plan cannot run.
    """

    def __init__(self, decoder: SEANetDecoder, frames_per_block: int = 250, values_per_piece: int = 1 << 18) -> None:
        self.ops: tp.List[_Op] = []
        self.units: tp.List[_Op] = []
        act: tp.Optional[nn.Module] = None
        with torch.no_grad():
            for layer in decoder.model:
                op: _Op
                if isinstance(layer, ELEMENTWISE) and act is None:
                    act = layer
                    continue
                if isinstance(layer, StreamableConv1d):
                    op, act = _Conv(layer, act), None
                elif isinstance(layer, StreamableConvTranspose1d):
                    op, act = _ConvTr(layer, act), None
                elif act is not None:
                    raise Unsupported(f"activation before {type(layer).__name__}")
                elif isinstance(layer, StreamableLSTM):
                    op = _LSTM(layer)
                elif isinstance(layer, SEANetResnetBlock):
                    op = _Res(layer, self._slot)
                else:
                    raise Unsupported(f"decoder layer {type(layer).__name__}")
                self._slot(op)
                self.ops.append(op)
            if act is not None:
                self.ops.append(_Act(act))
        first_up = next((i for i, op in enumerate(self.ops) if isinstance(op, _ConvTr)), len(self.ops) - 1)
        self.split = first_up + 1
        self.frames_per_block = frames_per_block
        self.values_per_piece = values_per_piece
        self.channels = decoder.channels

    def _slot(self, op: _Op) -> None:
        op.slot = len(self.units)
        self.units.append(op)

    def new_states(self, x: torch.Tensor) -> States:
        """Fresh streaming states for a batch like ``x [B, n, C]`` (its dtype and device)."""
        states: States = []
        for unit in self.units:
            width = getattr(unit, "cin", getattr(unit, "channels", x.shape[-1]))
            states.append(unit.new_state(x.new_empty(x.shape[0], 0, width)))
        return states

    def step(self, states: States, z: torch.Tensor) -> torch.Tensor:
        """Latent frames ``z [B, D, F]`` -> the final audio samples ``[B, channels, n]``."""
        x = z.transpose(1, 2)
        outs: tp.List[torch.Tensor] = []
        limits = [max(1, self.values_per_piece // op.width) for op in self.ops]
        for start in range(0, x.shape[1], self.frames_per_block):
            y = x[:, start:start + self.frames_per_block]
            for i, op in enumerate(self.ops[:self.split]):
                y = op.step(states, y, i > 0)  # the caller's z is read, never written; later inputs are ours
            self._pieces(states, self.split, y, limits, outs)
        return self._audio(outs, z)

    def _pieces(self, states: States, first: int, y: torch.Tensor, limits: tp.List[int],
                outs: tp.List[torch.Tensor]) -> None:
        """Run ``y`` through ``ops[first:]``, depth first: each layer's input cut in pieces of ``limits`` rows."""
        for i in range(first, len(self.ops)):
            if y.shape[1] > limits[i]:
                for row in range(0, y.shape[1], limits[i]):
                    self._pieces(states, i, y[:, row:row + limits[i]], limits, outs)
                return
            y = self.ops[i].step(states, y, True)
        outs.append(y)

    def flush(self, states: States, z: torch.Tensor) -> tp.Optional[torch.Tensor]:
        """End of stream: the held-back samples ``[B, channels, n]``, None if no frame was decoded."""
        y: tp.Optional[torch.Tensor] = None
        for op in self.ops:
            y = op.flush(states, y)
        return None if y is None else self._audio([y], z)

    def _audio(self, outs: tp.List[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        if not outs:
            return z.new_empty(z.shape[0], self.channels, 0)
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return y.transpose(1, 2).contiguous()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """One-shot decoding of ``z [B, D, F]``: the stream of its frames, then the flush."""
        states = self.new_states(z.transpose(1, 2))
        head = self.step(states, z)
        tail = self.flush(states, z)
        return head if tail is None else torch.cat([head, tail], dim=-1)


# ---------------------------------------------------------------------------------------------- the module
@dataclasses.dataclass
class _FastDecoderState(StreamingState):
    """The plan's states, flattened for ``get_streaming_state`` as ``u<slot>_<field>``."""

    units: tp.Optional[States] = None
    saved: tp.Optional[tp.Dict[str, tp.Any]] = None  # set by ``set_streaming_state``, unpacked at the next call

    def to_tensors(self) -> tp.Dict[str, torch.Tensor]:
        if self.units is None:
            return dict(self.saved or {})
        return {f"u{i}_{name}": value for i, unit in enumerate(self.units)
                for name, value in unit.to_tensors().items()}

    @classmethod
    def from_tensors(cls, values: tp.Mapping[str, tp.Any]) -> "_FastDecoderState":
        return cls(units=None, saved=dict(values))

    def resolve(self, plan: DecoderPlan) -> States:
        if self.units is None:
            grouped: tp.Dict[int, tp.Dict[str, tp.Any]] = {i: {} for i in range(len(plan.units))}
            for key, value in (self.saved or {}).items():
                index, _, name = key[1:].partition("_")
                if not key.startswith("u") or not index.isdigit() or int(index) not in grouped:
                    raise StreamingError(f"Unknown streaming state key {key!r} for the prepared decoder.")
                grouped[int(index)][name] = value
            units: States = [unit.state_cls.from_tensors(fields) for unit, fields in zip(plan.units, grouped.values())]
            self.units, self.saved = units, None
        return self.units


class FastSEANetDecoder(SEANetDecoder):
    """A :class:`SEANetDecoder` whose CPU inference runs a :class:`DecoderPlan` (see the module docstring). Made by
    :func:`prepare_decoder` (a class swap: parameters, buffers and state-dict keys are the decoder's)."""

    state_cls = _FastDecoderState
    _fast_plan: tp.Optional[DecoderPlan]
    _fast_key: tp.Optional[tp.Tuple[tp.Any, ...]]

    def _plan_key(self) -> tp.Tuple[tp.Any, ...]:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())

    def fast_plan(self, z: torch.Tensor) -> tp.Optional[DecoderPlan]:
        """The plan for ``z``, or None where the plain modules must run (gradients, other devices, dtypes)."""
        if z.device.type != "cpu" or self.training:
            return None
        params = list(self.parameters())
        if not params or any(p.dtype != z.dtype or p.device != z.device for p in params):
            return None
        if torch.is_grad_enabled() and (z.requires_grad or any(p.requires_grad for p in params)):
            return None
        key = self._plan_key()
        if self.__dict__.get("_fast_key") != key:
            try:
                plan: tp.Optional[DecoderPlan] = DecoderPlan(self)
            except Unsupported:
                plan = None
            self.__dict__["_fast_plan"], self.__dict__["_fast_key"] = plan, key
        return self.__dict__["_fast_plan"]

    def _plain_streaming(self) -> bool:
        return any(m._streaming_state is not None for _, m in self._streaming_modules() if m is not self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming:
            plan = self.fast_plan(z)
            return super().forward(z) if plan is None else plan.decode(z)
        state = tp.cast(tp.Optional[_FastDecoderState], self._streaming_state)
        plan = self.fast_plan(z) if state is not None or not self._plain_streaming() else None
        if plan is None:
            if state is not None:
                raise StreamingError("this stream started on the prepared CPU decoder; finish it under the same "
                                     "conditions (no gradients, same device and dtype)")
            return super().forward(z)
        if state is None:
            state = _FastDecoderState(units=plan.new_states(z.transpose(1, 2)))
            self._streaming_state = state  # type: ignore[assignment]
        return plan.step(state.resolve(plan), z)

    def flush(self, z: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        if not self.is_streaming:
            return None if z is None else self(z)
        head = None if z is None else self(z)
        state = tp.cast(tp.Optional[_FastDecoderState], self._streaming_state)
        if state is None:
            return super().flush(None) if head is None else head
        plan = self.__dict__.get("_fast_plan")
        if plan is None:
            raise StreamingError("the prepared decoder's plan is gone (parameters changed during a stream)")
        self._streaming_state = None
        ref = head if head is not None else torch.empty(1, self.dimension, 0)
        tail = plan.flush(state.resolve(plan), ref)
        if tail is None:
            return head
        return tail if head is None else torch.cat([head, tail], dim=-1)


def prepare_decoder(decoder: nn.Module) -> bool:
    """Give a :class:`SEANetDecoder` the fast CPU inference path, in place (see the module docstring); returns
    whether it got it (False for other decoders and for layers the plan does not know)."""
    if isinstance(decoder, FastSEANetDecoder):
        return True
    if type(decoder) is not SEANetDecoder:
        return False
    try:
        DecoderPlan(decoder)
    except Unsupported:
        return False
    decoder.__class__ = FastSEANetDecoder
    return True
