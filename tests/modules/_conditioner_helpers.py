"""Helpers shared by the conditioner tests: reference checkpoints and the fake demucs package."""
from __future__ import annotations

import sys
import typing as tp
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

TESTS_DIR = Path(__file__).resolve().parents[1]
HF_CACHE = TESTS_DIR / "reference" / "hf_cache"
FAKES_DIR = TESTS_DIR / "fakes"
SMALL = "facebook/musicgen-small"
MELODY = "facebook/musicgen-melody"


def checkpoint(repo: str) -> tp.Dict[str, tp.Any]:
    """The official-format LM checkpoint of `repo` in the reference hub cache (read without huggingface_hub)."""
    folder = HF_CACHE / f"models--{repo.replace('/', '--')}"
    commit = (folder / "refs" / "main").read_text().strip()
    return torch.load(folder / "snapshots" / commit / "state_dict.bin", map_location="cpu", weights_only=True)


def conditioner_state(repo: str, name: str) -> tp.Dict[str, torch.Tensor]:
    """State dict of `condition_provider.conditioners.<name>` in `repo`'s checkpoint."""
    prefix = f"condition_provider.conditioners.{name}."
    state = checkpoint(repo)["best_state"]
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def checkpoint_cfg(repo: str):
    """The checkpoint's xp.cfg on CPU, as the loader prepares it."""
    cfg = OmegaConf.create(checkpoint(repo)["xp.cfg"])
    cfg.device = "cpu"
    return cfg


def _drop_demucs_modules() -> None:
    for key in [k for k in sys.modules if k == "demucs" or k.startswith("demucs.")]:
        del sys.modules[key]


@pytest.fixture
def fake_demucs(monkeypatch: pytest.MonkeyPatch) -> tp.Iterator[Path]:
    """`import demucs` finds tests/fakes/demucs (stems = 0.5 * mix) during the test; yields the fake's folder."""
    for key in [k for k in sys.modules if k == "demucs" or k.startswith("demucs.")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    yield FAKES_DIR / "demucs"
    _drop_demucs_modules()  # what the test imported; monkeypatch then restores what was there before


@pytest.fixture
def no_demucs(monkeypatch: pytest.MonkeyPatch) -> tp.Iterator[None]:
    """`import demucs` raises ImportError during the test."""
    for key in [k for k in sys.modules if k == "demucs" or k.startswith("demucs.")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setitem(sys.modules, "demucs", None)
    yield
