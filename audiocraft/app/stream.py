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
               cancel: tp.Optional[CancelToken] = None, progress: tp.Optional[Progress] = None,
               poll_seconds: float = 0.25) -> tp.Iterator[StreamItem]:
    """Generate ``request`` and yield ``Chunk`` s of audio as they are decoded, then one ``GenerationResult``.

    The result's ``wav`` ``[C, T]`` is the chunks put together; ``stopped`` tells whether ``cancel`` cut the
    take short. ``progress(done_steps, total_steps)`` is called from the caller's thread (at most every
    ``poll_seconds``). User errors raise ``AppError``; anything else raised in the worker is raised here.
    """
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}.")
    closing = CancelToken()                    # the consumer went away
    either = _AnyOf(cancel, closing)
    items: "queue.Queue[tp.Tuple[str, tp.Any]]" = queue.Queue()
    warnings: tp.List[str] = []
    latest: tp.List[tp.Optional[tp.Tuple[int, int]]] = [None]

    def on_step(done: int, total: int) -> None:
        latest[0] = (done, total)

    def work() -> None:
        try:
            with cache.use(request.model) as model:
                if closing.cancelled:  # the page left while this request waited for the model
                    return
                melody = usable_melody(model, request, warnings)
                set_params(model, request)
                items.put(("format", (int(model.sample_rate), int(model.audio_channels))))
                extra: tp.Dict[str, tp.Any] = {}
                if melody is not None:
                    extra = {"melody_wavs": [melody[0]], "melody_sample_rate": melody[1]}
                model.set_custom_progress_callback(on_step)
                try:
                    chunks = model.generate_stream([request.text], chunk_seconds=chunk_seconds, cancel=either,
                                                   **extra)
                    try:
                        for chunk in chunks:
                            items.put(("chunk", chunk[0].detach().cpu()))
                            if closing.cancelled:
                                break
                    finally:
                        close = getattr(chunks, "close", None)
                        if close is not None:
                            close()  # stops the model's own decoding thread
                except AppError:
                    raise
                except (TypeError, ValueError) as exc:
                    raise AppError(f"Generation failed: {exc}") from exc
                finally:
                    model.set_custom_progress_callback(None)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer's thread
            items.put(("error", exc))
        finally:
            items.put(("done", None))

    worker = threading.Thread(target=work, name="musicgen-app-stream", daemon=True)
    worker.start()
    parts: tp.List[torch.Tensor] = []
    sample_rate, channels = 0, 1
    reported: tp.Optional[tp.Tuple[int, int]] = None
    try:
        while True:
            try:
                kind, value = items.get(timeout=poll_seconds)
            except queue.Empty:
                kind, value = "", None
            if progress is not None and latest[0] is not None and latest[0] != reported:
                reported = latest[0]
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
        closing.cancel()
        worker.join()
    wav = torch.cat(parts, dim=-1) if parts else torch.zeros(channels, 0)
    yield GenerationResult(wav, sample_rate, warnings, stopped=cancel is not None and cancel.cancelled)
