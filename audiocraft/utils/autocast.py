"""A context manager that is torch.autocast when enabled and a no-op otherwise."""
from __future__ import annotations

import typing as tp

import torch


class TorchAutocast:
    """Audiocraft's ``TorchAutocast(enabled, *args, **kwargs)``: ``torch.autocast(*args, **kwargs)`` if enabled.

    MusicGen enables it on CUDA only (``device_type='cuda', dtype=torch.float16``); on CPU everything runs in
    float32, exactly like the official implementation.
    """

    def __init__(self, enabled: bool, *args: tp.Any, **kwargs: tp.Any) -> None:
        self.autocast: tp.Optional[torch.autocast] = torch.autocast(*args, **kwargs) if enabled else None

    def __enter__(self) -> None:
        if self.autocast is not None:
            self.autocast.__enter__()

    def __exit__(self, *args: tp.Any) -> None:
        if self.autocast is not None:
            self.autocast.__exit__(*args)
