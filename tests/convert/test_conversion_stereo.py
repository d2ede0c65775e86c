"""Stereo MusicGen conversion Audiocraft <-> transformers (decoder ``audio_channels=2``), on the tiny official-format
stereo checkpoints: every weight lands, transformers' greedy generation and teacher-forced logits equal ours /
the official goldens, and converting back is bit-identical."""
import pytest
import torch

from audiocraft.convert import from_transformers, to_transformers
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider

from tests.conftest import HF_CACHE_DIR, load_golden

transformers = pytest.importorskip("transformers")

STEREO = "facebook/musicgen-stereo-small"
STEREO_MELODY = "facebook/musicgen-stereo-melody"
DELAYS = [0, 0, 1, 1, 2, 2, 3, 3]


def _package(repo: str, filename: str) -> dict:
    folder = HF_CACHE_DIR / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / (folder / "refs" / "main").read_text().strip()
    return torch.load(snapshot / filename, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def stereo_hf(tmp_path_factory):
    return to_transformers(STEREO, tmp_path_factory.mktemp("conv") / "stereo-hf")


@pytest.fixture(scope="module")
def stereo_model(stereo_hf):
    model, info = transformers.MusicgenForConditionalGeneration.from_pretrained(stereo_hf, output_loading_info=True)
    return model.eval(), info


@pytest.fixture(scope="module")
def ours():
    from audiocraft.models import MusicGen
    return MusicGen.get_pretrained(STEREO, device="cpu")


def test_stereo_loads_in_transformers_with_every_weight(stereo_hf, stereo_model):
    model, info = stereo_model
    # output_loading_info holds lists (transformers 4.x) or sets (5.x)
    assert {key: sorted(value) for key, value in info.items()} == {"missing_keys": [], "unexpected_keys": [],
                                                                   "mismatched_keys": [], "error_msgs": []}
    dec, audio = model.config.decoder, model.config.audio_encoder
    assert (dec.audio_channels, dec.num_codebooks, dec.vocab_size) == (2, 8, 256)
    assert (audio.audio_channels, audio.num_quantizers) == (1, 4)  # the mono EnCodec, once per channel
    processor = transformers.AutoProcessor.from_pretrained(stereo_hf)
    assert processor.feature_extractor.feature_size == 2


def test_stereo_teacher_forced_logits_match_golden(stereo_model):
    model, _ = stereo_model
    golden = load_golden("stereo_lm_forward")
    tokenizer = transformers.T5Tokenizer.from_pretrained(model.name_or_path)
    inputs = tokenizer(golden["meta"]["texts"], return_tensors="pt", padding=True)
    sequence = golden["pattern_sequence"]  # [B, 8, S], left / right of level k delayed by k
    B, K, S = sequence.shape
    with torch.no_grad():
        hidden = model.text_encoder(**inputs).last_hidden_state
        embeds = model.enc_to_dec_proj(hidden) * inputs["attention_mask"][..., None]
        out = model.decoder(input_ids=sequence.reshape(B * K, S), encoder_hidden_states=embeds).logits
    logits = out.reshape(B, K, S, -1).permute(0, 3, 1, 2)  # [B, card, K, S]
    pattern = DelayedPatternProvider(n_q=K, delays=DELAYS).get_pattern(golden["codes"].shape[-1])
    logits, _, _ = pattern.revert_pattern_logits(logits, float("nan"), keep_only_valid_steps=True)
    logits = logits.permute(0, 2, 3, 1)
    valid = golden["logits_mask"]
    assert (logits - golden["logits"])[valid].abs().max() < 1e-4


def test_stereo_greedy_generation_matches_ours(stereo_model, ours):
    """transformers decodes the left codes (``[:, ::2]``) and the right ones (``[:, 1::2]``) with its EnCodec and
    stacks the channels: the same tokens and the same stereo audio as ours."""
    model, _ = stereo_model
    text = "80s pop track with bassy drums and synth"
    ours.set_generation_params(use_sampling=False, duration=0.4, cfg_coef=3.0)
    audio, tokens = ours.generate([text], return_tokens=True)
    tokenizer = transformers.T5Tokenizer.from_pretrained(model.name_or_path)
    caught = []
    decode = model.audio_encoder.decode

    def catching_decode(audio_codes, *args, **kwargs):
        caught.append(audio_codes[0])
        return decode(audio_codes, *args, **kwargs)

    model.audio_encoder.decode = catching_decode
    try:
        with torch.no_grad():
            hf_audio = model.generate(**tokenizer([text], return_tensors="pt"), do_sample=False, guidance_scale=3.0,
                                      max_new_tokens=tokens.shape[-1] + 3)
    finally:
        model.audio_encoder.decode = decode
    left, right = caught
    assert torch.equal(left, tokens[:, 0::2]) and torch.equal(right, tokens[:, 1::2])
    assert hf_audio.shape == audio.shape == (1, 2, 0.4 * 32000)
    torch.testing.assert_close(hf_audio, audio, atol=1e-4, rtol=0)


@pytest.mark.parametrize("repo", [STEREO, STEREO_MELODY])
def test_stereo_round_trip_is_identical(repo, stereo_hf, tmp_path):
    hf = stereo_hf if repo == STEREO else to_transformers(repo, tmp_path / "hf")
    if repo == STEREO_MELODY:
        model = transformers.MusicgenMelodyForConditionalGeneration.from_pretrained(hf)
        assert model.config.decoder.audio_channels == 2 and model.config.decoder.num_codebooks == 8
    back = from_transformers(hf, tmp_path / "back")
    with_template = from_transformers(hf, tmp_path / "templated", template=repo)
    for filename in ("state_dict.bin", "compression_state_dict.bin"):
        original = _package(repo, filename)
        converted = torch.load(back / filename, map_location="cpu", weights_only=True)["best_state"]
        assert set(converted) == set(original["best_state"])
        assert all(torch.equal(converted[k], v) for k, v in original["best_state"].items())
        templated = torch.load(with_template / filename, map_location="cpu", weights_only=True)
        assert templated["xp.cfg"] == original["xp.cfg"]


def test_stereo_round_trip_generates_the_official_tokens(stereo_hf, tmp_path):
    from audiocraft.models import MusicGen
    model = MusicGen.get_pretrained(str(from_transformers(stereo_hf, tmp_path / "back")), device="cpu")
    assert model.audio_channels == 2 and model.compression_model.num_codebooks == 8
    golden = load_golden("stereo_generate_greedy")
    model.set_generation_params(**golden["meta"]["set_generation_params"])
    _, tokens = model.generate(golden["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, golden["tokens"])


def test_stereo_with_other_interleaving_is_refused(tmp_path):
    from audiocraft.convert import ConversionError
    folder = tmp_path / "per-timestep"
    folder.mkdir()
    pkg = _package(STEREO, "state_dict.bin")
    pkg["xp.cfg"] = pkg["xp.cfg"].replace("per_timestep: false", "per_timestep: true")
    torch.save(pkg, folder / "state_dict.bin")
    torch.save(_package(STEREO, "compression_state_dict.bin"), folder / "compression_state_dict.bin")
    with pytest.raises(ConversionError, match="interleave_stereo_codebooks.per_timestep=True cannot be expressed"):
        to_transformers(folder, tmp_path / "out")
