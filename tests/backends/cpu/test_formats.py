"""prepare_lm_for_inference: packed float32 keeps the goldens; bf16 / int8 weights with stated accuracy."""
import pytest
import torch

from audiocraft.models.lm import LMModel
from audiocraft.backends.cpu.formats import prepare_lm_for_inference, weight_format
from audiocraft.backends.cpu import kernels as native_kernels
from audiocraft.backends.cpu.packing import packed_weight_bytes, packing_available
from tests.models.test_lm import _attrs, _load

pytestmark = pytest.mark.skipif(not all(packing_available(k) for k in ("onednn", "bf16", "int8")),
                                reason="this PyTorch build lacks the packed CPU kernels")
IMPLS = (["native"] if native_kernels.available() else []) + ["torch"]


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    """'native': the native kernels (where they build); 'torch': PyTorch's oneDNN / fbgemm kernels."""
    if request.param == "torch":
        monkeypatch.setattr(native_kernels, "available", lambda: False)
    return request.param


@pytest.fixture(scope="module")
def reference_logits(golden):
    g = golden("lm_forward")
    with torch.no_grad():
        return _load("musicgen-small").compute_predictions(g["codes"], _attrs(g["meta"]["texts"])).logits


def _logits(lm: LMModel, golden) -> torch.Tensor:
    g = golden("lm_forward")
    with torch.no_grad():
        return lm.compute_predictions(g["codes"], _attrs(g["meta"]["texts"])).logits


def _linear_weight_bytes(lm: LMModel) -> int:
    return sum(m.weight.numel() * 4 for part in (lm.transformer, lm.linears) for m in part.modules()
               if hasattr(m, "out_features")) + sum(
        a.in_proj_weight.shape[0] * a.in_proj_weight.shape[1] * 4 for a in lm.transformer.modules()
        if hasattr(a, "in_proj_weight") and a.in_proj_weight.numel() > 0)


def test_packed_float32_matches_the_goldens(golden, impl):
    lm = prepare_lm_for_inference(_load("musicgen-small"))
    kind = "native" if impl == "native" else "onednn"
    assert lm.transformer.layers[0].self_attn.packed_kind == kind and lm.linears[0].packed_kind == kind
    g = golden("lm_forward")
    logits = _logits(lm, golden)
    valid = ~g["logits"].isnan()
    assert torch.equal(logits.isnan(), g["logits"].isnan())
    assert float((logits[valid] - g["logits"][valid]).abs().max()) < 1e-4
    for name in ("generate_greedy", "generate_sampling_topk", "generate_sampling_topp"):
        g = golden(name)
        p, meta = g["meta"]["set_generation_params"], g["meta"]
        if meta["torch.manual_seed_right_before_call"] is not None:
            torch.manual_seed(meta["torch.manual_seed_right_before_call"])
        tokens = lm.generate(None, _attrs(meta["texts"]), max_gen_len=g["tokens"].shape[-1],
                             use_sampling=p["use_sampling"], temp=p["temperature"], top_k=p["top_k"],
                             top_p=p["top_p"], cfg_coef=p["cfg_coef"])
        assert torch.equal(tokens, g["tokens"]), name
    assert tuple(lm.state_dict()["transformer.layers.0.self_attn.in_proj_weight"].shape) == (192, 64)


# Accuracy on the tiny reference LM (teacher-forced logits of the lm_forward golden codes, vs float32):
#   bf16: max |logit error| 0.011 (logits have std 1.0), argmax agreement 100 %;
#   int8, native (weights only): max |logit error| 0.039, argmax agreement 97.1 %;
#   int8, fbgemm: max |logit error| 0.087, argmax agreement 95.6 % (8-bit dynamic activations as well).
@pytest.mark.parametrize("kwargs, max_error, min_agreement, bytes_per_weight", [
    (dict(dtype=torch.bfloat16), {"native": 0.02, "torch": 0.02}, {"native": 1.0, "torch": 1.0}, 2.0),
    (dict(quantize="int8"), {"native": 0.05, "torch": 0.15}, {"native": 0.95, "torch": 0.93}, 1.25),
])
def test_reduced_precision_accuracy(golden, reference_logits, impl, kwargs, max_error, min_agreement,
                                    bytes_per_weight):
    max_error, min_agreement = max_error[impl], min_agreement[impl]
    lm = _load("musicgen-small")
    fp32_bytes = _linear_weight_bytes(lm)
    prepare_lm_for_inference(lm, **kwargs)
    assert packed_weight_bytes(lm) <= fp32_bytes / 4 * bytes_per_weight
    logits = _logits(lm, golden)
    valid = ~reference_logits.isnan()
    error = float((logits[valid] - reference_logits[valid]).abs().max())
    assert 1e-4 < error < max_error  # lossy, within the stated bound
    agreement = (logits.argmax(-1) == reference_logits.argmax(-1))[valid[..., 0]].float().mean()
    assert float(agreement) >= min_agreement
    tokens = lm.generate(None, _attrs(["rock"]), max_gen_len=8, use_sampling=False)
    assert tokens.shape == (1, 4, 8)


def test_weight_format_and_errors():
    assert weight_format() == weight_format(torch.float32) == ("native" if native_kernels.available() else "onednn")
    assert weight_format(torch.bfloat16) == "bf16" and weight_format(quantize="int8") == "int8"
    with pytest.raises(ValueError, match="dtype must be None, torch.float32 or torch.bfloat16 on CPU, got "
                                         "torch.float16"):
        weight_format(torch.float16)
    with pytest.raises(ValueError, match="quantize must be None or one of \\('int8',\\), got 'int4'"):
        weight_format(quantize="int4")
    with pytest.raises(ValueError, match="cannot be combined with dtype=torch.bfloat16"):
        weight_format(torch.bfloat16, "int8")


def test_unpacked_when_pack_is_false_and_refused_off_cpu():
    lm = prepare_lm_for_inference(_load("musicgen-small"))
    prepare_lm_for_inference(lm, pack=False)
    assert type(lm.linears[0]) is torch.nn.Linear and lm.linears[0].weight.shape == (2048, 64)
    meta = LMModel.__new__(LMModel)
    torch.nn.Module.__init__(meta)
    meta.register_parameter("w", torch.nn.Parameter(torch.zeros(1, device="meta")))
    with pytest.raises(ValueError, match="quantize='int8' is only implemented for CPU inference; the LM is on meta"):
        prepare_lm_for_inference(meta, quantize="int8")
