import torch

from audiocraft.modules.lstm import StreamableLSTM


def test_lstm_matches_torch_with_skip():
    torch.manual_seed(0)
    m = StreamableLSTM(6, num_layers=2)
    assert list(m.state_dict())[:2] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0"]
    x = torch.randn(3, 6, 9)
    ref, _ = m.lstm(x.permute(2, 0, 1))
    torch.testing.assert_close(m(x), (ref + x.permute(2, 0, 1)).permute(1, 2, 0))
    m.skip = False
    torch.testing.assert_close(m(x), ref.permute(1, 2, 0))


def test_lstm_streaming_equals_one_shot_and_flush_resets():
    torch.manual_seed(0)
    m = StreamableLSTM(4, num_layers=1)
    x = torch.randn(2, 4, 10)
    with torch.no_grad():
        full = m(x)
        with m.streaming():
            parts = [m(x[..., :3]), m(x[..., 3:3]), m(x[..., 3:])]
            assert parts[1].shape == (2, 4, 0)
            assert m.flush() is None
            again = m(x[..., :3])  # a new stream starts from a zero state
        torch.testing.assert_close(torch.cat(parts, dim=-1), full)
        torch.testing.assert_close(again, full[..., :3])


def test_inference_loop_equals_nn_lstm_with_state():
    torch.manual_seed(0)
    m = StreamableLSTM(8, num_layers=3, skip=False).eval()
    x = torch.randn(2, 8, 7)
    seq = x.permute(2, 0, 1)
    h0, c0 = torch.randn(3, 2, 8), torch.randn(3, 2, 8)
    with torch.no_grad():
        ref, (h_ref, c_ref) = m.lstm(seq, (h0, c0))
        with m.streaming():
            state = m._get_or_init_state(x)
            state.hidden, state.cell = h0, c0
            out = m(x)
            torch.testing.assert_close(state.hidden, h_ref, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(state.cell, c_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, ref.permute(1, 2, 0), atol=1e-6, rtol=1e-5)


def test_gradients_flow_through_nn_lstm():
    m = StreamableLSTM(4, num_layers=1)
    x = torch.randn(1, 4, 5, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and m.lstm.weight_hh_l0.grad is not None
