"""Stereo MusicGen against the official goldens (tiny `facebook/musicgen-stereo-small` / `-stereo-melody`)."""
import pytest
import torch

from audiocraft.models import InterleaveStereoCompressionModel, MusicGen
from audiocraft.models.loaders import load_compression_model
from audiocraft.modules.conditioners import ConditioningAttributes
from audiocraft.utils.cancel import CancelToken
from audiocraft.utils.tokens_io import save_tokens
from tests.conftest import load_golden
from tests.models._golden import check_generation, continuation_of, run_golden, texts

STEREO = "facebook/musicgen-stereo-small"
STEREO_MELODY = "facebook/musicgen-stereo-melody"
ATOL_AUDIO = 1e-4
TEXTS = ["80s pop track with bassy drums and synth", "A calm piano ballad, 90 BPM!"]


@pytest.fixture(scope="module")
def stereo():
    return MusicGen.get_pretrained(STEREO, device="cpu")


@pytest.fixture(scope="module")
def stereo_melody(fake_demucs_module):
    return MusicGen.get_pretrained(STEREO_MELODY, device="cpu")


# ---- the model and its codec -------------------------------------------------------------------------
def test_attributes(stereo):
    g = load_golden("stereo_generate_greedy")
    assert stereo.audio_channels == 2 and stereo.sample_rate == 32000 and stereo.frame_rate == 50
    assert stereo.max_duration == 30 and stereo.duration == 15 and stereo.extend_stride == 18
    assert stereo.generation_params == {"use_sampling": True, "temp": 1.0, "top_k": 250, "top_p": 0.0,
                                        "cfg_coef": 3.0, "two_step_cfg": False}
    cm = stereo.compression_model
    assert isinstance(cm, InterleaveStereoCompressionModel)
    assert cm.per_timestep is False and cm.num_virtual_steps == 1
    assert (cm.channels, cm.num_codebooks, cm.total_codebooks, cm.frame_rate) == (2, 8, 4, 50)
    assert cm.cardinality == stereo.lm.card == 256 and stereo.lm.num_codebooks == 8
    assert cm.model.channels == 1 and cm.model.num_codebooks == 4
    assert g["tokens"].shape[1] == 8
    # the loader still returns the mono codec, without any wrapper prefix in its state dict
    mono = load_compression_model(STEREO)
    assert mono.channels == 1 and mono.num_codebooks == 4
    assert set(mono.state_dict()) == set(cm.model.state_dict())


def test_compression_golden(stereo):
    g = load_golden("stereo_compression")
    cm = stereo.compression_model
    codes, scale = cm.encode(g["wav"])
    assert scale is None
    assert torch.equal(codes, g["codes"])
    assert torch.equal(codes[:, 0::2], g["codes_left"]) and torch.equal(codes[:, 1::2], g["codes_right"])
    left, right = cm.get_left_right_codes(codes)
    assert torch.equal(left, g["codes_left"]) and torch.equal(right, g["codes_right"])
    decoded = cm.decode(g["codes"], None)
    assert decoded.shape == g["decoded"].shape == (1, 2, g["wav"].shape[-1])
    assert (decoded - g["decoded"]).abs().max() < ATOL_AUDIO
    # each channel is the mono codec's own decoding of its codes
    mono = load_compression_model(STEREO)
    assert torch.equal(mono.encode(g["wav"][:, :1])[0], g["codes_left"])
    assert (mono.decode(g["codes_right"]) - decoded[:, 1:]).abs().max() < 1e-5


def test_compression_streaming_decode_equals_one_shot(stereo):
    g = load_golden("stereo_compression")
    cm = stereo.compression_model
    whole = cm.decode(g["codes"])
    with cm.streaming():
        pieces = [cm.decode(g["codes"][..., i:i + 7]) for i in range(0, g["codes"].shape[-1], 7)]
        pieces.append(cm.flush_decoder())
    assert all(p.shape[1] == 2 for p in pieces)
    assert (torch.cat(pieces, dim=-1) - whole).abs().max() < 1e-5


def test_per_timestep_interleaving(stereo):
    g = load_golden("stereo_compression")
    mono = stereo.compression_model.model
    wrapper = InterleaveStereoCompressionModel(mono, per_timestep=True)
    assert wrapper.num_codebooks == 4 and wrapper.frame_rate == 100 and wrapper.num_virtual_steps == 2
    codes, _ = wrapper.encode(g["wav"])
    assert codes.shape == (1, 4, 2 * g["codes_left"].shape[-1])
    assert torch.equal(codes[..., 0::2], g["codes_left"]) and torch.equal(codes[..., 1::2], g["codes_right"])
    assert (wrapper.decode(codes) - g["decoded"]).abs().max() < ATOL_AUDIO
    with pytest.raises(ValueError, match="needs an even number"):
        wrapper.decode(codes[..., :-1])


