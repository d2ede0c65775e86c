"""AudioGen against the official goldens (tiny `facebook/audiogen-medium`, T5 `t5-large`), and its defaults."""
import pytest
import torch

import audiocraft.models as models
from audiocraft.models import AudioGen, MusicGen
from audiocraft.modules.conditioners import ConditioningAttributes
from audiocraft.utils.cancel import CancelToken
from tests.conftest import load_golden
from tests.models._golden import check_generation, continuation_of, run_golden, texts

AUDIOGEN = "facebook/audiogen-medium"
ATOL_AUDIO = 1e-4
TEXTS = ["dog barking in the rain", "a door slams"]


@pytest.fixture(scope="module")
def audiogen():
    return AudioGen.get_pretrained(AUDIOGEN, device="cpu")


# ---- loading and defaults --------------------------------------------------------------------------------
def test_defaults(audiogen):
    fresh = AudioGen.get_pretrained(AUDIOGEN, device="cpu")
    assert (fresh.sample_rate, fresh.frame_rate, fresh.audio_channels) == (16000, 50, 1)
    assert fresh.max_duration == 10 and fresh.duration == 5 and fresh.extend_stride == 2
    assert fresh.generation_params == {"use_sampling": True, "temp": 1.0, "top_k": 250, "top_p": 0.0,
                                       "cfg_coef": 3.0, "two_step_cfg": False}
    assert fresh.compression_model.num_codebooks == fresh.lm.num_codebooks == 4
    fresh.set_generation_params()
    assert fresh.duration == 10 and fresh.extend_stride == 2  # set_generation_params' own default is 10 s
    with pytest.raises(ValueError, match=r"extend_stride must be < max_duration \(10.0 s\), got 10"):
        fresh.set_generation_params(extend_stride=10)
    assert not hasattr(fresh, "generate_with_chroma")


