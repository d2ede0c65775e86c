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

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
