"""get_conditioner_provider / get_condition_fuser from the official checkpoint configs."""
import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.models.builders import (
    get_condition_fuser, get_conditioner_provider, get_debug_condition_fuser, get_debug_conditioner_provider,
)
from audiocraft.modules.conditioners import (
    ChromaStemConditioner, ConditionFuser, ConditioningAttributes, LUTConditioner, T5Conditioner,
)

from ..modules._conditioner_helpers import MELODY, SMALL, checkpoint, checkpoint_cfg


def provider_state(repo):
    prefix = "condition_provider."
    return {k[len(prefix):]: v for k, v in checkpoint(repo)["best_state"].items() if k.startswith(prefix)}


def test_melody_provider_from_checkpoint_config():
    cfg = checkpoint_cfg(MELODY)
    assert "${oc.env:USER}" in OmegaConf.to_yaml(cfg)  # the unresolvable part of the official config is there
    provider = get_conditioner_provider(64, cfg)
    assert list(provider.conditioners) == ["self_wav", "description"]
    chroma = provider.conditioners["self_wav"]
    assert isinstance(chroma, ChromaStemConditioner)
    assert chroma.sample_rate == 32000 and chroma.chroma_len == 235 and chroma.chroma.argmax
    assert not chroma.match_len_on_eval and chroma._use_masking  # as stored; get_pretrained overrides these
    t5 = provider.conditioners["description"]
    assert isinstance(t5, T5Conditioner) and t5.name == "t5-base" and t5.word_dropout == 0.2
    provider.load_state_dict(provider_state(MELODY), strict=True)


def test_small_provider_and_fusers():
    cfg = checkpoint_cfg(SMALL)
    provider = get_conditioner_provider(64, cfg)
    assert list(provider.conditioners) == ["description"]
    provider.load_state_dict(provider_state(SMALL), strict=True)
    fuser = get_condition_fuser(cfg)
    assert isinstance(fuser, ConditionFuser)
    assert fuser.fuse2cond == {"sum": [], "cross": ["description"], "prepend": [], "input_interpolate": []}
    assert not fuser.cross_attention_pos_emb and fuser.cross_attention_pos_emb_scale == 1
    melody_fuser = get_condition_fuser(checkpoint_cfg(MELODY))
    assert melody_fuser.fuse2cond["prepend"] == ["self_wav", "description"]
    assert melody_fuser.cond2fuse == {"self_wav": "prepend", "description": "prepend"}


def test_lut_provider_and_args_entry_is_skipped():
    cfg = OmegaConf.create({"device": "cpu", "conditioners": {
        "args": {"merge_text_conditions_p": 0.5, "drop_desc_p": 0.5},
        "genre": {"model": "lut", "lut": {"n_bins": 8, "dim": 4, "tokenizer": "whitespace"}}}})
    provider = get_conditioner_provider(16, cfg)
    assert list(provider.conditioners) == ["genre"] and isinstance(provider.conditioners["genre"], LUTConditioner)
    assert provider.conditioners["genre"].output_proj.out_features == 16


def test_builder_errors():
    cfg = OmegaConf.create({"device": "cpu", "conditioners": {"description": {"model": "clap", "clap": {}}}})
    with pytest.raises(ValueError, match=r"Unrecognized conditioning model 'clap' for conditioners.description"):
        get_conditioner_provider(16, cfg)
    cfg = OmegaConf.create({"conditioners": {"description": {"t5": {}}}})
    with pytest.raises(ValueError, match="conditioners.description must have a 'model' key"):
        get_conditioner_provider(16, cfg)
    cfg = OmegaConf.create({"device": "cpu", "conditioners": {"self_wav": {
        "model": "chroma_stem", "chroma_stem": {"sample_rate": 32000, "n_chroma": 12, "radix2_exp": 14}}}})
    with pytest.raises(ValueError, match="dataset.segment_duration"):
        get_conditioner_provider(16, cfg)
    with pytest.raises(ValueError, match=r"Unknown fuser config keys \['concat'\]"):
        get_condition_fuser(OmegaConf.create({"fuser": {"cross": [], "concat": []}}))
    with pytest.raises(ValueError, match="cfg.fuser is missing"):
        get_condition_fuser(OmegaConf.create({}))
    with pytest.raises(TypeError, match="cfg must be an omegaconf DictConfig"):
        get_condition_fuser("fuser")  # type: ignore[arg-type]


def test_debug_provider():
    provider = get_debug_conditioner_provider(dim=16)
    fuser = get_debug_condition_fuser()
    out = provider(provider.tokenize([ConditioningAttributes(text={"description": "rock"})]))
    x, cross = fuser(torch.zeros(1, 2, 16), out)
    assert cross.shape == (1, 1, 16) and torch.equal(x, torch.zeros(1, 2, 16))
