import math
import warnings

import pytest
import torch
from torch.nn import functional as F

from audiocraft.modules.conv import (
    NormConv1d, NormConvTranspose1d, StreamableConv1d, StreamableConvTranspose1d, get_extra_padding_for_conv1d,
    pad1d, pad_for_conv1d, unpad1d,
)
from audiocraft.modules.streaming import StreamingError


def _stream(module, x, chunks):
    """Feed x [B, C, T] in pieces of the given sizes (cycled), then flush; concatenate everything returned."""
    outs, pos, i = [], 0, 0
    with module.streaming():
        while pos < x.shape[-1]:
            n = chunks[i % len(chunks)]
            outs.append(module(x[..., pos:pos + n]))
            pos, i = pos + n, i + 1
        rest = module.flush()
        if rest is not None:
            outs.append(rest)
    return torch.cat(outs, dim=-1)


# ---------------------------------------------------------------------------------------------- padding helpers
@pytest.mark.parametrize("length,kernel,stride,padding_total,expected", [
    (10, 4, 2, 2, 0), (11, 4, 2, 2, 1), (12, 16, 8, 8, 4), (16, 16, 8, 8, 0), (1, 7, 1, 6, 0), (3, 10, 5, 5, 2),
])
def test_extra_padding_hand_values(length, kernel, stride, padding_total, expected):
    x = torch.zeros(1, 1, length)
    assert get_extra_padding_for_conv1d(x, kernel, stride, padding_total) == expected
    assert pad_for_conv1d(x, kernel, stride, padding_total).shape[-1] == length + expected


def test_extra_padding_matches_float_formula():
    for length in range(1, 60):
        for kernel, stride in [(4, 2), (8, 4), (10, 5), (16, 8), (3, 1)]:
            padding_total = kernel - stride
            n_frames = (length - kernel + padding_total) / stride + 1
            ideal = (math.ceil(n_frames) - 1) * stride + (kernel - padding_total)
            got = get_extra_padding_for_conv1d(torch.zeros(1, 1, length), kernel, stride, padding_total)
            assert got == ideal - length


def test_pad1d_reflect_shorter_than_padding():
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    # zero-extended to [1, 2, 3, 0, 0, 0], reflected by 5 on the left, the 3 zeros removed again
    out = pad1d(x, (5, 0), mode="reflect")
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.0, 0.0, 3.0, 2.0, 1.0, 2.0, 3.0]]]))
    out = pad1d(x, (1, 2), mode="reflect")  # long enough: plain reflection
    torch.testing.assert_close(out, torch.tensor([[[2.0, 1.0, 2.0, 3.0, 2.0, 1.0]]]))


def test_pad1d_other_modes_and_unpad():
    x = torch.tensor([[[1.0, 2.0]]])
    torch.testing.assert_close(pad1d(x, (2, 1)), torch.tensor([[[0.0, 0.0, 1.0, 2.0, 0.0]]]))
    torch.testing.assert_close(pad1d(x, (1, 1), mode="constant", value=5.0), torch.tensor([[[5.0, 1.0, 2.0, 5.0]]]))
    torch.testing.assert_close(pad1d(x, (2, 1), mode="replicate"), torch.tensor([[[1.0, 1.0, 1.0, 2.0, 2.0]]]))
    torch.testing.assert_close(unpad1d(torch.arange(6.0)[None, None], (2, 1)), torch.tensor([[[2.0, 3.0, 4.0]]]))
    with pytest.raises(ValueError, match="paddings must be non-negative"):
        pad1d(x, (-1, 0))
    with pytest.raises(ValueError, match="cannot remove paddings"):
        unpad1d(x, (2, 1))