def test_debug_model():
    model = AudioGen.get_pretrained("debug", device="cpu")
    assert model.sample_rate == 16000 and model.max_duration == 10 and model.duration == 5
    model.set_generation_params(duration=0.2)
    wav = model.generate(["a", None])
    assert wav.shape == (2, 1, int(0.2 * model.frame_rate) * model.sample_rate // model.frame_rate)


def test_facade_picked_from_the_checkpoint():
    assert models.pretrained.facade_for(AUDIOGEN) is AudioGen
    assert models.pretrained.facade_for("facebook/musicgen-stereo-small") is MusicGen
    assert models.pretrained.facade_for("debug") is MusicGen
    model = models.get_pretrained(AUDIOGEN, device="cpu")
    assert isinstance(model, AudioGen)


def test_wrong_facade_is_a_clear_error():
    with pytest.raises(ValueError, match="is an AudioGen checkpoint.*AudioGen.get_pretrained"):
        MusicGen.get_pretrained(AUDIOGEN, device="cpu")
    with pytest.raises(ValueError, match="AudioGen does not support waveform conditioning"):
        AudioGen.get_pretrained("facebook/musicgen-melody", device="cpu")
    for facade in (MusicGen, AudioGen):  # a MAGNeT LM is not decoded left to right
        with pytest.raises(ValueError, match=f"is a MAGNeT checkpoint.*which {facade.__name__} cannot generate "
                                             "with: load it with MAGNeT.get_pretrained"):
            facade.get_pretrained("facebook/magnet-small-10secs", device="cpu")


# ---- components, golden-exact ------------------------------------------------------------------------
def test_compression_golden(audiogen):
    g = load_golden("audiogen_compression")
    codes, scale = audiogen.compression_model.encode(g["wav"])
    assert scale is None and torch.equal(codes, g["codes"])
    assert (audiogen.compression_model.decode(g["codes"]) - g["decoded"]).abs().max() < ATOL_AUDIO


def test_t5_large_conditioner(audiogen):
    g = load_golden("audiogen_t5_conditioner")
    cond = audiogen.lm.condition_provider.conditioners["description"]
    assert cond.name == "t5-large" and cond.dim == 1024 and cond.output_proj.in_features == 1024
    tokens = cond.tokenize(g["meta"]["texts"])
    assert torch.equal(tokens["input_ids"], g["input_ids"])
    assert torch.equal(tokens["attention_mask"], g["attention_mask"])
    with torch.no_grad():
        embeds, mask = cond(tokens)
    assert (embeds - g["embeds"]).abs().max() < 1e-4
    assert torch.equal(mask, g["mask"])


def test_lm_forward_golden(audiogen):
    g = load_golden("audiogen_lm_forward")
    with torch.no_grad():
        out = audiogen.lm.compute_predictions(g["codes"], [ConditioningAttributes(text={"description": t})
                                                           for t in g["meta"]["texts"]])
    assert torch.equal(out.mask, g["logits_mask"])
    valid = g["logits_mask"][..., None].expand_as(out.logits)
    assert (out.logits[valid] - g["logits"][valid]).abs().max() < 1e-4


# ---- generation, golden-exact --------------------------------------------------------------------------
def test_generate_greedy(audiogen):
    g = load_golden("audiogen_generate_greedy")
    calls = []
    audiogen.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    try:
        audio, tokens = run_golden(audiogen, g, lambda m: m.generate(texts(g), return_tokens=True))
    finally:
        audiogen.set_custom_progress_callback(None)
    assert torch.equal(tokens, g["tokens"])
    assert audio.shape == g["audio"].shape == (2, 1, 16000)
    assert (audio - g["audio"]).abs().max() < ATOL_AUDIO
    assert calls == [(i, 53) for i in range(1, 54)]  # 50 frames + 3 steps of codebook delay
    assert torch.equal(audiogen.generate_audio(tokens), audio)
    assert torch.equal(audiogen.generate(texts(g)), audio)  # return_tokens=False: the audio alone


@pytest.mark.parametrize("name", ["audiogen_generate_sampling_topk", "audiogen_generate_extend"])
def test_generate_sampling_and_extend(audiogen, name):
    """Top-k sampling seeded right before the call; extended generation in 1 s windows advancing by 0.5 s."""
    g = load_golden(name)
    check_generation(g, *run_golden(audiogen, g, lambda m: m.generate(texts(g), return_tokens=True)))
    if name.endswith("extend"):  # the same through a long-form schedule with one description
        _, same = run_golden(audiogen, g, lambda m: m.generate_long([(0.0, texts(g))], return_tokens=True))
        assert torch.equal(same, g["tokens"])


def test_generate_continuation(audiogen):
    g = load_golden("audiogen_generate_continuation")
    prompt, continuation = g["prompt_wav"], continuation_of(audiogen, g)
    check_generation(g, *continuation(prompt))
    # a stereo prompt is downmixed by the mean of its channels
    assert torch.equal(continuation(torch.cat([prompt + 0.1, prompt - 0.1], dim=1))[1][..., :20], g["prompt_tokens"])


def test_generate_unconditional(audiogen):
    audiogen.set_generation_params(use_sampling=False, duration=0.3)
    audio, tokens = audiogen.generate_unconditional(2, return_tokens=True)
    assert tokens.shape == (2, 4, 15) and audio.shape == (2, 1, 4800)
    assert torch.equal(tokens[0], tokens[1])  # greedy, no text: both items alike


# ---- this package's additions ------------------------------------------------------------------------------
def test_seeds_stream_cancel(audiogen):
    audiogen.set_generation_params(duration=0.4)
    _, a = audiogen.generate(TEXTS, return_tokens=True, seed=[3, 9])
    _, b = audiogen.generate(TEXTS[1:], return_tokens=True, seed=[9])
    assert torch.equal(a[1], b[0])
    audio, _ = audiogen.generate(TEXTS, return_tokens=True, seed=5)
    streamed = torch.cat(list(audiogen.generate_stream(TEXTS, seed=5, chunk_seconds=0.1)), dim=-1)
    assert streamed.shape == audio.shape and (streamed - audio).abs().max() < 1e-4
    token = CancelToken()
    audiogen.set_custom_progress_callback(lambda done, total: token.cancel() if done == 5 else None)
    try:
        _, partial = audiogen.generate(TEXTS, return_tokens=True, cancel=token)
    finally:
        audiogen.set_custom_progress_callback(None)
    assert 0 < partial.shape[-1] < 20


def test_no_melody(audiogen):
    with pytest.raises(ValueError, match="no melody"):
        next(audiogen.generate_stream(["x"], melody_wavs=torch.zeros(1, 1, 1600), melody_sample_rate=16000))
    with pytest.raises(ValueError, match="no melody"):
        audiogen.generate_long([(0.0, "x")], melody_schedule=[(0.0, torch.zeros(1, 100))], melody_sample_rate=16000)


def test_bf16_weights():
    g = load_golden("audiogen_lm_forward")
    model = AudioGen.get_pretrained(AUDIOGEN, device="cpu", dtype=torch.bfloat16)
    with torch.no_grad():
        out = model.lm.compute_predictions(g["codes"], [ConditioningAttributes(text={"description": t})
                                                        for t in texts(g)])
    valid = g["logits_mask"][..., None].expand_as(out.logits)
    assert (out.logits[valid] - g["logits"][valid]).abs().max() < 0.05
    model.set_generation_params(duration=0.1)
    assert model.generate(["rain"]).shape == (1, 1, 1600)
