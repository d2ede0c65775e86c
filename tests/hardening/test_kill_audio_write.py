"""Nothing lost: a process killed with SIGKILL while ``audio_write`` is replacing a file leaves either the old
file or a complete new one, never a partial file, and no temporary file in the target folder.

The writer is a forked child (it starts in milliseconds with everything already imported) that rewrites the
same target in a loop, each version a different signal, with the encoder slowed down (a sleep per chunk) so that
most of its time is spent in the middle of a write. The parent kills it at random moments, several times per
format, and checks the folder after each kill.
"""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
import random
import signal
import sys
import time
import typing as tp

import pytest
import torch

from audiocraft.data import audio as audio_mod
from audiocraft.data.audio import audio_read, audio_write

from .conftest import REPORT

SR = 16000
SECONDS = 1.0
CHUNK = 2048
SLEEP = 0.004  # per chunk: ~8 chunks -> a write takes ~35 ms + encoding
KILLS_PER_FORMAT = 6

pytestmark = pytest.mark.skipif(sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods(),
                                reason="forks the writer (Linux)")


def version(k: int) -> torch.Tensor:
    """The signal of version ``k`` ([1, T], distinct amplitude and pitch per version)."""
    t = torch.arange(int(SR * SECONDS)) / SR
    return (0.05 + 0.01 * (k % 50)) * torch.sin(2 * torch.pi * (200 + 10 * k) * t)[None]


def _writer(stem: str, fmt: str, state: tp.Any) -> None:  # runs in the forked child
    real = audio_mod._to_encoder_array

    def slow(wav: torch.Tensor, sample_fmt: str) -> tp.Any:
        state[1] = 1  # inside an encode
        time.sleep(SLEEP)
        return real(wav, sample_fmt)

    audio_mod._to_encoder_array = slow  # type: ignore[assignment]
    audio_mod._CHUNK = CHUNK
    k = 1
    while True:
        audio_write(stem, version(k), SR, format=fmt, strategy="none", normalize=False)
        state[1] = 0
        state[0] = k  # last complete version
        k += 1


def _identify(path: Path) -> int:
    """Which version the file holds (asserting it is complete and exact to 1 LSB)."""
    wav, sr = audio_read(path)
    assert sr == SR and wav.shape == (1, int(SR * SECONDS)), f"partial file: {wav.shape}"
    for k in range(0, 200):
        if (wav - version(k)).abs().max() <= 1.5 / 2 ** 15:
            return k
    raise AssertionError("the file holds none of the written versions")


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_sigkill_during_audio_write_loses_nothing(tmp_path, fmt):
    stem = tmp_path / "take"
    target = audio_write(stem, version(0), SR, format=fmt, strategy="none", normalize=False)
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(f"kill-{fmt}")
    outcomes = []
    for kill in range(KILLS_PER_FORMAT):
        state = ctx.Array("i", [-1, 0])  # (last complete version in this child, inside an encode)
        child = ctx.Process(target=_writer, args=(str(stem), fmt, state), daemon=True)
        child.start()
        deadline = time.monotonic() + 30
        while state[1] == 0 and state[0] < 0 and time.monotonic() < deadline:  # the first write has started
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.25))  # a random point: usually within the 2nd-8th write
        mid_write = bool(state[1])
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name], "stray or missing files after the kill"
        held = _identify(target)
        # The old file (what was there before this child) or a version this child completed (maybe the one it
        # was writing, if the kill came between its rename and the state update; the first one is version 1,
        # while state[0] still says -1).
        previous = outcomes[-1][1] if outcomes else 0
        assert held == previous or 1 <= held <= max(state[0], 0) + 1, (held, previous, state[0])
        outcomes.append((mid_write, held))
    kept = sum(1 for i, (_, held) in enumerate(outcomes) if held == (outcomes[i - 1][1] if i else 0))
    REPORT.append(f"SIGKILL during audio_write ({fmt}): {len(outcomes)} kills, {sum(m for m, _ in outcomes)} in the "
                  f"middle of an encode; after each: old file intact {kept}x, new complete file "
                  f"{len(outcomes) - kept}x, partial files 0, stray files 0")
    assert sum(mid for mid, _ in outcomes) >= KILLS_PER_FORMAT // 2, f"too few kills landed mid-write: {outcomes}"
