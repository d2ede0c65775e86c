from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from audiocraft.quantization import DummyQuantizer, QuantizedResult, ResidualVectorQuantizer
from audiocraft.quantization.core_vq import EuclideanCodebook, VectorQuantization, kmeans

REFERENCE_DIR = Path(__file__).parents[1] / "reference"


def _small_checkpoint_state():
    snapshot = REFERENCE_DIR / "hf_cache" / "models--facebook--musicgen-small"
    commit = (snapshot / "refs" / "main").read_text().strip()
    pkg = torch.load(snapshot / "snapshots" / commit / "compression_state_dict.bin", map_location="cpu",
                     weights_only=True)
    return pkg["best_state"]


def test_keys_match_checkpoint_and_golden_codes(golden):
    rvq = ResidualVectorQuantizer(dimension=32, n_q=4, bins=2048, kmeans_iters=50)
    state = {k[len("quantizer."):]: v for k, v in _small_checkpoint_state().items() if k.startswith("quantizer.")}
    assert list(rvq.state_dict()) == list(state)
    rvq.load_state_dict(state)
    rvq.eval()
    g = golden("compression")
    codes = rvq.encode(g["encoder_out"])
    assert codes.dtype == torch.int64 and codes.shape == (1, 4, 75)
    assert torch.equal(codes, g["codes"])
    torch.testing.assert_close(rvq.decode(g["codes"]), g["quantized_latent"], atol=1e-6, rtol=0)


def test_encode_is_nearest_code_per_residual():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=6, n_q=3, bins=16, kmeans_init=False).eval()
    x = torch.randn(2, 6, 10)
    codes = rvq.encode(x)
    residual = x.transpose(1, 2).reshape(-1, 6)
    for k, layer in enumerate(rvq.vq.layers):
        expected = torch.cdist(residual, layer.codebook).argmin(dim=-1)
        assert torch.equal(codes[:, k].reshape(-1), expected)
        residual = residual - layer.codebook[expected]
    # decode(codes) == sum of the chosen codes == x - final residual
    torch.testing.assert_close(rvq.decode(codes).transpose(1, 2).reshape(-1, 6),
                               x.transpose(1, 2).reshape(-1, 6) - residual, atol=1e-5, rtol=1e-5)


def test_forward_eval_matches_encode_decode_and_bandwidth():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=4, n_q=2, bins=8, kmeans_init=False).eval()
    x = torch.randn(3, 4, 5)
    res = rvq(x, frame_rate=50)
    assert isinstance(res, QuantizedResult)
    assert torch.equal(res.codes, rvq.encode(x))
    torch.testing.assert_close(res.x, rvq.decode(res.codes))
    assert res.bandwidth.item() == pytest.approx(2 * 3 * 50 / 1000)  # n_q * log2(8) * frame_rate / 1000
    assert res.penalty.item() == 0.0


def test_num_codebooks():
    rvq = ResidualVectorQuantizer(dimension=4, n_q=4, bins=8, kmeans_init=False)
    assert rvq.total_codebooks == rvq.num_codebooks == 4
    rvq.set_num_codebooks(2)
    assert rvq.num_codebooks == 2 and rvq.total_codebooks == 4
    assert rvq.encode(torch.randn(1, 4, 3)).shape == (1, 2, 3)
    with pytest.raises(ValueError, match=r"n must be in \[1, 4\].*got 5"):
        rvq.set_num_codebooks(5)
    with pytest.raises(ValueError, match="got 0"):
        rvq.set_num_codebooks(0)


def test_q_dropout_uses_random_number_of_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=4, n_q=4, bins=8, q_dropout=True, kmeans_init=False)
    counts = {rvq(torch.randn(2, 4, 6), frame_rate=10).codes.shape[1] for _ in range(20)}
    assert counts.issubset({1, 2, 3, 4}) and len(counts) > 1
    rvq.eval()
    assert rvq(torch.randn(2, 4, 6), frame_rate=10).codes.shape[1] == 4


# ---------------------------------------------------------------------------------------------- training
def test_kmeans_finds_clusters():
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centers])
    means, bins = kmeans(samples, 3, num_iters=10)
    order = means[:, 0].argsort().tolist()
    assert sorted(bins.tolist()) == [50, 50, 50]
    found = means[order]
    # sorted by x: the two clusters with x ~ 0 first (order between them by y), then (10, 0)
    assert torch.allclose(found[2], centers[1], atol=0.1)
    assert {round(v) for v in found[:2, 1].tolist()} == {0, 10}


def test_kmeans_init_on_first_training_batch():
    torch.manual_seed(0)
    book = EuclideanCodebook(dim=2, codebook_size=4, kmeans_init=True, kmeans_iters=5)
    assert book.inited.item() == 0.0 and book.embed.abs().sum() == 0
    x = torch.randn(64, 2)
    book.train()
    book(x)
    assert book.inited.item() == 1.0
    assert book.embed.abs().sum() > 0