# ---------------------------------------------------------------------------------------------- weight norm
def test_weight_norm_keys_shapes_and_value():
    conv = NormConv1d(4, 6, 5, norm="weight_norm")
    assert list(conv.state_dict()) == ["conv.bias", "conv.weight_g", "conv.weight_v"]
    assert conv.conv.weight_g.shape == (6, 1, 1) and conv.conv.weight_v.shape == (6, 4, 5)
    convtr = NormConvTranspose1d(8, 3, 4, 2, norm="weight_norm")
    assert list(convtr.state_dict()) == ["convtr.bias", "convtr.weight_g", "convtr.weight_v"]
    assert convtr.convtr.weight_g.shape == (8, 1, 1)  # dim 0 of a transposed conv weight is C_in

    torch.manual_seed(0)
    with torch.no_grad():
        conv.conv.weight_g.uniform_(0.5, 2.0)
        conv.conv.weight_v.normal_()
    # torch's legacy implementation as the reference
    ref = torch.nn.Conv1d(4, 6, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch.nn.utils.weight_norm(ref)
    ref.load_state_dict(conv.conv.state_dict())
    x = torch.randn(2, 4, 20)
    torch.testing.assert_close(conv(x), ref(x))
    v = conv.conv.weight_v
    expected = conv.conv.weight_g * v / v.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    torch.testing.assert_close(conv.conv.weight, expected)


def test_weight_norm_is_trainable():
    conv = NormConv1d(2, 3, 3, norm="weight_norm")
    conv(torch.randn(1, 2, 8)).sum().backward()
    assert conv.conv.weight_g.grad is not None and conv.conv.weight_v.grad is not None
    assert conv.conv.weight_g.grad.abs().sum() > 0


def test_norm_errors():
    with pytest.raises(ValueError, match="norm='batch'"):
        NormConv1d(2, 2, 3, norm="batch")
    with pytest.raises(ValueError, match="cannot be causal"):
        NormConv1d(2, 2, 3, causal=True, norm="time_group_norm")
    with pytest.raises(ValueError, match="pad_mode='wrap'"):
        StreamableConv1d(2, 2, 3, pad_mode="wrap")
    with pytest.raises(ValueError, match="trim_right_ratio"):
        StreamableConvTranspose1d(2, 2, 4, 2, causal=False, trim_right_ratio=0.5)


# ---------------------------------------------------------------------------------------------- one-shot geometry
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (3, 1, 2), (8, 4, 1), (10, 5, 1), (1, 1, 1)])
def test_streamable_conv_length_and_padding(causal, kernel, stride, dilation):
    torch.manual_seed(0)
    conv = StreamableConv1d(3, 5, kernel, stride=stride, dilation=dilation, causal=causal, pad_mode="constant")
    for length in [1, 5, 17, 40]:
        x = torch.randn(2, 3, length)
        y = conv(x)
        assert y.shape == (2, 5, math.ceil(length / stride))
        eff = (kernel - 1) * dilation + 1
        total = eff - stride
        right = 0 if causal else total // 2
        extra = get_extra_padding_for_conv1d(x, eff, stride, total)
        ref = F.conv1d(F.pad(x, (total - right, right + extra)), conv.conv.conv.weight, conv.conv.conv.bias,
                       stride=stride, dilation=dilation)
        torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("causal,trim", [(False, 1.0), (True, 1.0), (True, 0.5), (True, 0.0)])
def test_streamable_conv_transpose_trims(causal, trim):
    torch.manual_seed(0)
    convtr = StreamableConvTranspose1d(3, 2, 10, stride=4, causal=causal, trim_right_ratio=trim)
    x = torch.randn(2, 3, 6)
    full = F.conv_transpose1d(x, convtr.convtr.convtr.weight, convtr.convtr.convtr.bias, stride=4)
    total = 10 - 4
    right = math.ceil(total * trim) if causal else total // 2
    y = convtr(x)
    assert y.shape == (2, 2, 24)
    torch.testing.assert_close(y, full[..., total - right:full.shape[-1] - right])


