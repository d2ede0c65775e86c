"""Extended generation: the windows a generation longer than ``max_duration`` is made of, and one exact progress
count across them.

A generation of ``duration`` seconds at ``frame_rate`` has ``int(duration * frame_rate)`` frames. Up to
``max_duration`` it is one window. Beyond, windows of at most ``max_duration`` seconds advance by ``extend_stride``
seconds; each is prompted with the last ``window - stride`` frames of the previous one and only its new frames
are kept (Audiocraft's extension).
"""
from __future__ import annotations

import dataclasses
import typing as tp

import torch

from ..utils.cancel import CancelToken
from ..utils.validation import ArgumentError

ProgressCallback = tp.Callable[[int, int], tp.Any]


@dataclasses.dataclass
class Window:
    """One window of a generation, as seen by a window hook before it is generated.

    Attributes:
        index: 0 for the first window.
        time_offset: seconds of the window's first frame in the output.
        content_start: seconds at which the window's NEW content starts (0 for the first window).
        gen_len: frames the window ends with, its prompt included.
        prompt_tokens: the window's prompt ``[B, K, P]`` (None when there is none).
        frame: frames of the output before this window's new content.
    """
    index: int
    time_offset: float
    content_start: float
    gen_len: int
    prompt_tokens: tp.Optional[torch.Tensor]
    frame: int


def window_plan(duration: float, max_duration: float, extend_stride: tp.Optional[float], frame_rate: float,
                prompt_length: int) -> tp.List[tp.Tuple[float, int]]:
    """``[(time offset in s, frames to generate including the prompt), ...]`` of each window."""
    total_gen_len = int(duration * frame_rate)
    if duration <= max_duration:
        return [(0.0, total_gen_len)]
    if extend_stride is None:
        raise ArgumentError("extend_stride must be set to generate beyond max_duration.")
    stride_tokens = int(frame_rate * extend_stride)
    plan = []
    offset = 0
    while offset + prompt_length < total_gen_len:
        time_offset = offset / frame_rate
        chunk_duration = min(duration - time_offset, max_duration)
        max_gen_len = int(chunk_duration * frame_rate)
        plan.append((time_offset, max_gen_len))
        # The next window is prompted by this window's tokens from `stride_tokens` on.
        prompt_length = max_gen_len - stride_tokens
        offset += stride_tokens
    return plan


class Progress:
    """The LM's per-window step callback turned into one count over all windows.

    ``callback`` (``(generated, total)``, may return ``False`` to stop) or, with ``show``, a printed counter;
    ``cancel`` stops too. :attr:`stopped` tells whether the generation was stopped."""

    def __init__(self, total: int, callback: tp.Optional[ProgressCallback], show: bool,
                 cancel: tp.Optional[CancelToken]) -> None:
        self.total, self.callback, self.show, self.cancel = total, callback, show, cancel
        self.done = 0
        self.stopped = False

    @property
    def active(self) -> bool:
        """Whether the LM needs the callback at all."""
        return self.show or self.callback is not None or self.cancel is not None

    def __call__(self, generated: int, _window_total: int) -> tp.Optional[bool]:
        generated += self.done
        keep_going: tp.Any = None
        if self.callback is not None:
            keep_going = self.callback(generated, self.total)
        elif self.show:
            print(f"{generated: 6d} / {self.total: 6d}", end="\r")
        if keep_going is False or (self.cancel is not None and self.cancel.cancelled):
            self.stopped = True
            return False
        return None