def test_ema_update_by_hand():
    book = EuclideanCodebook(dim=2, codebook_size=2, decay=0.5, threshold_ema_dead_code=0)
    with torch.no_grad():
        book.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        book.embed_avg.copy_(book.embed)
        book.cluster_size.fill_(1.0)
    x = torch.tensor([[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]])
    book.train()
    quantized, codes = book(x)
    assert codes.tolist() == [0, 0, 1]
    torch.testing.assert_close(quantized, torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))  # old codes
    torch.testing.assert_close(book.cluster_size, torch.tensor([1.5, 1.0]))  # 0.5 * 1 + 0.5 * [2, 1]
    torch.testing.assert_close(book.embed_avg, torch.tensor([[1.5, 1.5], [9.5, 9.5]]))  # 0.5 * old + 0.5 * sums
    torch.testing.assert_close(book.embed, torch.tensor([[1.0, 1.0], [9.5, 9.5]]), atol=1e-4, rtol=0)
    book.eval()
    before = book.embed.clone()
    book(x)
    assert torch.equal(book.embed, before)  # no update in eval mode


def test_dead_codes_are_replaced_by_batch_vectors():
    torch.manual_seed(0)
    book = EuclideanCodebook(dim=2, codebook_size=4, decay=0.99, threshold_ema_dead_code=2)
    with torch.no_grad():
        book.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [1e3, 1e3], [-1e3, 1e3]]))
        book.embed_avg.copy_(book.embed * 5)
        book.cluster_size.copy_(torch.tensor([5.0, 5.0, 0.0, 0.0]))
    x = torch.rand(16, 2)
    book.train()
    book(x)
    for code in (2, 3):
        distance = (x - book.embed[code]).norm(dim=-1).min()
        assert distance < 1e-3, f"code {code} was not replaced by a batch vector"
    assert book.embed[:2].abs().max() < 2.0


def test_straight_through_and_commitment_loss():
    vq = VectorQuantization(dim=2, codebook_size=2, threshold_ema_dead_code=0, commitment_weight=0.5)
    with torch.no_grad():
        vq._codebook.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        vq._codebook.embed_avg.copy_(vq._codebook.embed)
        vq._codebook.cluster_size.fill_(1.0)
    x = torch.tensor([[[0.2, 0.9], [0.1, 0.7]]], requires_grad=True)  # [B=1, D=2, T=2]
    vq.train()
    quantized, codes, loss = vq(x)
    assert codes.tolist() == [[0, 1]]
    torch.testing.assert_close(quantized.detach(), torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))
    expected = F.mse_loss(torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]), x.detach()) * 0.5
    torch.testing.assert_close(loss, expected.reshape(1))
    quantized.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))  # identity gradient through the quantizer


def test_orthogonal_regularisation_adds_loss():
    torch.manual_seed(0)
    vq = VectorQuantization(dim=3, codebook_size=4, orthogonal_reg_weight=1.0, orthogonal_reg_max_codes=3)
    vq.train()
    _, _, loss = vq(torch.randn(1, 3, 8))
    vq.orthogonal_reg_weight = 0.0
    _, _, loss_plain = vq(torch.randn(1, 3, 8))
    assert loss.item() > 0 and loss.item() != loss_plain.item()


def test_training_lowers_reconstruction_error():
    """A conv auto-encoder with a RVQ bottleneck learns a toy signal: EMA codebooks + straight-through."""
    torch.manual_seed(0)
    t = torch.arange(64).float()
    freqs = torch.tensor([1.0, 2.0, 3.0, 5.0])[:, None, None]
    signal = torch.sin(2 * torch.pi * freqs * t / 64 + torch.rand(4, 1, 1) * 6)  # [4, 1, 64]
    enc = nn.Conv1d(1, 8, 5, padding=2)
    dec = nn.Conv1d(8, 1, 5, padding=2)
    rvq = ResidualVectorQuantizer(dimension=8, n_q=2, bins=32, decay=0.9, kmeans_iters=5)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    rvq.train()

    def step():
        q = rvq(enc(signal), frame_rate=50)
        recon = F.mse_loss(dec(q.x), signal)
        return recon, q

    losses = []
    for _ in range(60):
        recon, q = step()
        opt.zero_grad()
        (recon + q.penalty).backward()
        assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0  # gradient through the RVQ
        opt.step()
        losses.append(recon.item())
    assert rvq.vq.layers[0].inited.item() == 1.0
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_dummy_quantizer():
    dq = DummyQuantizer()
    x = torch.randn(2, 3, 5)
    res = dq(x, frame_rate=10)
    assert torch.equal(res.x, x) and res.codes.shape == (2, 1, 3, 5)
    assert torch.equal(dq.decode(dq.encode(x)), x)
    assert dq.total_codebooks == dq.num_codebooks == 1
    with pytest.raises(AttributeError, match="dummy quantizer"):
        dq.set_num_codebooks(2)
