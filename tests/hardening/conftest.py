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

EXAMPLES: tp.Counter[str] = collections.Counter()  # examples run, per test
ACCEPTED: tp.Counter[str] = collections.Counter()  # of which the entry point accepted the input
_current = [""]
REPORT: tp.List[str] = []  # figures other tests want shown at the end (kill test, load test)
F = tp.TypeVar("F", bound=tp.Callable[..., tp.Any])


def counted(fn: F) -> F:
    """Count each call of a hypothesis test body (put it right under ``@given``)."""
    name = fn.__module__.rsplit(".", 1)[-1] + "::" + fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        EXAMPLES[name] += 1
        _current[0] = name
        return fn(*args, **kwargs)
    return tp.cast(F, wrapper)


def note_accepted() -> None:
    """Record that the current example's input was accepted (not refused with a documented error)."""
    ACCEPTED[_current[0]] += 1


def pytest_terminal_summary(terminalreporter: tp.Any) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)
    if not EXAMPLES:
        return
    total, accepted = sum(EXAMPLES.values()), sum(ACCEPTED.values())
    terminalreporter.write_sep("-", f"hypothesis examples run (hardening): {total} ({accepted} accepted by the "
                                    "entry point, the rest refused with a documented error)")
    for name, count in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{count:6d} run {ACCEPTED[name]:6d} accepted  {name}")


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
