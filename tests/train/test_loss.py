"""Tests of audiocraft/train/loss.py against hand-computed cross-entropies."""
import math

import numpy as np
import pytest
import torch

from audiocraft.train.loss import compute_cross_entropy


def _ce(row, target):
    """-log softmax(row)[target], by hand."""
    m = max(row)
    return math.log(sum(math.exp(v - m) for v in row)) + m - row[target]


def test_small_case_by_hand() -> None:
    nan = float("nan")
    # B=1, K=2, T=3, card=3; codebook 1 is delayed: its last position has no valid prediction (NaN logits).
    logits = torch.tensor([[[[1.0, 2.0, 3.0], [0.5, -1.0, 0.0], [2.0, 2.0, -2.0]],
                            [[0.0, 0.0, 0.0], [3.0, -3.0, 1.0], [nan, nan, nan]]]])
    targets = torch.tensor([[[2, 0, 1], [1, 2, 0]]])
    mask = torch.tensor([[[True, True, True], [True, True, False]]])
    loss, per_codebook = compute_cross_entropy(logits, targets, mask)
    ce0 = (_ce([1, 2, 3], 2) + _ce([0.5, -1, 0], 0) + _ce([2, 2, -2], 1)) / 3
    ce1 = (_ce([0, 0, 0], 1) + _ce([3, -3, 1], 2)) / 2
    assert per_codebook[0].item() == pytest.approx(ce0, abs=1e-6)
    assert per_codebook[1].item() == pytest.approx(ce1, abs=1e-6)
    assert loss.item() == pytest.approx((ce0 + ce1) / 2, abs=1e-6)
    assert abs(loss.item() - (ce0 + ce1) / 2) < 1e-5


def test_gradient_ignores_masked_nan_positions() -> None:
    logits = torch.randn(2, 2, 4, 5)
    logits[:, 1, -1] = float("nan")
    logits.requires_grad_(True)
    mask = torch.ones(2, 2, 4, dtype=torch.bool)
    mask[:, 1, -1] = False
    loss, _ = compute_cross_entropy(logits, torch.randint(5, (2, 2, 4)), mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[:, 1, -1].abs().max() == 0


def test_golden_delayed_pattern_batch(golden) -> None:
    """The official LM's logits on a delayed-pattern batch (NaN where invalid) against a float64 hand computation."""
    g = golden("lm_forward")
    logits, mask, codes = g["logits"], g["logits_mask"], g["codes"]
    loss, per_codebook = compute_cross_entropy(logits, codes, mask)
    x = logits.double().numpy()
    expected = []
    for k in range(codes.shape[1]):
        values = []
        for b in range(codes.shape[0]):
            for t in range(codes.shape[2]):
                if mask[b, k, t]:
                    row = x[b, k, t]
                    values.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[codes[b, k, t]])
        expected.append(np.mean(values))
    assert torch.allclose(torch.stack(per_codebook).double(), torch.tensor(expected), atol=1e-5)
    assert abs(loss.item() - float(np.mean(expected))) < 1e-5


def test_codebook_without_valid_position_is_left_out() -> None:
    logits = torch.zeros(1, 2, 2, 4)
    mask = torch.tensor([[[True, True], [False, False]]])
    loss, per_codebook = compute_cross_entropy(logits, torch.zeros(1, 2, 2, dtype=torch.long), mask)
    assert loss.item() == pytest.approx(math.log(4)) and math.isnan(per_codebook[1].item())
    none, _ = compute_cross_entropy(logits.requires_grad_(True), torch.zeros(1, 2, 2, dtype=torch.long),
                                    torch.zeros(1, 2, 2, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_shape_and_dtype_errors() -> None:
    with pytest.raises(ValueError, match=r"logits must be \[B, K, T, card\], got shape \[2, 3\]"):
        compute_cross_entropy(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"must both be \[1, 2, 3\]"):
        compute_cross_entropy(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 2, dtype=torch.long),
                              torch.ones(1, 2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        compute_cross_entropy(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, dtype=torch.long), torch.ones(1, 2, 3))