def test_compression_bad_input(stereo):
    cm = stereo.compression_model
    with pytest.raises(ValueError, match=r"x has 1 channel\(s\).*expects 2"):
        cm.encode(torch.zeros(1, 1, 640))
    with pytest.raises(ValueError, match="needs exactly 8"):
        cm.decode(torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"values must be in \[0, 255\]"):
        cm.decode(torch.full((1, 8, 3), 256, dtype=torch.long))
    with pytest.raises(NotImplementedError, match="decode_latent"):
        cm.decode_latent(torch.zeros(1, 8, 3, dtype=torch.long))
    with pytest.raises(NotImplementedError, match="forward"):
        cm(torch.zeros(1, 2, 640))
    with pytest.raises(ValueError, match="must be mono"):
        InterleaveStereoCompressionModel(cm)


def test_lm_forward_golden(stereo):
    g = load_golden("stereo_lm_forward")
    with torch.no_grad():
        out = stereo.lm.compute_predictions(g["codes"], [ConditioningAttributes(text={"description": t})
                                                         for t in g["meta"]["texts"]])
    assert torch.equal(out.mask, g["logits_mask"])
    valid = g["logits_mask"][..., None].expand_as(out.logits)
    assert (out.logits[valid] - g["logits"][valid]).abs().max() < 1e-4
    assert out.logits[~valid].isnan().all()


# ---- the generate methods, golden-exact ---------------------------------------------------------------------
def test_generate_greedy(stereo):
    g = load_golden("stereo_generate_greedy")
    audio, tokens = run_golden(stereo, g, lambda m: m.generate(texts(g), return_tokens=True))
    assert torch.equal(tokens, g["tokens"])
    assert audio.shape == g["audio"].shape == (2, 2, 25600)
    assert (audio - g["audio"]).abs().max() < ATOL_AUDIO
    assert torch.equal(stereo.generate_audio(tokens), audio)


@pytest.mark.parametrize("name", ["stereo_generate_sampling_topk", "stereo_generate_unconditional"])
def test_generate_sampling_and_unconditional(stereo, name):
    g = load_golden(name)
    if name.endswith("unconditional"):
        check_generation(g, *run_golden(stereo, g, lambda m: m.generate_unconditional(2, return_tokens=True)))
    else:
        check_generation(g, *run_golden(stereo, g, lambda m: m.generate(texts(g), return_tokens=True)))


def test_generate_continuation_and_prompt_channels(stereo):
    g = load_golden("stereo_generate_continuation")
    prompt, continuation = g["prompt_wav"], continuation_of(stereo, g)
    check_generation(g, *continuation(prompt))
    # more than 2 channels: the first two are kept (Audiocraft's convert_audio)
    assert torch.equal(continuation(torch.cat([prompt, torch.randn_like(prompt[:, :1])], dim=1))[1], g["tokens"])
    # a mono prompt is duplicated to both channels
    _, from_mono = continuation(prompt[:, :1])
    assert torch.equal(from_mono, continuation(prompt[:, :1].expand(-1, 2, -1))[1])
    assert torch.equal(from_mono[:, 0::2, :20], from_mono[:, 1::2, :20])  # left and right prompt codes equal


def test_generate_with_chroma(stereo_melody):
    g = load_golden("stereo_melody_generate_with_chroma")
    melody, sr = g["melody_wav"], g["meta"]["melody_sr"]

    def with_chroma(wav):
        return run_golden(stereo_melody, g, lambda m: m.generate_with_chroma(texts(g), wav, sr, return_tokens=True))

    check_generation(g, *with_chroma(melody))
    # the chroma is that of the channels' mean: the mono mean as melody gives the same tokens, swapping the
    # channels changes nothing, the left channel alone does
    assert torch.equal(with_chroma(melody.mean(dim=1, keepdim=True))[1], g["tokens"])
    assert torch.equal(with_chroma(melody.flip(1))[1], g["tokens"])
    assert not torch.equal(with_chroma(melody[:, :1])[1], g["tokens"])


