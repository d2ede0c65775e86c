"""The generations running for each page session, so that a Stop click can cancel its own session's request."""
from __future__ import annotations

import contextlib
import threading
import typing as tp

from ..utils.cancel import CancelToken


class RunningRequests:
    """Cancel tokens of the requests in progress, by session key (gradio's ``session_hash``).

    ``track(key)`` hands a fresh token to a request for as long as it runs; ``stop(key)`` cancels the
    requests of that session only. Entries leave with their request, so the table holds no more than the
    requests actually running.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: tp.Dict[str, tp.List[CancelToken]] = {}

    @contextlib.contextmanager
    def track(self, key: tp.Optional[str]) -> tp.Iterator[CancelToken]:
        """A token for one request of session ``key`` (None: not stoppable by ``stop``)."""
        token = CancelToken()
        if key is None:
            yield token
            return
        with self._lock:
            self._tokens.setdefault(key, []).append(token)
        try:
            yield token
        finally:
            with self._lock:
                tokens = self._tokens.get(key, [])
                if token in tokens:
                    tokens.remove(token)
                if not tokens:
                    self._tokens.pop(key, None)

    def stop(self, key: tp.Optional[str]) -> int:
        """Cancel the running requests of session ``key``; returns how many were running."""
        if key is None:
            return 0
        with self._lock:
            tokens = list(self._tokens.get(key, []))
        for token in tokens:
            token.cancel()
        return len(tokens)

    def __len__(self) -> int:
        """Number of requests running."""
        with self._lock:
            return sum(len(tokens) for tokens in self._tokens.values())