# ---------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel,stride,dilation", [(7, 1, 1), (3, 1, 4), (8, 4, 1), (16, 8, 1), (1, 1, 1)])
def test_conv_streaming_equals_one_shot(pad_mode, causal, kernel, stride, dilation):
    torch.manual_seed(1)
    conv = StreamableConv1d(2, 3, kernel, stride=stride, dilation=dilation, causal=causal, pad_mode=pad_mode,
                            norm="weight_norm").eval()
    for length, chunks in [(50, [1]), (50, [3, 7, 2]), (33, [33]), (5, [2]), (2, [1]), (1, [1])]:
        x = torch.randn(2, 2, length)
        with torch.no_grad():
            full = conv(x)
            streamed = _stream(conv, x, chunks)
        torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)


def test_conv_streaming_holds_back_lookahead_only():
    conv = StreamableConv1d(1, 1, 7, causal=False, pad_mode="constant")
    assert conv.lookahead == 3 and conv.paddings == (3, 3)
    x = torch.randn(1, 1, 20)
    with torch.no_grad(), conv.streaming():
        assert conv(x[..., :10]).shape[-1] == 7
        assert conv(x[..., 10:]).shape[-1] == 10
        assert conv.flush().shape[-1] == 3
    causal = StreamableConv1d(1, 1, 7, causal=True, pad_mode="constant")
    with torch.no_grad(), causal.streaming():
        assert causal(x[..., :1]).shape[-1] == 1
        assert causal.flush().shape[-1] == 0


def test_conv_streaming_restarts_after_flush_and_sees_new_weights():
    conv = StreamableConv1d(1, 2, 3, norm="weight_norm", pad_mode="constant")
    x = torch.randn(1, 1, 12)
    with torch.no_grad():
        with conv.streaming():
            a = torch.cat([conv(x[..., :5]), conv(x[..., 5:]), conv.flush()], dim=-1)
            b = torch.cat([conv(x[..., :4]), conv(x[..., 4:]), conv.flush()], dim=-1)
        torch.testing.assert_close(a, b)
        conv.conv.conv.weight_g.mul_(2.0)
        with conv.streaming():
            c = torch.cat([conv(x), conv.flush()], dim=-1)
        torch.testing.assert_close(c, conv(x))
        torch.testing.assert_close(c, 2 * a - conv.conv.conv.bias[:, None])


@pytest.mark.parametrize("causal,trim", [(False, 1.0), (True, 1.0), (True, 0.5)])
@pytest.mark.parametrize("kernel,stride", [(16, 8), (10, 5), (8, 4), (4, 4)])
def test_conv_transpose_streaming_equals_one_shot(causal, trim, kernel, stride):
    torch.manual_seed(2)
    convtr = StreamableConvTranspose1d(3, 2, kernel, stride=stride, causal=causal, trim_right_ratio=trim,
                                       norm="weight_norm").eval()
    for length, chunks in [(12, [1]), (12, [5, 2]), (1, [1])]:
        x = torch.randn(2, 3, length)
        with torch.no_grad():
            full = convtr(x)
            streamed = _stream(convtr, x, chunks)
        torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)


def test_causal_conv_transpose_streams_without_delay():
    convtr = StreamableConvTranspose1d(2, 2, 8, stride=4, causal=True)
    with torch.no_grad(), convtr.streaming():
        assert convtr(torch.randn(1, 2, 3)).shape[-1] == 12
        assert convtr.flush().shape[-1] == 0


def test_streaming_with_gradients_recomputes_weight():
    conv = StreamableConv1d(1, 1, 3, norm="weight_norm", causal=True)
    x = torch.randn(1, 1, 6)
    with conv.streaming():
        y = torch.cat([conv(x[..., :3]), conv(x[..., 3:])], dim=-1)
    y.sum().backward()
    assert conv.conv.conv.weight_v.grad is not None


def test_non_streamable_configurations_raise():
    conv = StreamableConv1d(2, 2, 3, norm="time_group_norm")
    with conv.streaming(), pytest.raises(StreamingError, match="time_group_norm"):
        conv(torch.randn(1, 2, 4))
    conv = StreamableConv1d(2, 2, 3, pad_mode="circular")
    assert conv(torch.randn(1, 2, 4)).shape == (1, 2, 4)
    with conv.streaming(), pytest.raises(StreamingError, match="circular"):
        conv(torch.randn(1, 2, 4))
