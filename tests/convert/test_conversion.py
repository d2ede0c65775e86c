"""Checkpoint conversion Audiocraft <-> transformers (audiocraft.convert).

Proof of the conversion on the tiny official-format checkpoints:
- transformers' own classes load the converted folders with no missing / unexpected weights;
- greedy generation with transformers gives the same tokens as ours (batch 1: no T5 padding), and the
  transformers EnCodec decodes them to the same audio;
- teacher-forced logits through transformers' modules equal the official goldens;
- converting back gives bit-identical state dicts (and, with the original as template, the same xp.cfg).
"""
import sys
import warnings

import pytest
import torch

from audiocraft.convert import main
from audiocraft.convert import ConversionError, from_transformers, to_transformers

from tests.conftest import HF_CACHE_DIR, load_golden

transformers = pytest.importorskip("transformers")

TEXTS = ["80s pop track with bassy drums and synth", "A calm piano ballad, 90 BPM!"]


def _snapshot(repo: str):
    folder = HF_CACHE_DIR / f"models--{repo.replace('/', '--')}"
    return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


def _package(repo: str, filename: str) -> dict:
    return torch.load(_snapshot(repo) / filename, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def small_hf(tmp_path_factory):
    return to_transformers("facebook/musicgen-small", tmp_path_factory.mktemp("conv") / "small-hf")


@pytest.fixture(scope="module")
def melody_hf(tmp_path_factory):
    return to_transformers("facebook/musicgen-melody", tmp_path_factory.mktemp("conv") / "melody-hf")


@pytest.fixture(scope="module")
def small_model(small_hf):
    model, info = transformers.MusicgenForConditionalGeneration.from_pretrained(small_hf, output_loading_info=True)
    return model.eval(), info


@pytest.fixture(scope="module")
def melody_model(melody_hf):
    cls = transformers.MusicgenMelodyForConditionalGeneration
    model, info = cls.from_pretrained(melody_hf, output_loading_info=True)
    return model.eval(), info


@pytest.fixture(scope="module")
def ours_small():
    from audiocraft.models import MusicGen
    return MusicGen.get_pretrained("facebook/musicgen-small")


def _as_lists(info: dict) -> dict:
    """``output_loading_info`` with lists (transformers 4.x) or sets (5.x) -> lists."""
    return {key: sorted(value) for key, value in info.items()}


def _hf_greedy(model, text: str, frames: int, **kwargs):
    """transformers greedy generation -> (codes [1, K, frames], audio [1, 1, T]); the codes are caught where
    transformers hands them to its EnCodec (after undoing the delay pattern)."""
    tokenizer = transformers.T5Tokenizer.from_pretrained(model.name_or_path)
    inputs = tokenizer([text], return_tensors="pt")
    caught = {}
    decode = model.audio_encoder.decode

    def catching_decode(audio_codes, *args, **kw):
        caught["codes"] = audio_codes
        return decode(audio_codes, *args, **kw)

    model.audio_encoder.decode = catching_decode
    try:
        with torch.no_grad():  # K codebooks need frames + K - 1 steps after the all-special first step
            audio = model.generate(**inputs, do_sample=False, guidance_scale=3.0,
                                   max_new_tokens=frames + model.decoder.num_codebooks - 1, **kwargs)
    finally:
        model.audio_encoder.decode = decode
    return caught["codes"][0], audio


def _reverted(logits: torch.Tensor, T: int) -> torch.Tensor:
    """transformers logits [B * K, S, card] on a delay-pattern sequence -> [B, K, T, card] aligned with codes."""
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
    K = 4
    logits = logits.reshape(-1, K, *logits.shape[1:]).permute(0, 3, 1, 2)  # [B, card, K, S]
    pattern = DelayedPatternProvider(n_q=K).get_pattern(T)
    out, _, _ = pattern.revert_pattern_logits(logits, float("nan"), keep_only_valid_steps=True)
    return out.permute(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------- to transformers
def test_small_loads_in_transformers_with_every_weight(small_hf, small_model):
    model, info = small_model
    assert _as_lists(info) == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert isinstance(model, transformers.MusicgenForConditionalGeneration)
    dec, audio = model.config.decoder, model.config.audio_encoder
    assert (dec.hidden_size, dec.num_attention_heads, dec.num_hidden_layers, dec.ffn_dim) == (64, 2, 2, 256)
    assert (dec.num_codebooks, dec.vocab_size, dec.pad_token_id) == (4, 2048, 2048)
    assert (audio.num_filters, audio.hidden_size, audio.upsampling_ratios) == (4, 32, [8, 5, 4, 4])
    assert (audio.num_quantizers, audio.frame_rate, audio.pad_mode, audio.use_causal_conv) == (4, 50, "constant",
                                                                                               False)
    assert model.config.text_encoder._name_or_path == "t5-base"
    generation = model.generation_config
    assert (generation.decoder_start_token_id, generation.guidance_scale, generation.max_length) == (2048, 3.0, 1500)
    files = {p.name for p in small_hf.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"} <= files
    # The tokenizer and processor files are those of the installed transformers' save_pretrained:
    # 4.x: spiece.model + preprocessor_config.json; 5.x: tokenizer.json + processor_config.json.
    assert files & {"spiece.model", "tokenizer.json"} and files & {"preprocessor_config.json", "processor_config.json"}
    assert not [p for p in small_hf.parent.iterdir() if p.name.endswith(".tmp")]


def test_small_processor_tokenizes_like_the_conditioner(small_hf):
    processor = transformers.AutoProcessor.from_pretrained(small_hf)
    assert type(processor).__name__ == "MusicgenProcessor"
    assert processor.feature_extractor.sampling_rate == 32000
    golden = load_golden("t5_conditioner")
    inputs = processor(text=TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(inputs["input_ids"], golden["input_ids"])
    assert torch.equal(inputs["attention_mask"], golden["attention_mask"])


def test_small_text_encoder_and_projection_match_goldens(small_model):
    model, _ = small_model
    golden = load_golden("t5_conditioner")
    with torch.no_grad():
        hidden = model.text_encoder(input_ids=golden["input_ids"],
                                    attention_mask=golden["attention_mask"]).last_hidden_state
        embeds = model.enc_to_dec_proj(hidden) * golden["attention_mask"][..., None]
    torch.testing.assert_close(hidden, golden["t5_last_hidden_state"], atol=1e-5, rtol=0)
    torch.testing.assert_close(embeds, golden["small_embeds"], atol=1e-5, rtol=0)


def test_small_teacher_forced_logits_match_golden_and_padding_mask_is_the_only_difference(small_model):
    """The official forward (batch 2, the second text padded): transformers' decoder gives the golden logits
    when, like Audiocraft, it attends to the zeroed T5 padding; its own cross-attention mask changes the padded
    item only."""
    model, _ = small_model
    golden = load_golden("lm_forward")
    sequence = golden["pattern_sequence"]  # [B, K, S]
    B, K, S = sequence.shape
    valid = golden["logits_mask"]
    with torch.no_grad():
        out = model.decoder(input_ids=sequence.reshape(B * K, S), encoder_hidden_states=golden[
            "cond_description_embeds"]).logits
        masked = model.decoder(input_ids=sequence.reshape(B * K, S), encoder_hidden_states=golden[
            "cond_description_embeds"], encoder_attention_mask=golden["cond_description_mask"]).logits
    logits = _reverted(out, golden["codes"].shape[-1])
    diff = (logits - golden["logits"])[valid].abs().max().item()
    assert diff < 1e-4
    masked_diff = (_reverted(masked, golden["codes"].shape[-1]) - golden["logits"]).abs()
    assert masked_diff[0][valid[0]].max() < 1e-4  # the longest text: no padding, no difference
    assert masked_diff[1][valid[1]].max() > 1e-3  # the padded one: transformers masks what Audiocraft attends to


def test_small_greedy_generation_matches_ours(small_model, ours_small):
    model, _ = small_model
    ours_small.set_generation_params(use_sampling=False, duration=1.0, cfg_coef=3.0)
    for text in TEXTS:
        audio, tokens = ours_small.generate([text], return_tokens=True)
        hf_tokens, hf_audio = _hf_greedy(model, text, frames=tokens.shape[-1])
        assert hf_tokens.shape == tokens.shape == (1, 4, 50)
        assert torch.equal(hf_tokens, tokens)
        torch.testing.assert_close(hf_audio, audio, atol=1e-4, rtol=0)


def test_melody_loads_in_transformers_with_every_weight(melody_hf, melody_model):
    model, info = melody_model
    assert _as_lists(info) == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert isinstance(model, transformers.MusicgenMelodyForConditionalGeneration)
    assert (model.config.num_chroma, model.config.chroma_length) == (12, 235)
    tokenizer = transformers.AutoTokenizer.from_pretrained(melody_hf)
    assert tokenizer(TEXTS[0])["input_ids"] == load_golden("t5_conditioner")["input_ids"][0].tolist()
    # MusicgenMelodyFeatureExtractor needs torchaudio to be built: check its config file only.
    text = (melody_hf / "preprocessor_config.json").read_text()
    assert '"feature_extractor_type": "MusicgenMelodyFeatureExtractor"' in text and '"n_fft": 16384' in text


def test_melody_teacher_forced_logits_match_golden(melody_model):
    """Prefix order [chroma (235), text, audio]: transformers' melody decoder gives the official logits."""
    model, _ = melody_model
    golden = load_golden("lm_forward_melody")
    chroma = load_golden("chroma")
    with torch.no_grad():
        embeds = model.audio_enc_to_dec_proj(chroma["chroma_conditioner"])
    torch.testing.assert_close(embeds, chroma["self_wav_embeds"], atol=1e-5, rtol=0)
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
    codes = golden["codes"]
    sequence, _, _ = DelayedPatternProvider(n_q=4).get_pattern(codes.shape[-1]).build_pattern_sequence(
        codes, 2048, keep_only_valid_steps=True)
    prefix = torch.cat([golden["cond_self_wav_embeds"], golden["cond_description_embeds"]], dim=1)
    with torch.no_grad():
        out = model.decoder(input_ids=sequence.reshape(4, -1), encoder_hidden_states=prefix).logits
    logits = _reverted(out[:, -sequence.shape[-1]:], codes.shape[-1])
    valid = golden["logits_mask"]
    assert (logits - golden["logits"])[valid].abs().max() < 1e-4


def test_melody_greedy_generation_with_chroma_matches_ours(melody_model, fake_demucs_module):
    """transformers 4.57's melody ``generate`` drops the conditioning when it runs with a KV cache (its
    ``prepare_inputs_for_generation`` sees the pre-built empty cache at step 0); ``use_cache=False`` avoids it."""
    from audiocraft.models import MusicGen
    model, _ = melody_model
    ours = MusicGen.get_pretrained("facebook/musicgen-melody")
    ours.set_generation_params(use_sampling=False, duration=0.4, cfg_coef=3.0)
    chroma = load_golden("chroma")
    _, tokens = ours.generate_with_chroma([TEXTS[0]], chroma["melody_wav"][:1], 32000, return_tokens=True)
    hf_tokens, _ = _hf_greedy(model, TEXTS[0], frames=tokens.shape[-1], use_cache=False,
                              input_features=chroma["chroma_conditioner"][:1])
    assert torch.equal(hf_tokens, tokens)


# ---------------------------------------------------------------------------------------------- and back
@pytest.mark.parametrize("repo", ["facebook/musicgen-small", "facebook/musicgen-melody"])
def test_round_trip_gives_identical_state_dicts(repo, small_hf, melody_hf, tmp_path):
    source = small_hf if repo.endswith("small") else melody_hf
    out = from_transformers(source, tmp_path / "back")
    for filename in ("state_dict.bin", "compression_state_dict.bin"):
        original = _package(repo, filename)["best_state"]
        back = torch.load(out / filename, map_location="cpu", weights_only=True)
        assert back["exported"] is True and set(back) == {"best_state", "xp.cfg", "version", "exported"}
        assert set(back["best_state"]) == set(original)
        for key, tensor in original.items():
            assert back["best_state"][key].dtype == tensor.dtype, key
            assert torch.equal(back["best_state"][key], tensor), key


def test_round_trip_loads_and_generates_the_official_tokens(small_hf, tmp_path):
    from audiocraft.models import MusicGen
    out = from_transformers(small_hf, tmp_path / "back")
    model = MusicGen.get_pretrained(str(out))
    assert model.max_duration == 30
    golden = load_golden("generate_greedy")
    model.set_generation_params(**golden["meta"]["set_generation_params"])
    _, tokens = model.generate(golden["meta"]["texts"], return_tokens=True)
    assert torch.equal(tokens, golden["tokens"])


@pytest.mark.parametrize("repo", ["facebook/musicgen-small", "facebook/musicgen-melody"])
def test_round_trip_with_the_original_as_template_gives_the_same_configs(repo, small_hf, melody_hf, tmp_path):
    source = small_hf if repo.endswith("small") else melody_hf
    out = from_transformers(source, tmp_path / "back", template=repo)
    for filename in ("state_dict.bin", "compression_state_dict.bin"):
        back = torch.load(out / filename, map_location="cpu", weights_only=True)
        assert back["xp.cfg"] == _package(repo, filename)["xp.cfg"]


def test_keep_t5_stores_the_text_encoder_and_converts_again(small_hf, tmp_path):
    from safetensors.torch import load_file
    out = from_transformers(small_hf, tmp_path / "with-t5", keep_t5=True)
    pkg = torch.load(out / "state_dict.bin", map_location="cpu", weights_only=True)
    prefix = "condition_provider.conditioners.description.t5."
    t5_keys = [k for k in pkg["best_state"] if k.startswith(prefix)]
    assert prefix + "shared.weight" in t5_keys and "finetune: true" in pkg["xp.cfg"]
    again = to_transformers(out, tmp_path / "hf-again")
    first, second = load_file(str(small_hf / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert set(first) == set(second)
    assert all(torch.equal(first[k], second[k]) for k in first)


def _assert_same_packages(out, repo: str, dtype=None) -> None:
    for filename in ("state_dict.bin", "compression_state_dict.bin"):
        original = _package(repo, filename)["best_state"]
        back = torch.load(out / filename, map_location="cpu", weights_only=True)["best_state"]
        assert set(back) == set(original)
        for key, tensor in original.items():
            if dtype is not None and filename == "state_dict.bin":
                tensor = tensor.to(dtype)
            assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key


def test_folders_saved_by_transformers_convert_back_exactly(small_hf, melody_hf, tmp_path):
    """What the installed transformers' own save_pretrained writes (its weight names, its processor files)."""
    import json
    cls = transformers.MusicgenForConditionalGeneration
    saved = tmp_path / "saved-small"
    cls.from_pretrained(small_hf).save_pretrained(saved)
    transformers.AutoProcessor.from_pretrained(small_hf).save_pretrained(saved)
    _assert_same_packages(from_transformers(saved, tmp_path / "back-small"), "facebook/musicgen-small")
    saved = tmp_path / "saved-melody"
    transformers.MusicgenMelodyForConditionalGeneration.from_pretrained(melody_hf).save_pretrained(saved)
    # transformers 5.x nests the feature extractor's settings in processor_config.json: they are read there too.
    settings = json.loads((melody_hf / "preprocessor_config.json").read_text())
    (saved / "preprocessor_config.json").unlink(missing_ok=True)
    (saved / "processor_config.json").write_text(json.dumps({"feature_extractor": settings}))
    _assert_same_packages(from_transformers(saved, tmp_path / "back-melody"), "facebook/musicgen-melody")
    settings["n_fft"] = 2 ** 13  # read: a hop of 2048 gives 469 chroma frames for 30 s, not the model's 235
    (saved / "processor_config.json").write_text(json.dumps({"feature_extractor": settings}))
    with pytest.raises(ConversionError, match="chroma_length=235 does not match 30.0 s of audio .469 chroma frames"):
        from_transformers(saved, tmp_path / "back-melody-2")


def test_legacy_weight_norm_names_and_sharded_files_are_read(small_hf, tmp_path):
    """transformers files written with the old weight_norm (``conv.weight_g`` / ``weight_v``), in two shards."""
    import json
    import shutil
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "legacy"
    shutil.copytree(small_hf, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    legacy = {k.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    assert sum(k.endswith("weight_g") for k in legacy) == 28  # every conv of the codec
    shards = {"model-00001-of-00002.safetensors": {k: v for k, v in legacy.items() if k.startswith("audio_")},
              "model-00002-of-00002.safetensors": {k: v for k, v in legacy.items() if not k.startswith("audio_")}}
    for name, part in shards.items():
        save_file(part, str(folder / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    _assert_same_packages(from_transformers(folder, tmp_path / "back"), "facebook/musicgen-small")


def test_float16_weights_keep_their_dtype_both_ways(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    pkg = _package("facebook/musicgen-small", "state_dict.bin")
    pkg["best_state"] = {k: v.half() for k, v in pkg["best_state"].items()}
    torch.save(pkg, folder / "state_dict.bin")
    torch.save(_package("facebook/musicgen-small", "compression_state_dict.bin"),
               folder / "compression_state_dict.bin")
    hf_dir = to_transformers(folder, tmp_path / "hf")
    _, info = transformers.MusicgenForConditionalGeneration.from_pretrained(hf_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    _assert_same_packages(from_transformers(hf_dir, tmp_path / "back"), "facebook/musicgen-small", torch.float16)


def test_compression_reference_is_followed(small_hf, tmp_path):
    """``compression_state_dict.bin`` may only name the codec (``{'pretrained': name}``), as export.py writes."""
    from safetensors.torch import load_file
    folder = tmp_path / "ref"
    folder.mkdir()
    (folder / "state_dict.bin").write_bytes((_snapshot("facebook/musicgen-small") / "state_dict.bin").read_bytes())
    codec_file = _snapshot("facebook/musicgen-small") / "compression_state_dict.bin"
    torch.save({"pretrained": str(codec_file), "exported": True}, folder / "compression_state_dict.bin")
    converted = load_file(str(to_transformers(folder, tmp_path / "hf") / "model.safetensors"))
    reference = load_file(str(small_hf / "model.safetensors"))
    assert set(converted) == set(reference) and all(torch.equal(converted[k], reference[k]) for k in reference)
    # a hub id missing from the offline cache (facebook/encodec_32khz is there now, for MAGNeT's tests)
    torch.save({"pretrained": "facebook/encodec_24khz", "exported": True}, folder / "compression_state_dict.bin")
    with pytest.raises(ConversionError, match="the compression model 'facebook/encodec_24khz' the checkpoint "
                                              "refers to cannot be loaded as a transformers EncodecModel"):
        to_transformers(folder, tmp_path / "hf2")


def test_other_sizes_convert_exactly_and_give_the_same_logits(tmp_path):
    """Sizes other than the reference ones (dim 96, 4 heads, 3 layers, ffn 2 x dim, relu): a randomly initialised
    LM built by our builder converts both ways exactly, and transformers computes the same logits."""
    from omegaconf import OmegaConf
    from audiocraft.models.builders import get_lm_model
    from audiocraft.modules.conditioners import ConditioningAttributes
    pkg = _package("facebook/musicgen-small", "state_dict.bin")
    cfg = OmegaConf.create(pkg["xp.cfg"])
    cfg.device, cfg.dtype = "cpu", "float32"
    cfg.transformer_lm.update(dim=96, num_heads=4, num_layers=3, hidden_scale=2, activation="relu")
    torch.manual_seed(0)
    lm = get_lm_model(cfg).eval()
    folder = tmp_path / "sized"
    folder.mkdir()
    torch.save({**pkg, "best_state": lm.state_dict(), "xp.cfg": OmegaConf.to_yaml(cfg)}, folder / "state_dict.bin")
    torch.save(_package("facebook/musicgen-small", "compression_state_dict.bin"),
               folder / "compression_state_dict.bin")
    hf_dir = to_transformers(folder, tmp_path / "hf")
    model = transformers.MusicgenForConditionalGeneration.from_pretrained(hf_dir).eval()
    dec = model.config.decoder
    assert (dec.hidden_size, dec.num_attention_heads, dec.num_hidden_layers, dec.ffn_dim) == (96, 4, 3, 192)
    assert dec.activation_function == "relu"
    back = torch.load(from_transformers(hf_dir, tmp_path / "back") / "state_dict.bin", weights_only=True)
    assert "hidden_scale: 2" in back["xp.cfg"] and "activation: relu" in back["xp.cfg"]
    original = lm.state_dict()
    assert set(back["best_state"]) == set(original)
    assert all(torch.equal(back["best_state"][k], v) for k, v in original.items())
    codes = torch.randint(0, 2048, (1, 4, 6), generator=torch.Generator().manual_seed(1))
    tokenizer = transformers.T5Tokenizer.from_pretrained(hf_dir)
    inputs = tokenizer([TEXTS[1]], return_tensors="pt")
    with torch.no_grad():
        ours = lm.compute_predictions(codes, [ConditioningAttributes(text={"description": TEXTS[1]})])
        sequence, _, _ = lm.pattern_provider.get_pattern(6).build_pattern_sequence(codes, 2048, True)
        logits = model(**inputs, decoder_input_ids=sequence.reshape(4, -1)).logits
    valid = ours.mask
    assert (_reverted(logits, 6) - ours.logits)[valid].abs().max() < 1e-4


def test_template_of_another_kind_is_refused(melody_hf, tmp_path):
    with pytest.raises(ConversionError, match="the template is a text model but the converted model is a melody"):
        from_transformers(melody_hf, tmp_path / "out", template="facebook/musicgen-small")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- errors
def _run(capsys, *argv: str):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(capsys, match: str, *argv: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert match in err, err
    return err


def test_cli_missing_folder(capsys, tmp_path):
    _one_line_error(capsys, "no such checkpoint file or folder", "to-transformers", str(tmp_path / "nope"),
                    str(tmp_path / "out"))
    _one_line_error(capsys, "no such transformers model folder", "from-transformers", str(tmp_path / "nope"),
                    str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_cli_wrong_formats(capsys, tmp_path, small_hf):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, "checkpoint 'state_dict.bin' not found in folder", "to-transformers", str(empty),
                    str(tmp_path / "out"))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in ("state_dict.bin", "compression_state_dict.bin"):
        (truncated / name).write_bytes((_snapshot("facebook/musicgen-small") / name).read_bytes()[:5000])
    _one_line_error(capsys, "the file is truncated, corrupted or not a torch checkpoint", "to-transformers",
                    str(truncated), str(tmp_path / "out"))
    not_exported = tmp_path / "not-exported"
    not_exported.mkdir()
    for name in ("state_dict.bin", "compression_state_dict.bin"):
        torch.save({"model": {"w": torch.zeros(1)}}, not_exported / name)
    _one_line_error(capsys, "'state_dict.bin' is not an exported Audiocraft checkpoint (needs 'best_state' and "
                    "'xp.cfg', found ['model'])", "to-transformers", str(not_exported), str(tmp_path / "out"))
    _one_line_error(capsys, "holds a transformers model (config.json), not an Audiocraft checkpoint",
                    "to-transformers", str(small_hf), str(tmp_path / "out"))
    _one_line_error(capsys, "has no config.json: not a transformers model folder; it holds an Audiocraft "
                    "checkpoint: use to-transformers", "from-transformers", str(_snapshot("facebook/musicgen-small")),
                    str(tmp_path / "out"))
    _one_line_error(capsys, "is a 't5' model: only 'musicgen' and 'musicgen_melody' convert", "from-transformers",
                    str(_snapshot("t5-base")), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_cli_unsupported_architecture(capsys, tmp_path):
    folder = tmp_path / "rope"
    folder.mkdir()
    pkg = _package("facebook/musicgen-small", "state_dict.bin")
    pkg["xp.cfg"] = pkg["xp.cfg"].replace("positional_embedding: sin", "positional_embedding: rope")
    torch.save(pkg, folder / "state_dict.bin")
    torch.save(_package("facebook/musicgen-small", "compression_state_dict.bin"),
               folder / "compression_state_dict.bin")
    _one_line_error(capsys, "transformer_lm.positional_embedding='rope' cannot be expressed in transformers' "
                    "MusicGen (needs 'sin')", "to-transformers", str(folder), str(tmp_path / "out"))


def test_cli_unsupported_transformers_model(capsys, tmp_path, small_hf):
    import json
    folder = tmp_path / "stereo"
    folder.mkdir()
    config = json.loads((small_hf / "config.json").read_text())
    config["decoder"].update(audio_channels=2, num_codebooks=7)
    (folder / "config.json").write_text(json.dumps(config))
    _one_line_error(capsys, "decoder.audio_channels=2 with num_codebooks=7 cannot be expressed in Audiocraft's "
                    "MusicGen (1, or 2 with an even number of codebooks)",
                    "from-transformers", str(folder), str(tmp_path / "out"))
    config["decoder"].update(audio_channels=1, num_codebooks=4)
    config["text_encoder"]["_name_or_path"] = "my-own-t5"
    (folder / "config.json").write_text(json.dumps(config))
    _one_line_error(capsys, "text encoder 'my-own-t5' is not one of Audiocraft's T5 models", "from-transformers",
                    str(folder), str(tmp_path / "out"))
    _one_line_error(capsys, "the text encoder is 768 wide but 't5-small' is 512 wide", "from-transformers",
                    str(folder), str(tmp_path / "out"), "--t5-name", "t5-small")
    _one_line_error(capsys, "holds no weights", "from-transformers", str(folder), str(tmp_path / "out"),
                    "--t5-name", "t5-base")


def test_cli_refuses_a_non_empty_output_and_overwrites_on_request(capsys, tmp_path, small_hf):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    _one_line_error(capsys, "is not empty (use --overwrite", "from-transformers", str(small_hf), str(out))
    code, stdout, _ = _run(capsys, "from-transformers", str(small_hf), str(out), "--overwrite")
    assert code == 0 and stdout == f"wrote {out}\n"
    assert {p.name for p in out.iterdir()} == {"keep.txt", "state_dict.bin", "compression_state_dict.bin"}


def test_module_entry_point_exit_status(tmp_path, capsys, monkeypatch):
    """``python -m audiocraft.convert ...`` (run in-process with runpy): exit status 2 and one line."""
    import runpy
    missing = tmp_path / "nope"
    monkeypatch.setattr(sys, "argv", ["audiocraft.convert", "to-transformers", str(missing), str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the module is already imported (by this test file)
        runpy.run_module("audiocraft.convert", run_name="__main__", alter_sys=False)
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"error: no such checkpoint file or folder: '{missing}'\n"


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["to-transformers", "only-one-argument"])
    assert exc.value.code == 2


def test_transformers_older_than_the_minimum_is_refused(monkeypatch, small_hf, tmp_path):
    """transformers before 4.52 keeps other MusicGen / EnCodec state dicts: the conversion says what to install."""
    from audiocraft.convert import conversion
    monkeypatch.setattr(conversion, "_transformers_version", lambda: "4.51.3")
    message = (r"converting to / from transformers needs transformers >= 4\.52, installed: 4\.51\.3 "
               r"\(pip install -U 'transformers>=4\.52'\)")
    with pytest.raises(ConversionError, match=message):
        to_transformers("facebook/musicgen-small", tmp_path / "hf")
    with pytest.raises(ConversionError, match=message):
        from_transformers(small_hf, tmp_path / "back")
    assert not (tmp_path / "hf").exists() and not (tmp_path / "back").exists()
