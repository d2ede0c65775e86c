"""Fixtures of the training tests: one synthesised music folder and one token cache for the whole session."""
from pathlib import Path

import pytest

from .synth import make_music_folder


@pytest.fixture(scope="session")
def music_folder(tmp_path_factory) -> Path:
    """4 one-second mono 32 kHz tracks with .txt descriptions (segments of 1 s always start at 0)."""
    folder = tmp_path_factory.mktemp("music")
    make_music_folder(folder, count=4, seconds=1.0, sample_rate=32000)
    return folder


@pytest.fixture(scope="session")
def codes_cache(tmp_path_factory) -> Path:
    """Shared EnCodec token cache: each track is encoded once for all the tests."""
    return tmp_path_factory.mktemp("codes_cache")


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny models run fastest on one thread (and do not fight other processes for the cores)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
