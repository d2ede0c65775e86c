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
