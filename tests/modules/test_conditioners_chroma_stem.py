"""ChromaStemConditioner against the official goldens (chroma.pt), with the fake demucs of tests/fakes."""
import pytest
import torch

from audiocraft.modules.conditioners import ChromaStemConditioner, WavCondition, nullify_wav

from ._conditioner_helpers import FAKES_DIR, MELODY, conditioner_state, fake_demucs, no_demucs  # noqa: F401


@pytest.fixture(scope="module")
def chroma_golden(golden):
    return golden("chroma")


def make_conditioner(**kwargs) -> ChromaStemConditioner:
    """The melody checkpoint's conditioner as MusicGen.get_pretrained sets it up (match_len_on_eval=True)."""
    args = dict(output_dim=64, sample_rate=32000, n_chroma=12, radix2_exp=14, argmax=True, duration=30,
                match_len_on_eval=True)
    args.update(kwargs)
    conditioner = ChromaStemConditioner(**args)
    conditioner.load_state_dict(conditioner_state(MELODY, "self_wav"))
    return conditioner.eval()


def batch(wav: torch.Tensor, sample_rate: int = 32000) -> WavCondition:
    B = wav.shape[0]
    return WavCondition(wav, torch.full((B,), wav.shape[-1]), [sample_rate] * B, [None] * B)


def test_structure_and_chroma_len():
    conditioner = make_conditioner()
    assert list(conditioner.state_dict()) == ["output_proj.weight", "output_proj.bias", "chroma.spec.window"]
    assert conditioner.chroma_len == conditioner.get_chroma_len() == 235
    assert conditioner.chroma.argmax and conditioner.chroma.winhop == 4096
    assert not conditioner._use_masking and conditioner.stem_separation
    assert make_conditioner(duration=1.0).chroma_len == 8
    assert ChromaStemConditioner(8, 32000, 12, 14, duration=30, match_len_on_eval=False)._use_masking


@pytest.mark.usefixtures("fake_demucs")
def test_stemmed_wav_through_fake_demucs(chroma_golden):
    import demucs
    assert demucs.__file__.startswith(str(FAKES_DIR))
    stemmed = make_conditioner()._get_stemmed_wav(chroma_golden["melody_wav"], 32000)
    assert stemmed.shape == (2, 1, 32000)
    assert (stemmed - chroma_golden["stemmed_wav"]).abs().max() <= 1e-5


@pytest.mark.usefixtures("fake_demucs")
def test_chroma_and_embeds_match_golden(chroma_golden):
    conditioner = make_conditioner()
    cond = conditioner.tokenize(batch(chroma_golden["melody_wav"]))
    chroma = conditioner._get_wav_embedding(cond)
    assert torch.equal(chroma, chroma_golden["chroma_conditioner"])  # 8 frames tiled to 235
    with torch.no_grad():
        embeds, mask = conditioner(cond)
    assert (embeds - chroma_golden["self_wav_embeds"]).abs().max() <= 1e-4
    assert mask.dtype == torch.float32 and torch.equal(mask, chroma_golden["self_wav_mask"])


def test_null_melody_is_one_hot_bin_zero(chroma_golden):
    # No separation is attempted for a null melody: works without demucs and without warning.
    conditioner = make_conditioner()
    null = nullify_wav(batch(torch.randn(1, 1, 1000)))
    chroma = conditioner._get_wav_embedding(null)
    assert torch.equal(chroma, chroma_golden["null_wav_chroma"])
    assert conditioner._separator is None


@pytest.mark.usefixtures("no_demucs")
def test_missing_demucs_warns_once_and_uses_the_mix(chroma_golden):
    conditioner = make_conditioner()
    wav = chroma_golden["melody_wav"]
    with pytest.warns(UserWarning, match="demucs is not installed"):
        first = conditioner._get_wav_embedding(batch(wav))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = conditioner._get_wav_embedding(batch(wav))
    assert torch.equal(first, second)
    # Full mix at the model rate: the chroma of the melody itself.
    direct = conditioner.chroma(wav)
    assert torch.equal(first, direct.repeat(1, 30, 1)[:, :235])


@pytest.mark.usefixtures("fake_demucs")
def test_stem_separation_off_skips_demucs(chroma_golden):
    conditioner = make_conditioner(stem_separation=False)
    wav = chroma_golden["melody_wav"]
    assert torch.equal(conditioner._get_stemmed_wav(wav, 32000), wav)
    assert conditioner._separator is None  # never loaded
    conditioner.stem_separation = True
    assert (conditioner._get_stemmed_wav(wav, 32000) - chroma_golden["stemmed_wav"]).abs().max() <= 1e-5


@pytest.mark.usefixtures("fake_demucs")
def test_other_sample_rate_is_resampled():
    conditioner = make_conditioner(stem_separation=False)
    torch.manual_seed(0)
    wav = torch.randn(1, 1, 16000)
    out = conditioner._get_stemmed_wav(wav, 16000)
    assert out.shape == (1, 1, 32000)


def test_truncation_and_masking():
    conditioner = make_conditioner(duration=0.5)  # chroma_len = 1 + 16384 // 4096 = 5
    assert conditioner.chroma_len == 5
    conditioner.stem_separation = False
    torch.manual_seed(0)
    wav = torch.randn(2, 1, 64000)  # 16 frames -> truncated to 5
    assert conditioner._get_wav_embedding(batch(wav)).shape == (2, 5, 12)
    masked = make_conditioner(match_len_on_eval=False, stem_separation=False)
    assert masked._use_masking
    lengths = torch.tensor([64000, 8192])
    embeds, mask = masked(WavCondition(wav, lengths, [32000, 32000], [None, None]))
    assert embeds.shape == (2, 16, 64)
    # valid frames = length / hop: 15.6 -> 16 frames, 2 -> 2 frames.
    assert mask.tolist() == [[1.0] * 16, [1.0] * 2 + [0.0] * 14]
    assert embeds[1, 2:].abs().sum() == 0


def test_bad_inputs():
    conditioner = make_conditioner(stem_separation=False)
    wav = torch.zeros(2, 1, 100)
    with pytest.raises(ValueError, match=r"share one sample rate, got \[32000, 16000\]"):
        conditioner._get_wav_embedding(WavCondition(wav, torch.tensor([100, 100]), [32000, 16000]))
    with pytest.raises(TypeError, match="expects a WavCondition, got Tensor"):
        conditioner.tokenize(wav)
    with pytest.raises(NotImplementedError, match="eval_wavs"):
        make_conditioner(eval_wavs="eval_folder")
    with pytest.warns(UserWarning, match="ignores cache_path"):
        make_conditioner(cache_path="cache")
    with pytest.raises(ValueError, match="duration must be a positive number of seconds, got 0"):
        make_conditioner(duration=0)