def test_stereo_melody_stream_and_long(stereo_melody):
    g = load_golden("stereo_melody_generate_with_chroma")
    stereo_melody.set_generation_params(**g["meta"]["set_generation_params"])
    melody, sr = g["melody_wav"], g["meta"]["melody_sr"]
    audio = stereo_melody.generate_with_chroma(g["meta"]["texts"], melody, sr)
    streamed = torch.cat(list(stereo_melody.generate_stream(g["meta"]["texts"], melody_wavs=melody,
                                                            melody_sample_rate=sr, chunk_seconds=0.2)), dim=-1)
    assert streamed.shape == audio.shape and (streamed - audio).abs().max() < 1e-4
    _, tokens = stereo_melody.generate_long([(0.0, g["meta"]["texts"])], melody_schedule=[(0.0, melody[0])],
                                            melody_sample_rate=sr, return_tokens=True)
    assert tokens.shape == g["tokens"].shape


# ---- this package's additions, in stereo -------------------------------------------------------------------
def test_stream_equals_generate(stereo):
    stereo.set_generation_params(use_sampling=False, duration=0.6)
    audio, tokens = stereo.generate(TEXTS, return_tokens=True)
    chunks = list(stereo.generate_stream(TEXTS, chunk_seconds=0.25))
    assert all(c.shape[:2] == (2, 2) for c in chunks)
    assert all(c.shape[-1] == 8000 for c in chunks[:-1])
    streamed = torch.cat(chunks, dim=-1)
    assert streamed.shape == audio.shape == (2, 2, 0.6 * 32000)
    assert (streamed - audio).abs().max() < 1e-4


def test_stream_continuation(stereo):
    g = load_golden("stereo_generate_continuation")
    stereo.set_generation_params(**g["meta"]["set_generation_params"])
    audio = stereo.generate_continuation(g["prompt_wav"], g["meta"]["prompt_sr"], g["meta"]["descriptions"])
    streamed = torch.cat(list(stereo.generate_stream(g["meta"]["descriptions"], prompt=g["prompt_wav"],
                                                     prompt_sample_rate=g["meta"]["prompt_sr"])), dim=-1)
    assert (streamed - audio).abs().max() < 1e-4


def test_seeds_and_cancel(stereo):
    stereo.set_generation_params(duration=0.3)
    _, a = stereo.generate(TEXTS, return_tokens=True, seed=[3, 4])
    _, b = stereo.generate([TEXTS[1]], return_tokens=True, seed=[4])
    assert torch.equal(a[1], b[0]) and a.shape[1] == 8
    token = CancelToken()

    def progress(done, total):
        if done == 6:
            token.cancel()

    stereo.set_custom_progress_callback(progress)
    try:
        audio, tokens = stereo.generate(TEXTS, return_tokens=True, cancel=token)
    finally:
        stereo.set_custom_progress_callback(None)
    assert 0 < tokens.shape[-1] < 15
    assert audio.shape == (2, 2, tokens.shape[-1] * 640)


def test_generate_extend_and_long_form(stereo):
    old = stereo.max_duration
    stereo.max_duration = 0.6
    try:
        stereo.set_generation_params(use_sampling=False, duration=1.0, extend_stride=0.3)
        audio, tokens = stereo.generate(TEXTS, return_tokens=True)
        assert tokens.shape == (2, 8, 50) and audio.shape == (2, 2, 32000)
        _, same = stereo.generate_long([(0.0, TEXTS)], return_tokens=True)
        assert torch.equal(same, tokens)
        schedule = [(0.0, TEXTS), (0.5, ["ambient drone", None])]
        plain, changed = stereo.generate_long(schedule, return_tokens=True, seed=2)
        faded, same_tokens = stereo.generate_long(schedule, return_tokens=True, seed=2, crossfade=0.1)
        assert torch.equal(changed, same_tokens) and faded.shape == plain.shape == (2, 2, 32000)
        assert not torch.equal(faded, plain)
    finally:
        stereo.max_duration = old


def test_tokens_file(stereo, tmp_path):
    stereo.set_generation_params(duration=0.2)
    audio, tokens = stereo.generate(TEXTS[:1], return_tokens=True, seed=1)
    path = save_tokens(tmp_path / "take.pt", tokens, sample_rate=stereo.sample_rate, frame_rate=stereo.frame_rate,
                       model=stereo.name)
    assert torch.equal(stereo.generate_audio(path), audio)
    with pytest.raises(ValueError, match="gen_tokens"):
        stereo.generate_audio(tokens[:, :4])  # a mono model's tokens


def test_text_only_model_has_no_melody(stereo):
    with pytest.raises(ValueError, match="no melody"):
        stereo.generate_with_chroma(["x"], torch.zeros(1, 2, 3200), 32000)


