import math

import pytest
import torch

from audiocraft.modules.rope import RotaryEmbedding, XPos


def test_two_dim_rope_rotates_by_position_angle():
    # dim 2: one frequency, 1 / max_period ** 0 = 1 -> the pair at time t is rotated by t radians.
    rope = RotaryEmbedding(2)
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]).view(1, 3, 2)  # [B, T, D], time_dim 1
    out = rope.rotate(x, start=1)
    expected = torch.tensor([[math.cos(1), math.sin(1)], [math.cos(2), math.sin(2)],
                             [-2 * math.sin(3), 2 * math.cos(3)]]).view(1, 3, 2)
    torch.testing.assert_close(out, expected)


def test_frequencies_and_norm_preserved():
    rope = RotaryEmbedding(8, max_period=100.0)
    torch.testing.assert_close(rope.frequencies, 100.0 ** (-torch.arange(0, 8, 2) / 8))
    x = torch.randn(2, 4, 5, 8)  # [B, H, T, D]
    out = rope.rotate(x, time_dim=2)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


def test_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 16), torch.randn(1, 1, 16)
    scores = []
    for start in (0, 7, 31):
        rq = rope.rotate(q, start=start + 3)
        rk = rope.rotate(k, start=start)
        scores.append((rq * rk).sum())
    torch.testing.assert_close(scores[0], scores[1])
    torch.testing.assert_close(scores[0], scores[2])


def test_start_offset_matches_slice_of_full_rotation():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 10, 8)
    full = rope.rotate(x)
    torch.testing.assert_close(rope.rotate(x[:, 6:], start=6), full[:, 6:])


def test_rotate_qk_aligns_short_query_on_the_end_of_keys():
    rope = RotaryEmbedding(8, xpos=True)
    q, k = torch.randn(1, 10, 8), torch.randn(1, 10, 8)
    fq, fk = rope.rotate_qk(q, k, start=2)
    sq, sk = rope.rotate_qk(q[:, -3:], k, start=2)
    torch.testing.assert_close(sq, fq[:, -3:])
    torch.testing.assert_close(sk, fk)
    with pytest.raises(ValueError, match="query is longer"):
        rope.rotate_qk(q, k[:, :3])


def test_xpos_decay_scales_queries_up_and_keys_down():
    xpos = XPos(4)
    torch.testing.assert_close(xpos.decay_rates, (torch.arange(2) / 2 + 0.4) / 1.4)
    decay = xpos.get_decay(0, 1025)
    torch.testing.assert_close(decay[512].real, xpos.decay_rates)  # rate ** (512 / 512)
    rope = RotaryEmbedding(4, xpos=True)
    q = torch.ones(1, 1, 4)
    rq, rk = rope.rotate_qk(q, q, start=512)
    # at t = 512 the query pair magnitude is multiplied by rate, the key's divided by rate
    rates = xpos.decay_rates
    torch.testing.assert_close(rq.view(2, 2).norm(dim=-1), math.sqrt(2) * rates)
    torch.testing.assert_close(rk.view(2, 2).norm(dim=-1), math.sqrt(2) / rates)


def test_scale_blends_with_identity():
    rope = RotaryEmbedding(4, scale=0.0)
    x = torch.randn(1, 5, 4)
    torch.testing.assert_close(rope.rotate(x, start=3), x)


def test_table_made_in_inference_mode_is_not_reused_for_autograd():
    rope = RotaryEmbedding(4)
    with torch.inference_mode():
        rope.rotate(torch.randn(1, 8, 4))
    x = torch.randn(1, 8, 4, requires_grad=True)
    rope.rotate(x).sum().backward()  # would fail on an inference-mode table
    assert x.grad is not None


def test_errors():
    with pytest.raises(ValueError, match="even dim"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        RotaryEmbedding(4, dtype=torch.float16)


def test_built_on_meta_then_moved_recomputes_the_frequencies():
    """Loaders build models on the meta device and assign the checkpoint tensors; the frequencies are not saved."""
    reference = RotaryEmbedding(8, max_period=500.0)
    with torch.device("meta"):
        rope = RotaryEmbedding(8, max_period=500.0)
    assert rope.frequencies.is_meta
    rope.to("cpu")
    assert torch.equal(rope.frequencies, reference.frequencies)
    with torch.device("meta"):
        lazy = RotaryEmbedding(8, max_period=500.0)
    x = torch.randn(1, 3, 2, 8)
    assert torch.equal(lazy.rotate(x), reference.rotate(x))
