"""One request of the interactive app, streamed: audio chunks while the model generates, then the whole take.

``stream_one`` runs ``MusicGen.generate_stream`` in a worker thread that holds the model (``ModelCache.use``)
for the whole generation. The caller's iterator only reads a queue: gradio may resume a generator handler from
a different thread at each step, so the model lock must not be held by the generator itself. Closing the
iterator early (the page went away) or setting ``cancel`` (the Stop button) stops the generation at its next
decoding step; the worker then releases the model for the next request.
"""
from __future__ import annotations

import queue
import threading
import typing as tp

import torch

from ..utils.cancel import CancelToken
from .errors import AppError
from .handlers import GenerationRequest, GenerationResult, Progress, set_params, usable_melody
from .model_cache import ModelCache


class Chunk(tp.NamedTuple):
    """A piece of the take: ``wav`` ``[C, n]`` float at ``sample_rate``."""
    wav: torch.Tensor
    sample_rate: int


StreamItem = tp.Union[Chunk, GenerationResult]


class _AnyOf(CancelToken):
    """Cancelled as soon as one of ``tokens`` is."""

    def __init__(self, *tokens: tp.Optional[CancelToken]) -> None:
        super().__init__()
        self._tokens = [token for token in tokens if token is not None]

    @property
    def cancelled(self) -> bool:
        return any(token.cancelled for token in self._tokens)


def stream_one(cache: ModelCache, request: GenerationRequest, *, chunk_seconds: float = 1.0,
               first_chunk_seconds: tp.Optional[float] = None,
               cancel: tp.Optional[CancelToken] = None, progress: tp.Optional[Progress] = None,
               poll_seconds: float = 0.25) -> tp.Iterator[StreamItem]:
    """Generate ``request`` and yield ``Chunk`` s of audio as they are decoded, then one ``GenerationResult``.
    The first chunk is ``first_chunk_seconds`` long (default ``chunk_seconds``: shorter starts playback sooner).

    The result's ``wav`` ``[C, T]`` is the chunks put together; ``stopped`` tells whether ``cancel`` cut the
    take short. ``progress(done_steps, total_steps)`` is called from the caller's thread (at most every
    ``poll_seconds``). User errors raise ``AppError``; anything else raised in the worker is raised here.
    """
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}.")
    if first_chunk_seconds is not None and not first_chunk_seconds > 0:
        raise ValueError(f"first_chunk_seconds must be > 0 or None, got {first_chunk_seconds}.")
    worker = _Worker(cache, request, chunk_seconds, cancel, first_chunk_seconds)
    worker.start()
    parts: tp.List[torch.Tensor] = []
    sample_rate, channels = 0, 1
    reported: tp.Optional[tp.Tuple[int, int]] = None
    try:
        while True:
            try:
                kind, value = worker.items.get(timeout=poll_seconds)
            except queue.Empty:
                kind, value = "", None
            if progress is not None and worker.latest is not None and worker.latest != reported:
                reported = worker.latest
                progress(*reported)
            if kind == "format":
                sample_rate, channels = value
            elif kind == "chunk":
                parts.append(value)
                yield Chunk(value, sample_rate)
            elif kind == "error":
                raise value
            elif kind == "done":
                break
    finally:
        worker.stop()
    wav = torch.cat(parts, dim=-1) if parts else torch.zeros(channels, 0)
    yield GenerationResult(wav, sample_rate, worker.warnings, stopped=cancel is not None and cancel.cancelled)


class _Worker:
    """The thread that holds the model and generates; it hands ``(kind, value)`` items to the consumer:
    ``('format', (sample_rate, channels))``, ``('chunk', wav [C, n])``, ``('error', exception)``, then
    ``('done', None)``. ``latest`` is the last ``(done_steps, total_steps)`` of the model."""

    def __init__(self, cache: ModelCache, request: GenerationRequest, chunk_seconds: float,
                 cancel: tp.Optional[CancelToken], first_chunk_seconds: tp.Optional[float] = None) -> None:
        self.cache, self.request, self.chunk_seconds = cache, request, chunk_seconds
        self.first_chunk_seconds = first_chunk_seconds
        self.closing = CancelToken()                    # the consumer went away
        self.either = _AnyOf(cancel, self.closing)
        self.items: "queue.Queue[tp.Tuple[str, tp.Any]]" = queue.Queue()
        self.warnings: tp.List[str] = []
        self.latest: tp.Optional[tp.Tuple[int, int]] = None
        self._thread = threading.Thread(target=self._work, name="musicgen-app-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop generating (at the next decoding step) and wait for the model to be released."""
        self.closing.cancel()
        self._thread.join()

    def _on_step(self, done: int, total: int) -> None:
        self.latest = (done, total)

    def _work(self) -> None:
        try:
            with self.cache.use(self.request.model) as model:
                if self.closing.cancelled:  # the page left while this request waited for the model
                    return
                melody = usable_melody(model, self.request, self.warnings)
                set_params(model, self.request)
                self.items.put(("format", (int(model.sample_rate), int(model.audio_channels))))
                model.set_custom_progress_callback(self._on_step)
                try:
                    self._stream(model, melody)
                finally:
                    model.set_custom_progress_callback(None)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer's thread
            self.items.put(("error", exc))
        finally:
            self.items.put(("done", None))

    def _stream(self, model: tp.Any, melody: tp.Optional[tp.Tuple[torch.Tensor, int]]) -> None:
        extra: tp.Dict[str, tp.Any] = {}
        if melody is not None:
            extra = {"melody_wavs": [melody[0]], "melody_sample_rate": melody[1]}
        if self.first_chunk_seconds is not None:
            extra["first_chunk_seconds"] = self.first_chunk_seconds
        try:
            chunks = model.generate_stream([self.request.text], chunk_seconds=self.chunk_seconds,
                                           cancel=self.either, **extra)
            try:
                for chunk in chunks:
                    self.items.put(("chunk", chunk[0].detach().cpu()))
                    if self.closing.cancelled:
                        break
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stops the model's own decoding thread
        except AppError:
            raise
        except (TypeError, ValueError) as exc:
            raise AppError(f"Generation failed: {exc}") from exc