# ---- checkpoints whose config and weights (or codec) disagree -------------------------------------------------
def _stereo_folder(tmp_path, edit):
    """A copy of the stereo-small checkpoint folder whose LM config is changed by ``edit(cfg)``."""
    import shutil
    from omegaconf import OmegaConf
    from audiocraft.models.loaders import _resolve_file

    src = _resolve_file(STEREO, "state_dict.bin", None)
    shutil.copy(src.parent / "compression_state_dict.bin", tmp_path / "compression_state_dict.bin")
    package = torch.load(src, weights_only=True)
    cfg = OmegaConf.create(package["xp.cfg"])
    edit(cfg)
    package["xp.cfg"] = OmegaConf.to_yaml(cfg)
    torch.save(package, tmp_path / "state_dict.bin")
    return str(tmp_path)


@pytest.mark.parametrize("edit, match", [
    (lambda c: setattr(c.interleave_stereo_codebooks, "use", False),
     r"channels=2 but its compression model gives 1 channel\(s\) \(interleave_stereo_codebooks.use is false\)"),
    (lambda c: setattr(c, "channels", 1),
     r"channels=1 but its compression model gives 2 channel\(s\) \(interleave_stereo_codebooks.use is true\)"),
    (lambda c: setattr(c, "compression_model_n_q", 2),
     r"language model has 8 codebooks but its compression model gives 4 \(stereo"),
    (lambda c: setattr(c.transformer_lm, "n_q", 4), r"state_dict.bin.*delays must have 4 entries, got 8"),
    (lambda c: (setattr(c.transformer_lm, "n_q", 4), setattr(c.codebooks_pattern.delay, "delays", [0, 1, 2, 3])),
     r"state_dict.bin.*unexpected.*emb\.4"),
])
def test_config_and_weights_disagree(tmp_path, edit, match):
    folder = _stereo_folder(tmp_path, edit)
    with pytest.raises(ValueError, match=match):
        MusicGen.get_pretrained(folder, device="cpu")


def test_other_sizes_load_and_generate(tmp_path, fake_demucs_module):
    """The -large / -melody-large checkpoints differ only in sizes: a stereo melody LM of other sizes (3 layers, dim
    48, 3 heads) loads from a folder and generates stereo with a melody."""
    from omegaconf import OmegaConf
    from audiocraft.models.builders import get_lm_model
    from audiocraft.models.loaders import _resolve_file

    src = _resolve_file(STEREO_MELODY, "state_dict.bin", None)
    (tmp_path / "compression_state_dict.bin").write_bytes((src.parent / "compression_state_dict.bin").read_bytes())
    cfg = OmegaConf.create(torch.load(src, weights_only=True)["xp.cfg"])
    cfg.transformer_lm.num_layers, cfg.transformer_lm.dim, cfg.transformer_lm.num_heads = 3, 48, 3
    cfg.device, cfg.dtype = "cpu", "float32"
    torch.manual_seed(0)
    state = get_lm_model(cfg).state_dict()
    torch.save({"best_state": state, "xp.cfg": OmegaConf.to_yaml(cfg), "version": "1.3.0", "exported": True},
               tmp_path / "state_dict.bin")
    model = MusicGen.get_pretrained(str(tmp_path), device="cpu")
    assert model.lm.dim == 48 and len(model.lm.transformer.layers) == 3 and model.audio_channels == 2
    model.set_generation_params(duration=0.2)
    wav = model.generate_with_chroma(["x"], torch.randn(1, 2, 6400), 32000)
    assert wav.shape == (1, 2, 6400)


@pytest.mark.parametrize("options, tolerance", [({"pack": False}, 1e-4), ({"dtype": torch.bfloat16}, 0.05),
                                                ({"quantize": "int8"}, 0.1)])
def test_cpu_weight_formats_serve_the_stereo_lm(options, tolerance):
    """The CPU weight formats serve the 8-codebook LM: the golden logits (float32 unpacked: within 1e-4; bf16 / int8
    weights: within their rounding) and stereo audio from generate."""
    g = load_golden("stereo_lm_forward")
    model = MusicGen.get_pretrained(STEREO, device="cpu", **options)
    with torch.no_grad():
        out = model.lm.compute_predictions(g["codes"], [ConditioningAttributes(text={"description": t})
                                                        for t in texts(g)])
    valid = g["logits_mask"][..., None].expand_as(out.logits)
    error = (out.logits[valid] - g["logits"][valid]).abs().max()
    assert error < tolerance and (error > 1e-3 or "pack" in options)  # bf16 / int8 weights really in use
    model.set_generation_params(duration=0.1)
    assert model.generate(["x"]).shape == (1, 2, 3200)
