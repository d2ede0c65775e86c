"""Thread handling of CPU inference: leave no idle OpenMP pool behind a generation.

Each thread that runs parallel regions owns a pool of OpenMP workers. When the pools of several threads together
hold more workers than the machine has cores (an app's request threads, a stream's worker thread), libgomp stops
letting idle workers spin, and every parallel region then waits for sleeping workers to wake up: decoding steps
became ~1.5x slower on 2 cores. Releasing a thread's idle pool costs nothing measurable (its next parallel region
starts new workers in microseconds).
"""
from __future__ import annotations

import contextlib
import ctypes
import typing as tp

_RUNTIMES = ("libgomp.so.1", "libomp.so", "libiomp5.so", "libomp.dylib")


def release_openmp_threads() -> bool:
    """Release the idle OpenMP worker threads of the calling thread (its next parallel region starts new ones).
    Returns whether the OpenMP runtime offered it (``omp_pause_resource_all``)."""
    for name in _RUNTIMES:
        try:
            runtime = ctypes.CDLL(name)
            pause = runtime.omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        pause.restype, pause.argtypes = ctypes.c_int, [ctypes.c_int]
        return pause(1) == 0  # omp_pause_soft
    return False


@contextlib.contextmanager
def released_threads() -> tp.Iterator[None]:
    """Release the calling thread's idle OpenMP pool on entry (work may be handed to another thread inside) and on
    exit (the work is done: no idle pool stays behind)."""
    release_openmp_threads()
    try:
        yield
    finally:
        release_openmp_threads()
