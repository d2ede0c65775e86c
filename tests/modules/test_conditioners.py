"""Conditioning attributes, condition dropout and the ConditionFuser."""
import pytest
import torch

from audiocraft.modules.conditioners import (
    AttributeDropout, ClassifierFreeGuidanceDropout, ConditionFuser, ConditioningAttributes, JointEmbedCondition,
    WavCondition, dropout_condition, nullify_condition, nullify_wav,
)


def melody(length: int = 50, value: float = 1.0) -> WavCondition:
    return WavCondition(torch.full((1, 1, length), value), torch.tensor([length]), sample_rate=[32000], path=["x.wav"])


# ------------------------------------------------------------------------------------------------ attributes
def test_attributes_accessors_and_flat_dict():
    attrs = ConditioningAttributes(text={"description": "rock", "genre": None}, wav={"self_wav": melody()})
    assert list(attrs.text_attributes) == ["description", "genre"]
    assert list(attrs.wav_attributes) == ["self_wav"]
    assert {k: list(v) for k, v in attrs.attributes.items()} == {
        "text": ["description", "genre"], "wav": ["self_wav"], "joint_embed": []}
    assert attrs["text"] is attrs.text
    flat = attrs.to_flat_dict()
    assert list(flat) == ["text.description", "text.genre", "wav.self_wav"]
    back = ConditioningAttributes.from_flat_dict(flat)
    assert back.text == attrs.text and back.wav["self_wav"] is attrs.wav["self_wav"]
    with pytest.raises(ValueError, match="'<kind>.<name>'.*'description'"):
        ConditioningAttributes.from_flat_dict({"description": "x"})
    with pytest.raises(KeyError, match="Unknown condition kind 'foo'"):
        attrs["foo"]


def test_nullify_condition_and_wav():
    cond = torch.randn(2, 7, 3)
    null, mask = nullify_condition((cond, torch.ones(2, 7)), dim=1)
    assert null.shape == (2, 1, 3) and null.abs().sum() == 0
    assert mask.shape == (2, 1) and mask.dtype == torch.int32 and mask.sum() == 0
    with pytest.raises(ValueError, match="non-batch dimension"):
        nullify_condition((cond, torch.ones(2, 7)), dim=0)
    with pytest.raises(TypeError, match=r"\(Tensor, Tensor\) tuple"):
        nullify_condition([cond, cond])  # type: ignore[arg-type]

    null_wav = nullify_wav(WavCondition(torch.randn(3, 1, 100), torch.tensor([100, 90, 80]), [16000] * 3,
                                        ["a", "b", "c"], [0.0, 1.0, 2.0]))
    assert null_wav.wav.shape == (3, 1, 1) and null_wav.wav.abs().sum() == 0
    assert null_wav.length.tolist() == [0, 0, 0] and null_wav.length.dtype == torch.long
    assert null_wav.sample_rate == [16000] * 3
    assert null_wav.path == [None] * 3 and null_wav.seek_time == [None] * 3


def test_dropout_condition_in_place():
    sample = ConditioningAttributes(text={"description": "x"}, wav={"self_wav": melody()},
                                    joint_embed={"clap": JointEmbedCondition(torch.ones(1, 1, 10), ["t"],
                                                                             torch.tensor([10]), [32000])})
    assert dropout_condition(sample, "text", "description") is sample
    assert sample.text["description"] is None
    dropout_condition(sample, "wav", "self_wav")
    assert sample.wav["self_wav"].wav.shape == (1, 1, 1)
    dropout_condition(sample, "joint_embed", "clap")
    assert sample.joint_embed["clap"].text == [None] and sample.joint_embed["clap"].wav.shape[-1] == 1
    with pytest.raises(ValueError, match="condition_type must be one of.*'audio'"):
        dropout_condition(sample, "audio", "self_wav")
    with pytest.raises(ValueError, match="'genre' is not a text attribute.*\\['description'\\]"):
        dropout_condition(sample, "text", "genre")


