"""ConditioningProvider: collation, order, validation, and the melody model's conditions vs lm_forward_melody."""
import pytest
import torch

from audiocraft.modules.conditioners import (
    ChromaStemConditioner, ConditioningAttributes, ConditioningProvider, LUTConditioner, T5Conditioner, WavCondition,
)

from ._conditioner_helpers import MELODY, conditioner_state, fake_demucs  # noqa: F401 (fixture)


def melody_provider() -> ConditioningProvider:
    """The melody checkpoint's provider (same conditioner order as its config: self_wav, description)."""
    provider = ConditioningProvider({
        "self_wav": ChromaStemConditioner(output_dim=64, sample_rate=32000, n_chroma=12, radix2_exp=14,
                                          argmax=True, duration=30, match_len_on_eval=True),
        "description": T5Conditioner("t5-base", output_dim=64, finetune=False, device="cpu"),
    })
    for name in ("self_wav", "description"):
        provider.conditioners[name].load_state_dict(conditioner_state(MELODY, name))
    return provider.eval()


def lut_provider() -> ConditioningProvider:
    torch.manual_seed(0)
    return ConditioningProvider({
        "self_wav": ChromaStemConditioner(output_dim=8, sample_rate=8000, n_chroma=12, radix2_exp=9, duration=1,
                                          stem_separation=False),
        "genre": LUTConditioner(n_bins=16, dim=4, output_dim=8, tokenizer="whitespace"),
        "description": LUTConditioner(n_bins=16, dim=4, output_dim=8, tokenizer="whitespace"),
    })


def wav_cond(length: int, value: float = 1.0, channels: int = 1, sr: int = 8000) -> WavCondition:
    return WavCondition(torch.full((1, channels, length), value), torch.tensor([length]), [sr], [f"{length}.wav"],
                        [0.5])


def test_properties():
    provider = lut_provider()
    assert provider.text_conditions == ["genre", "description"]
    assert provider.wav_conditions == ["self_wav"]
    assert provider.has_wav_condition and provider.joint_embed_conditions == []
    assert not ConditioningProvider({"description": LUTConditioner(4, 2, 2, "whitespace")}).has_wav_condition


def test_tokenize_order_and_wav_collation():
    provider = lut_provider()
    samples = [ConditioningAttributes(text={"description": "rock", "genre": "pop"}, wav={"self_wav": wav_cond(300)}),
               ConditioningAttributes(text={"description": None}, wav={"self_wav": wav_cond(500, 2.0, channels=2)})]
    tokenized = provider.tokenize(samples)
    assert list(tokenized) == ["genre", "description", "self_wav"]  # text conditioners first, then wav
    wav = tokenized["self_wav"]
    assert wav.wav.shape == (2, 1, 500)
    assert torch.equal(wav.wav[0, 0, :300], torch.ones(300)) and wav.wav[0, 0, 300:].abs().sum() == 0
    assert torch.equal(wav.wav[1, 0], torch.full((500,), 2.0))  # stereo averaged to mono
    assert wav.length.tolist() == [300, 500] and wav.sample_rate == [8000, 8000]
    assert wav.path == ["300.wav", "500.wav"] and wav.seek_time == [0.5, 0.5]
    # Missing text attribute -> None (masked out).
    genre_tokens, genre_mask = tokenized["genre"]
    assert genre_mask[1].sum() == 0
    out = provider(tokenized)
    assert list(out) == ["genre", "description", "self_wav"]
    assert out["self_wav"][0].shape == (2, provider.conditioners["self_wav"].chroma_len, 8)


def test_missing_wav_attribute_is_null():
    provider = lut_provider()
    tokenized = provider.tokenize([ConditioningAttributes(text={"description": "rock"})])
    assert tokenized["self_wav"].wav.shape == (1, 1, 1) and tokenized["self_wav"].length.tolist() == [0]


