"""Shared test fixtures: point the hub at the tiny offline reference checkpoints."""
import os
from pathlib import Path

REFERENCE_DIR = Path(__file__).parent / "reference"
GOLDEN_DIR = REFERENCE_DIR / "golden"
HF_CACHE_DIR = REFERENCE_DIR / "hf_cache"

# Must happen before huggingface_hub / transformers are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(HF_CACHE_DIR)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import json  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# One intra-op thread: the tiny test models are far faster that way, and results do not depend on it.
torch.set_num_threads(1)


def load_golden(name: str) -> dict:
    """Load `tests/reference/golden/<name>.pt` with its parsed `meta` (from `meta_json`)."""
    data = torch.load(GOLDEN_DIR / f"{name}.pt", weights_only=True)
    if "meta_json" in data:
        data["meta"] = json.loads(data.pop("meta_json"))
    return data


@pytest.fixture(scope="session")
def golden():
    return load_golden


@pytest.fixture(scope="session")
def hf_cache_dir() -> Path:
    return HF_CACHE_DIR


FAKES_DIR = Path(__file__).parent / "fakes"

# The part of the suite that depends on transformers / huggingface_hub (T5 conditioner, conversion to and from
# transformers, checkpoint loaders, MusicGen / MAGNeT generation parity with the goldens, transformers' EnCodec).
# Its tests get the marker `transformers`: `make test-transformers4` runs them (`pytest -m transformers`) in a
# second environment with transformers 4.x, while `make test` runs everything with the newest versions.
TRANSFORMERS_TESTS = (  # files, or folders ending in '/'
    "convert/",
    "modules/test_conditioners_text.py",
    "modules/test_conditioners_provider.py",
    "models/test_builders.py",
    "models/test_loaders.py",
    "models/test_encodec.py",
    "models/test_musicgen.py",
    "models/test_magnet.py",
    "hardening/test_safe_loading.py",
)


def pytest_terminal_summary(terminalreporter):
    """The versions the suite ran against (make test: the newest; make test-transformers4: transformers 4.x)."""
    from importlib import metadata
    found = []
    for name in ("torch", "transformers", "huggingface_hub", "tokenizers", "gradio"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    terminalreporter.write_line("versions: " + ", ".join(found))


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).parent
    missing = [name for name in TRANSFORMERS_TESTS if not (tests_dir / name).exists()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py TRANSFORMERS_TESTS names missing files: {missing}")
    for item in items:
        path = Path(str(item.fspath))
        if not path.is_relative_to(tests_dir):
            continue
        name = path.relative_to(tests_dir).as_posix()
        if any(name == entry or (entry.endswith("/") and name.startswith(entry)) for entry in TRANSFORMERS_TESTS):
            item.add_marker(pytest.mark.transformers)


@pytest.fixture(scope="module")
def fake_demucs_module():
    """Put the documented demucs stand-in (stems = 0.5 * mix) first on sys.path for one test module."""
    import sys

    saved = {k: v for k, v in sys.modules.items() if k == "demucs" or k.startswith("demucs.")}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, str(FAKES_DIR))
    import demucs  # noqa: F401
    yield demucs
    sys.path.remove(str(FAKES_DIR))
    for key in [k for k in sys.modules if k == "demucs" or k.startswith("demucs.")]:
        del sys.modules[key]
    sys.modules.update(saved)