# ------------------------------------------------------------------------------------------------ dropout
def test_cfg_dropout_p1_nullifies_everything_on_copies():
    samples = [ConditioningAttributes(text={"description": "a", "genre": "b"}, wav={"self_wav": melody()}),
               ConditioningAttributes(text={"description": None}, wav={"self_wav": melody(80)})]
    out = ClassifierFreeGuidanceDropout(p=1.0)(samples)
    assert out is not samples
    for sample in out:
        assert all(v is None for v in sample.text.values())
        assert sample.wav["self_wav"].wav.shape == (1, 1, 1) and sample.wav["self_wav"].length.tolist() == [0]
    # The inputs are untouched.
    assert samples[0].text["description"] == "a" and samples[1].wav["self_wav"].wav.shape == (1, 1, 80)


def test_cfg_dropout_inactive_cases():
    samples = [ConditioningAttributes(text={"description": "a"})]
    assert ClassifierFreeGuidanceDropout(p=0.0)(samples) is samples
    module = ClassifierFreeGuidanceDropout(p=1.0).eval()
    assert module(samples) is samples


def test_cfg_dropout_uses_own_seeded_generator():
    samples = [ConditioningAttributes(text={"description": "a"})]
    expected = [bool(v < 0.5) for v in torch.rand(20, generator=torch.Generator().manual_seed(7)).tolist()]
    torch.manual_seed(0)
    before = torch.rand(1)
    module = ClassifierFreeGuidanceDropout(p=0.5, seed=7)
    dropped = [module(samples)[0].text["description"] is None for _ in range(20)]
    assert dropped == expected
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), before)  # the global RNG was not consumed


def test_attribute_dropout():
    samples = [ConditioningAttributes(text={"description": "a", "genre": "rock"}, wav={"self_wav": melody()})
               for _ in range(2)]
    module = AttributeDropout({"text": {"genre": 1.0, "description": 0.0}, "wav": {"self_wav": 1.0}})
    out = module(samples)
    for sample in out:
        assert sample.text == {"description": "a", "genre": None}
        assert sample.wav["self_wav"].wav.shape == (1, 1, 1)
    assert samples[0].text["genre"] == "rock"
    assert module.eval()(samples) is samples
    active = AttributeDropout({"text": {"genre": 1.0}}, active_on_eval=True).eval()
    assert active(samples)[0].text["genre"] is None
    # Draw order: one draw per listed attribute, from the module's generator.
    draws = torch.rand(2, generator=torch.Generator().manual_seed(3)).tolist()
    seeded = AttributeDropout({"text": {"description": 0.5, "genre": 0.5}}, seed=3)(samples)
    assert (seeded[0].text["description"] is None) == (draws[0] < 0.5)
    assert (seeded[0].text["genre"] is None) == (draws[1] < 0.5)


def test_dropout_bad_inputs():
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        ClassifierFreeGuidanceDropout(p=1.5)
    with pytest.raises(ValueError, match="kinds must be in.*'audio'"):
        AttributeDropout({"audio": {"x": 0.1}})
    with pytest.raises(ValueError, match=r"p\['text'\]\['genre'\] must be a probability.*-0.1"):
        AttributeDropout({"text": {"genre": -0.1}})
    with pytest.raises(TypeError, match=r"samples\[0\] must be a ConditioningAttributes, got str"):
        ClassifierFreeGuidanceDropout(p=1.0)(["a"])
    with pytest.raises(ValueError, match="'genre' is not a text attribute"):
        AttributeDropout({"text": {"genre": 1.0}})([ConditioningAttributes(text={"description": "a"})])


# ------------------------------------------------------------------------------------------------ fuser
def conditions(B=2, D=4):
    torch.manual_seed(0)
    return {"description": (torch.randn(B, 3, D), torch.ones(B, 3)),
            "self_wav": (torch.randn(B, 5, D), torch.ones(B, 5))}


def test_fuser_maps():
    fuser = ConditionFuser({"prepend": ["self_wav", "description"], "cross": [], "sum": []})
    assert fuser.cond2fuse == {"self_wav": "prepend", "description": "prepend"}
    assert fuser.fuse2cond["prepend"] == ["self_wav", "description"]