def test_unknown_attributes_raise_but_null_placeholders_are_ignored():
    provider = ConditioningProvider({"description": LUTConditioner(16, 4, 8, "whitespace")})
    with pytest.raises(ValueError, match=r"Unexpected conditioning attributes: text \['genre'\]"):
        provider.tokenize([ConditioningAttributes(text={"description": "a", "genre": "rock"})])
    with pytest.raises(ValueError, match=r"wav \['self_wav'\]"):
        provider.tokenize([ConditioningAttributes(text={"description": "a"}, wav={"self_wav": wav_cond(100)})])
    # MusicGen adds a null 'self_wav' to every request, also for text-only models: ignored.
    null = WavCondition(torch.zeros(1, 1, 1), torch.tensor([0]), [32000], [None])
    tokenized = provider.tokenize([ConditioningAttributes(text={"description": "a", "genre": None},
                                                          wav={"self_wav": null})])
    assert list(tokenized) == ["description"]
    with pytest.raises(ValueError, match=r"Unexpected conditioning attributes \['genre'\]"):
        provider({"genre": None})


def test_bad_inputs():
    provider = lut_provider()
    with pytest.raises(TypeError, match="inputs must be a list of ConditioningAttributes, got ConditioningAttributes"):
        provider.tokenize(ConditioningAttributes())
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a ConditioningAttributes, got dict"):
        provider.tokenize([ConditioningAttributes(), {"text": {}}])
    with pytest.raises(ValueError, match="at least one ConditioningAttributes"):
        provider.tokenize([])
    bad = WavCondition(torch.zeros(2, 1, 10), torch.tensor([10, 10]), [8000, 8000])
    with pytest.raises(ValueError, match=r"inputs\[0\]\.wav\['self_wav'\]\.wav must be one item \[1, C, T\], "
                                         r"got \[2, 1, 10\]"):
        provider.tokenize([ConditioningAttributes(wav={"self_wav": bad})])
    with pytest.raises(TypeError, match=r"inputs\[0\]\.wav\['self_wav'\] must be a WavCondition, got Tensor"):
        provider.tokenize([ConditioningAttributes(wav={"self_wav": torch.zeros(1, 1, 10)})])
    with pytest.raises(TypeError, match=r"conditioners\['x'\] must be a BaseConditioner, got Linear"):
        ConditioningProvider({"x": torch.nn.Linear(2, 2)})


@pytest.mark.usefixtures("fake_demucs")
def test_melody_conditions_match_lm_forward_melody(golden):
    g = golden("lm_forward_melody")
    provider = melody_provider()
    attrs = [ConditioningAttributes(text={"description": g["meta"]["texts"][0]},
                                    wav={"self_wav": WavCondition(g["melody_wav"][None], torch.tensor([32000]),
                                                                  [g["meta"]["melody_sr"]], [None])})]
    tokenized = provider.tokenize(attrs)
    assert list(tokenized) == ["description", "self_wav"]
    with torch.no_grad():
        out = provider(tokenized)
    assert list(out) == ["description", "self_wav"]  # the fuser prepends in this order -> [self_wav, description]
    for name in ("self_wav", "description"):
        embeds, mask = out[name]
        assert (embeds - g[f"cond_{name}_embeds"]).abs().max() <= 1e-5, name
        assert mask.dtype == g[f"cond_{name}_mask"].dtype and torch.equal(mask, g[f"cond_{name}_mask"]), name


def test_melody_text_only_null_melody(golden):
    # generate() without melody: a [1, 1, 1] zero wav per sample -> one-hot bin 0 on all 235 frames.
    provider = melody_provider()
    null = WavCondition(torch.zeros(1, 1, 1), torch.tensor([0]), [32000], [None])
    attrs = [ConditioningAttributes(text={"description": "a"}, wav={"self_wav": null}) for _ in range(2)]
    with torch.no_grad():
        embeds, mask = provider(provider.tokenize(attrs))["self_wav"]
    proj = provider.conditioners["self_wav"].output_proj
    assert torch.allclose(embeds, (proj.weight[:, 0] + proj.bias).expand(2, 235, 64))
    assert torch.equal(mask, torch.ones(2, 235))
