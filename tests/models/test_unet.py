"""The diffusion U-Net of MultiBandDiffusion: official state-dict names, the bottleneck transformer's training-mode
path against torch.nn.MultiheadAttention (same output, same random draws), lengths and input checks."""
import json

import pytest
import torch
from torch.nn import functional as F

from audiocraft.models import DiffusionUnet
from audiocraft.models.builders import get_diffusion_model
from audiocraft.models.unet import BottleneckTransformerLayer
from tests.conftest import GOLDEN_DIR

TINY = dict(chin=1, hidden=4, depth=2, growth=2.0, emb_all_layers=True, transformer=True, codec_dim=6,
            kernel=8, stride=4, norm_groups=2)


def test_state_dict_matches_the_official_checkpoint_layout():
    shapes = json.loads((GOLDEN_DIR / "state_dict_shapes_magnet_mbd.json").read_text())
    expected = {name: shape for name, shape, _ in shapes["multiband-diffusion/mbd_musicgen_32khz.th[0].model_state"]}
    cfg = {"channels": 1, "schedule": {"num_steps": 1000},
           "diffusion_unet": dict(hidden=8, depth=4, res_blocks=1, norm_groups=4, kernel=8, stride=4, growth=1.0,
                                  max_channels=10000, dropout=0.0, emb_all_layers=True, bilstm=False, codec_dim=32,
                                  transformer=True, cross_attention=False)}
    model = get_diffusion_model(cfg)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == expected
    assert model.training  # MultiBandDiffusion never switches it to eval mode


def _torch_layer(layer: BottleneckTransformerLayer, x: torch.Tensor) -> torch.Tensor:
    """Audiocraft's layer (post-norm nn.TransformerEncoderLayer blocks around nn.MultiheadAttention), training."""
    attended = layer.self_attn.mha(x, x, x, need_weights=False)[0]
    x = layer.norm1(x + F.dropout(attended, 0.1, True))
    hidden = F.dropout(F.relu(layer.linear1(x)), 0.1, True)
    return layer.norm2(x + F.dropout(layer.linear2(hidden), 0.1, True))


@pytest.mark.parametrize("batch", [1, 3])
def test_transformer_layer_draws_like_multihead_attention(batch):
    torch.manual_seed(0)
    layer = BottleneckTransformerLayer(64, 8, 256)
    x = torch.randn(batch, 64, 37).permute(0, 2, 1)  # [B, T, C] view of the U-Net's [B, C, T] bottleneck
    with torch.no_grad():
        torch.manual_seed(5)
        expected, expected_after = _torch_layer(layer, x), torch.rand(3)
        torch.manual_seed(5)
        out, after = layer(x), torch.rand(3)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(after, expected_after)  # same number of random draws


@pytest.mark.parametrize("length", [1, 5, 257, 1001])
def test_output_length_equals_input_length(length):
    torch.manual_seed(0)
    model = DiffusionUnet(**TINY)
    with torch.no_grad():
        out = model(torch.randn(2, 1, length), 999, condition=torch.randn(2, 6, max(1, length // 20))).sample
    assert out.shape == (2, 1, length)


def test_precomputed_condition_embedding_gives_the_same_output():
    torch.manual_seed(0)
    model = DiffusionUnet(**TINY).eval()
    x, condition = torch.randn(2, 1, 160), torch.randn(2, 6, 4)
    with torch.no_grad():
        direct = model(x, 10, condition=condition).sample
        emb = model.condition_embedding(condition, 10)  # 160 -> 40 -> 10 at the bottleneck
        assert torch.equal(model(x, 10, condition_emb=emb).sample, direct)
        steps = model(x, torch.tensor([10, 10]), condition=condition).sample
    assert torch.equal(steps, direct)


def test_training_mode_dropout_changes_the_output():
    torch.manual_seed(0)
    model = DiffusionUnet(**TINY)
    x, condition = torch.randn(1, 1, 320), torch.randn(1, 6, 8)
    with torch.no_grad():
        first, second = model(x, 500, condition).sample, model(x, 500, condition).sample
        model.eval()
        third, fourth = model(x, 500, condition).sample, model(x, 500, condition).sample
    assert not torch.equal(first, second) and torch.equal(third, fourth)


def test_input_errors():
    model = DiffusionUnet(**TINY)
    with pytest.raises(ValueError, match="conditional"):
        model(torch.randn(1, 1, 64), 0)
    with pytest.raises(ValueError, match="downsampled by a factor >= 2"):
        model(torch.randn(1, 1, 64), 0, condition=torch.randn(1, 6, 50))
    with pytest.raises(ValueError, match="cross_attention=True"):
        DiffusionUnet(cross_attention=True)
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['foo'\]"):
        DiffusionUnet(foo=1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['foo'\] in config section 'diffusion_unet'"):
        get_diffusion_model({"channels": 1, "schedule": {"num_steps": 10}, "diffusion_unet": {"foo": 1}})
    with pytest.raises(ValueError, match="schedule.num_steps"):
        get_diffusion_model({"channels": 1, "schedule": {}, "diffusion_unet": {}})


def test_condition_reaches_the_deepest_skip_even_without_bottleneck_model():
    """Audiocraft adds the condition IN PLACE to the bottleneck tensor, which is also the deepest skip: with
    neither transformer nor BiLSTM the bottleneck is zeroed, yet the condition still reaches the decoders."""
    torch.manual_seed(0)
    model = DiffusionUnet(chin=1, hidden=4, depth=2, codec_dim=3).eval()
    x = torch.randn(1, 1, 64)
    with torch.no_grad():
        a = model(x, 3, condition=torch.randn(1, 3, 2)).sample
        b = model(x, 3, condition=torch.randn(1, 3, 2)).sample
    assert not torch.equal(a, b)


def test_backend_ops_give_the_same_unet_output():
    """backends.prepare_diffusion swaps in the CPU backend's convolutions (one matrix product each) and dropout (the
    same random draws): the same output as PyTorch's own modules, within float round-off."""
    from audiocraft import backends
    from audiocraft.backends.cpu.diffusion import NativeDiffusionOps
    from audiocraft.backends.diffusion import TORCH_DIFFUSION_OPS

    torch.manual_seed(0)
    model = DiffusionUnet(**TINY)
    x, condition = torch.randn(2, 1, 999), torch.randn(2, 6, 3)
    torch.manual_seed(5)
    plain = model(x, 949, condition=condition).sample
    backends.prepare_diffusion(model)
    assert all(isinstance(m.ops, NativeDiffusionOps) for m in model.modules() if hasattr(m, "ops"))
    torch.manual_seed(5)
    fast = model(x, 949, condition=condition).sample
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)
    model.set_ops(TORCH_DIFFUSION_OPS)
    torch.manual_seed(5)
    assert torch.equal(model(x, 949, condition=condition).sample, plain)
