"""Fixtures of the hardening suite: the tiny reference models (loaded once per session), hypothesis settings,
and a count of the hypothesis examples actually run (printed at the end of the session)."""
from __future__ import annotations

import collections
import functools
import os
import typing as tp

import pytest
import torch
from hypothesis import HealthCheck, settings

# Derandomized by default so the shared suite is reproducible; HARDENING_RANDOM=1 explores new inputs.
FUZZ = settings(deadline=None, database=None, derandomize=os.environ.get("HARDENING_RANDOM") != "1",
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much],
                print_blob=True)

EXAMPLES: tp.Counter[str] = collections.Counter()
F = tp.TypeVar("F", bound=tp.Callable[..., tp.Any])


def counted(fn: F) -> F:
    """Count each call of a hypothesis test body (put it right under ``@given``)."""
    @functools.wraps(fn)
    def wrapper(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        EXAMPLES[fn.__module__.rsplit(".", 1)[-1] + "::" + fn.__name__] += 1
        return fn(*args, **kwargs)
    return tp.cast(F, wrapper)


def pytest_terminal_summary(terminalreporter: tp.Any) -> None:
    if not EXAMPLES:
        return
    terminalreporter.write_sep("-", f"hypothesis examples run (hardening): {sum(EXAMPLES.values())}")
    for name, count in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{count:6d}  {name}")


@pytest.fixture(scope="session")
def small_model():
    """The tiny musicgen-small of tests/reference (shared: tests set their own generation parameters)."""
    from audiocraft.models import MusicGen
    torch.set_num_threads(1)
    return MusicGen.get_pretrained("facebook/musicgen-small", device="cpu")


@pytest.fixture(scope="session")
def melody_model():
    """The tiny musicgen-melody, chroma from the full mix (no demucs)."""
    from audiocraft.models import MusicGen
    torch.set_num_threads(1)
    return MusicGen.get_pretrained("facebook/musicgen-melody", device="cpu", stem_separation=False)
