"""Loading MultiBandDiffusion checkpoints safely: the per-band configs are pickled omegaconf objects, allowed
through a fixed allow-list (never ``weights_only=False``); any other pickled object is refused without being
created, and every broken checkpoint raises an error that names the file and the band."""
import collections
import os
from pathlib import Path
import pickle
import shlex
import shutil
import typing as tp

from omegaconf import OmegaConf
import pytest
import torch

from audiocraft.models.loaders import MBD_FILENAME, _diffusion_allowed_globals, load_diffusion_models
from audiocraft.utils.checkpoint_io import CheckpointError
from tests.conftest import HF_CACHE_DIR

_REPO = HF_CACHE_DIR / "models--facebook--multiband-diffusion"
SOURCE = _REPO / "snapshots" / (_REPO / "refs" / "main").read_text().strip() / MBD_FILENAME


def _package() -> dict:
    with torch.serialization.safe_globals(_diffusion_allowed_globals()):
        return torch.load(SOURCE, map_location="cpu", weights_only=True)


def _write(tmp_path: Path, edit: tp.Callable[[dict], None]) -> Path:
    pkg = _package()
    edit(pkg)
    path = tmp_path / MBD_FILENAME
    torch.save(pkg, path)
    return path


class _RunsShell:
    """Unpickling this would call os.system (creating the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_plain_weights_only_refuses_the_official_file():
    """Why an allow-list is needed at all (torch >= 2.6 refuses the DictConfigs by default)."""
    with pytest.raises(pickle.UnpicklingError, match="DictConfig"):
        torch.load(SOURCE, map_location="cpu", weights_only=True)


def test_loads_from_a_folder_and_a_file(tmp_path):
    shutil.copy(SOURCE, tmp_path / MBD_FILENAME)
    models, processors, cfgs = load_diffusion_models(str(tmp_path), filename=MBD_FILENAME)
    assert len(models) == len(processors) == len(cfgs) == 4
    assert all(model.training for model in models)
    models2, _, _ = load_diffusion_models(str(tmp_path / MBD_FILENAME))
    assert torch.equal(models[3].conv_codec.weight, models2[3].conv_codec.weight)


@pytest.mark.parametrize("where", ["top", "band"])
def test_unexpected_pickled_object_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "PWNED"

    def edit(pkg: dict) -> None:
        (pkg if where == "top" else pkg[1])["extra"] = _RunsShell(marker)  # next to valid weights and configs

    path = _write(tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        load_diffusion_models(str(path))
    message = str(info.value)
    assert f"'{path}'" in message and "refused to load" in message and "could run code" in message
    assert "system" in message  # names the refused global
    assert not marker.exists()


def test_allow_list_does_not_leak_into_other_loads(tmp_path):
    load_diffusion_models(str(SOURCE))
    with pytest.raises(pickle.UnpicklingError):  # the DictConfig classes were allowed for that one load only
        torch.load(SOURCE, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("edit, message", [
    (lambda pkg: pkg.pop(3), r"n_bands=4 but band\(s\) \[3\] are missing"),
    (lambda pkg: pkg.update(n_bands="4"), r"n_bands='4' must be an integer >= 1"),
    (lambda pkg: pkg.pop("sample_rate"), r"missing \['sample_rate'\]"),
    (lambda pkg: pkg.update(sample_rate=0), "sample_rate=0 must be an integer >= 1"),
    (lambda pkg: pkg[2].pop("processor_state"), r"band 2 lacks \['processor_state'\]"),
    (lambda pkg: pkg[0].update(cfg="yaml text"), "band 0 'cfg' must be an omegaconf DictConfig, got str"),
    (lambda pkg: pkg[1]["model_state"].pop("conv_codec.bias"),
     r"band 1 model_state\) does not match the model DiffusionUnet: 1 missing key\(s\): conv_codec.bias"),
    (lambda pkg: pkg[3]["processor_state"].update(sum_x=torch.zeros(5)),
     r"band 3 processor_state\) does not match .* sum_x \[5\] \(model \[8\]\)"),
    (lambda pkg: OmegaConf.update(pkg[2]["cfg"], "processor.name", "foo"),
     r"cannot build band 2 from its config: processor.name='foo' is not supported"),
    (lambda pkg: OmegaConf.update(pkg[0]["cfg"], "diffusion_unet.depth", 2),
     r"band 0 model_state\) does not match the model DiffusionUnet: .*unexpected key"),
])
def test_broken_checkpoints_name_the_file_and_band(tmp_path, edit, message):
    path = _write(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        load_diffusion_models(str(path))
    assert f"'{path}'" in str(info.value)


def test_not_a_package(tmp_path):
    path = tmp_path / MBD_FILENAME
    torch.save(collections.OrderedDict(a=torch.zeros(1)), path)
    with pytest.raises(CheckpointError, match="is not a MultiBandDiffusion checkpoint"):
        load_diffusion_models(str(path))
    with pytest.raises(FileNotFoundError, match="not found in folder"):
        load_diffusion_models(str(tmp_path), filename="other.th")
