"""Tests of audiocraft/utils/export.py (the official exported package layout) and audiocraft/train/export.py."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from audiocraft.utils.checkpoint_io import CheckpointError
from audiocraft.train.export import export_musicgen
from audiocraft.utils.export import export_encodec, export_lm, export_pretrained_compression_model

CFG = "sample_rate: 32000\nencodec:\n  sample_rate: ${sample_rate}\n"


def test_export_lm_writes_the_official_layout(tmp_path: Path) -> None:
    state = {"emb.0.weight": torch.randn(3, 2), "linears.0.weight": torch.randn(2, 2).t()}
    path = export_lm(state, OmegaConf.create(CFG), tmp_path / "out" / "state_dict.bin")
    pkg = torch.load(path, weights_only=True)
    assert set(pkg) == {"best_state", "xp.cfg", "version", "exported"}
    assert pkg["exported"] is True and isinstance(pkg["version"], str)
    assert all(torch.equal(pkg["best_state"][k], v) for k, v in state.items())
    assert "${sample_rate}" in pkg["xp.cfg"]  # stored unresolved, as Audiocraft does
    assert OmegaConf.create(pkg["xp.cfg"]).encodec.sample_rate == 32000
    assert [p.name for p in path.parent.iterdir()] == ["state_dict.bin"]


def test_export_lm_from_a_training_checkpoint(tmp_path: Path) -> None:
    weights = {"w": torch.ones(2)}
    torch.save({"xp.cfg": CFG, "best_state": {"model": weights}, "fsdp_best_state": {}}, tmp_path / "ckpt.th")
    pkg = torch.load(export_lm(tmp_path / "ckpt.th", tmp_path / "lm.bin"), weights_only=True)
    assert torch.equal(pkg["best_state"]["w"], weights["w"]) and pkg["xp.cfg"] == CFG
    torch.save({"xp.cfg": CFG, "best_state": {"model": weights}}, tmp_path / "codec.th")
    assert torch.load(export_encodec(tmp_path / "codec.th", tmp_path / "c.bin"), weights_only=True)["exported"]
    torch.save({"best_state": {}}, tmp_path / "nocfg.th")
    with pytest.raises(CheckpointError, match="has no 'xp.cfg'"):
        export_lm(tmp_path / "nocfg.th", tmp_path / "x.bin")


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="needs out_file"):
        export_lm({"w": torch.ones(1)}, CFG)
    with pytest.raises(TypeError, match="state_dict must map str to Tensor; entry 'w' is a int"):
        export_lm({"w": 1}, CFG, tmp_path / "x.bin")
    with pytest.raises(ValueError, match="cfg must be a YAML mapping"):
        export_lm({"w": torch.ones(1)}, "- a list", tmp_path / "x.bin")
    with pytest.raises(TypeError, match="cfg must be an OmegaConf DictConfig"):
        export_lm({"w": torch.ones(1)}, 3, tmp_path / "x.bin")
    with pytest.raises(ValueError, match="exactly one of compression_from"):
        export_musicgen(tmp_path, {"w": torch.ones(1)}, CFG)


def test_pretrained_compression_reference(tmp_path: Path) -> None:
    pkg = torch.load(export_pretrained_compression_model("facebook/encodec_32khz", tmp_path / "c.bin"),
                     weights_only=True)
    assert pkg["pretrained"] == "facebook/encodec_32khz" and pkg["exported"] is True


def test_export_musicgen_copies_the_base_codec(tmp_path: Path) -> None:
    from audiocraft.models.loaders import load_compression_model_ckpt
    folder = export_musicgen(tmp_path / "m", {"w": torch.ones(1)}, CFG, compression_from="facebook/musicgen-small")
    copied = torch.load(folder / "compression_state_dict.bin", weights_only=True)
    original = load_compression_model_ckpt("facebook/musicgen-small")
    assert copied["xp.cfg"] == original["xp.cfg"]
    assert all(torch.equal(copied["best_state"][k], v) for k, v in original["best_state"].items())
