"""Where the apps get their models: the real hub checkpoints, or the tiny offline ones of a source checkout.

``MUSICGEN_DEMO_OFFLINE=1`` (or the apps' ``--offline-demo`` flag) points the hub at the tiny random-weight
checkpoints shipped in ``tests/reference/hf_cache`` of a source checkout (``MUSICGEN_DEMO_CACHE`` overrides the
folder). Their audio is noise, not music: this mode exists so that tests (and curious developers without the
real weights) can drive the whole app offline in seconds.
"""
from __future__ import annotations

import os
from pathlib import Path
import sys
import typing as tp

OFFLINE_ENV = "MUSICGEN_DEMO_OFFLINE"
CACHE_ENV = "MUSICGEN_DEMO_CACHE"

# Models offered by the interactive app, as in Audiocraft's demo (the melody model first: it takes a melody).
MODELS = ("facebook/musicgen-melody", "facebook/musicgen-small", "facebook/musicgen-medium",
          "facebook/musicgen-large", "facebook/musicgen-melody-large", "facebook/musicgen-stereo-small",
          "facebook/musicgen-stereo-medium", "facebook/musicgen-stereo-melody", "facebook/musicgen-stereo-large",
          "facebook/musicgen-stereo-melody-large")
# The tiny offline cache only holds these.
OFFLINE_MODELS = ("facebook/musicgen-melody", "facebook/musicgen-small", "facebook/musicgen-stereo-small",
                  "facebook/musicgen-stereo-melody")


def offline_demo_requested() -> bool:
    """True when ``MUSICGEN_DEMO_OFFLINE`` is set to 1/true/yes."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def demo_cache_dir() -> Path:
    """The tiny offline hub cache: ``$MUSICGEN_DEMO_CACHE`` or ``tests/reference/hf_cache`` of the checkout."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parent.parent.parent / "tests" / "reference" / "hf_cache"


def offline_env() -> tp.Dict[str, str]:
    """Environment variables that make huggingface_hub / transformers use the tiny offline cache.

    Raises:
        FileNotFoundError: when the cache folder does not exist (an installed wheel has no tests folder).
    """
    cache = demo_cache_dir()
    if not cache.is_dir():
        raise FileNotFoundError(
            f"The tiny offline checkpoints were not found in '{cache}'. They ship with a source checkout "
            f"(tests/reference/hf_cache); set {CACHE_ENV} to their folder.")
    return {OFFLINE_ENV: "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
            "GRADIO_ANALYTICS_ENABLED": "False"}


def needs_reexec(env: tp.Mapping[str, str]) -> bool:
    """True when ``env`` differs from ``os.environ`` and the hub libraries already read the old values.

    huggingface_hub reads ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE`` once, when it is imported; if it already is,
    the process must restart with the new environment.
    """
    changed = any(os.environ.get(key) != value for key, value in env.items())
    loaded = any(name in sys.modules for name in ("huggingface_hub", "transformers"))
    return changed and loaded
