"""Thread handling of CPU inference (audiocraft/backends/cpu/threads.py)."""
import sys

import pytest
import torch

from audiocraft import backends
from audiocraft.backends.cpu import kernels as native_kernels
from audiocraft.backends.cpu import threads


@pytest.mark.skipif(not native_kernels.available(), reason="no C++ compiler: native kernels off")
def test_release_openmp_threads_keeps_results():
    """Releasing the idle OpenMP workers of this thread: later parallel work starts new ones, same results."""
    torch.manual_seed(0)
    weight, x = torch.randn(64, 128), torch.randn(4, 128)
    before = native_kernels.linear(x, weight)
    released = threads.release_openmp_threads()
    assert isinstance(released, bool)
    if sys.platform.startswith("linux"):
        assert released  # PyTorch's Linux wheels run on libgomp, which offers omp_pause_resource_all
    assert torch.equal(native_kernels.linear(x, weight), before)


def test_threads_context_releases_on_entry_and_exit(monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "release_openmp_threads", lambda: calls.append(len(calls)) or True)
    with backends.threads():
        assert calls == [0]
    assert calls == [0, 1]
    with pytest.raises(RuntimeError):
        with backends.threads():
            raise RuntimeError("boom")
    assert len(calls) == 4