def test_fuser_prepend_order_follows_conditions_order():
    fuser = ConditionFuser({"prepend": ["self_wav", "description"]})
    x = torch.randn(2, 6, 4)
    conds = conditions()
    out, cross = fuser(x, conds)  # conditions order: description, then self_wav
    assert cross is None
    assert out.shape == (2, 5 + 3 + 6, 4)
    assert torch.equal(out[:, :5], conds["self_wav"][0])
    assert torch.equal(out[:, 5:8], conds["description"][0])
    assert torch.equal(out[:, 8:], x)


def test_fuser_prepends_only_on_first_streaming_step():
    fuser = ConditionFuser({"prepend": ["description"]})
    conds = {"description": conditions()["description"]}
    x = torch.randn(2, 1, 4)
    with fuser.streaming():
        first, _ = fuser(x, conds)
        second, _ = fuser(x, conds)
        assert fuser.get_streaming_state()["offsets"].tolist() == [2, 2]
    assert first.shape == (2, 4, 4) and torch.equal(second, x)
    # Out of streaming, every call prepends.
    assert fuser(x, conds)[0].shape == (2, 4, 4)
    assert fuser(x, conds)[0].shape == (2, 4, 4)


def test_fuser_cross_returns_condition_and_sum_interpolate():
    conds = conditions()
    x = torch.randn(2, 6, 4)
    out, cross = ConditionFuser({"cross": ["description", "self_wav"]})(x, conds)
    assert torch.equal(out, x)
    assert torch.equal(cross, torch.cat([conds["description"][0], conds["self_wav"][0]], dim=1))

    cond = torch.randn(2, 6, 4)
    out, cross = ConditionFuser({"sum": ["description"]})(x, {"description": (cond, torch.ones(2, 6))})
    assert cross is None and torch.equal(out, x + cond)

    short = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    out, _ = ConditionFuser({"input_interpolate": ["description"]})(x, {"description": (short, torch.ones(2, 3))})
    # Nearest interpolation of 3 steps onto 6: each step twice.
    assert torch.equal(out - x, short.repeat_interleave(2, dim=1))


def test_fuser_cross_attention_pos_emb():
    cond = torch.zeros(1, 3, 4)
    fuser = ConditionFuser({"cross": ["description"]}, cross_attention_pos_emb=True,
                           cross_attention_pos_emb_scale=2.0)
    _, cross = fuser(torch.zeros(1, 1, 4), {"description": (cond, torch.ones(1, 3))})
    # dim 4: half 2, periods 10000 ** (0 / 1) = 1 and 10000 ** (1 / 1) = 10000; [cos, cos, sin, sin].
    t = torch.arange(3, dtype=torch.float32)
    expected = torch.stack([torch.cos(t), torch.cos(t / 10000), torch.sin(t), torch.sin(t / 10000)], dim=-1)
    assert torch.allclose(cross[0], 2.0 * expected)


def test_fuser_errors():
    with pytest.raises(ValueError, match=r"Unknown fusing methods \['concat'\]"):
        ConditionFuser({"concat": ["description"]})
    with pytest.raises(ValueError, match="'description' is given two fusing methods"):
        ConditionFuser({"cross": ["description"], "prepend": ["description"]})
    fuser = ConditionFuser({"cross": ["description"]})
    with pytest.raises(ValueError, match=r"Conditions \['self_wav'\] have no fusing method"):
        fuser(torch.zeros(2, 6, 4), conditions())
    with pytest.raises(ValueError, match=r"fused by 'sum' and must have the input's shape \[2, 6, 4\]"):
        ConditionFuser({"sum": ["description"]})(torch.zeros(2, 6, 4), {"description": conditions()["description"]})


def test_attribute_dropout_accepts_config_mappings():
    from omegaconf import OmegaConf
    module = AttributeDropout(OmegaConf.create({"text": {}, "wav": {"self_wav": 1.0}}))
    assert module.p == {"text": {}, "wav": {"self_wav": 1.0}}
