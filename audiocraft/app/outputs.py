"""Files the apps hand to the browser: generated audio written with ``audio_write``, old files removed."""
from __future__ import annotations

import os
from pathlib import Path
import tempfile
import threading
import time
import typing as tp
import uuid

import torch


class OutputFolder:
    """A folder of generated files; files older than ``max_age`` seconds are deleted as new ones arrive.

    Args:
        folder: where to write (default: a fresh temporary folder).
        max_age: seconds a file is kept (gradio copies outputs to its own cache when it serves them).
    """

    def __init__(self, folder: tp.Optional[tp.Union[str, os.PathLike]] = None, max_age: float = 3600.0) -> None:
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="musicgen_app_"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self._lock = threading.Lock()

    def clean(self, now: tp.Optional[float] = None) -> int:
        """Delete files older than ``max_age``; returns how many were deleted."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            for path in self.folder.iterdir():
                try:
                    if path.is_file() and now - path.stat().st_mtime > self.max_age:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:  # removed by another request meanwhile
                    pass
        return removed

    def write_audio(self, wav: torch.Tensor, sample_rate: int, format: str = "wav") -> Path:
        """Write ``wav`` ``[C, T]`` loudness-normalised (as Audiocraft's demo does) and return its path."""
        from ..data.audio import audio_write  # lazy: PyAV

        self.clean()
        stem = self.folder / f"musicgen_{uuid.uuid4().hex[:12]}"
        return audio_write(stem, wav.detach().cpu().float(), sample_rate, format=format, strategy="loudness",
                           loudness_compressor=True, log_clipping=False)
