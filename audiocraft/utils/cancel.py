"""Cooperative cancellation of a running generation."""
from __future__ import annotations

import threading


class CancelToken:
    """A flag another thread (a UI stop button, a signal handler) sets to stop a generation.

    Pass it as ``cancel=token`` to ``MusicGen.generate*``: generation stops after the current step and the
    call returns the audio generated so far (possibly empty). The model is ready for the next call.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the generation to stop at its next step."""
        self._event.set()

    def reset(self) -> None:
        """Clear the flag so the token can be reused."""
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()
