"""Streaming audio output: yield audio chunks while tokens are still being generated.

The LM runs in a worker thread. The newly completed frames it reports (``on_frames``) are decoded by the EnCodec
decoder in streaming mode, which returns exactly the samples no later frame can change (see
``audiocraft/models/encodec.py``), as soon as they complete the next chunk of ``chunk_seconds`` (one decoding call
per chunk; by quarter chunks before the first one); the main thread yields the audio in chunks of
``chunk_seconds``, the first one ``first_chunk_seconds`` long (default: ``chunk_seconds``). The tokens are those of
``generate``; the concatenated chunks equal ``generate_audio(tokens)`` within float round-off (~1e-6).
"""
from __future__ import annotations

import queue
import threading
import typing as tp

import torch

from ..utils.cancel import CancelToken
from ..utils.validation import ArgumentError, check_descriptions, check_number

if tp.TYPE_CHECKING:
    from .genmodel import BaseGenModel, GenerationOptions, SeedType
    from .melody import MelodyType

_DONE = object()


def generate_stream(model: "BaseGenModel", descriptions: tp.List[tp.Optional[str]], *, chunk_seconds: float = 1.0,
                    first_chunk_seconds: tp.Optional[float] = None,
                    prompt: tp.Optional[torch.Tensor] = None, prompt_sample_rate: tp.Optional[int] = None,
                    melody_wavs: tp.Optional["MelodyType"] = None, melody_sample_rate: tp.Optional[int] = None,
                    progress: bool = False, seed: "SeedType" = None, cancel: tp.Optional[CancelToken] = None,
                    decoder: tp.Any = None) -> tp.Iterator[torch.Tensor]:
    """:meth:`BaseGenModel.generate_stream`: check the inputs now, then stream (see the module docstring)."""
    check_number("chunk_seconds", chunk_seconds, minimum=0.0, strict_min=True)
    if first_chunk_seconds is not None:
        check_number("first_chunk_seconds", first_chunk_seconds, minimum=0.0, strict_min=True)
    if decoder is not None:
        raise ArgumentError(
            f"generate_stream decodes with the model's own codec (decoder=None), got decoder={type(decoder).__name__}:"
            " MultiBandDiffusion diffuses and equalises a whole clip at once, so it cannot stream. Use "
            "generate(..., return_tokens=True) then decoder.tokens_to_wav(tokens), or generate_long(..., "
            "decoder=decoder).")
    prompt_tokens = None
    if prompt is not None:
        if prompt_sample_rate is None:
            raise ArgumentError("prompt_sample_rate is required with prompt.")
        descriptions, prompt_tokens = model._prepare_prompt(prompt, prompt_sample_rate, descriptions)
    if melody_wavs is not None:
        if melody_sample_rate is None:
            raise ArgumentError("melody_sample_rate is required with melody_wavs.")
        attributes = model._melody_attributes(descriptions, melody_wavs, melody_sample_rate)
    else:
        descriptions = check_descriptions("descriptions", descriptions)
        attributes, _ = model._prepare_tokens_and_attributes(descriptions, None)
    options = model._options(seed, cancel, len(attributes))
    return stream_audio(model, lambda opts: model._generate_tokens(attributes, prompt_tokens, progress, opts),
                        options, prompt_tokens, chunk_seconds, first_chunk_seconds)


class _StreamDecoder:
    """Decodes the frames the LM reports with the codec in streaming mode, into ``out``.

    After the first chunk (``first`` samples, default ``chunk``), the frames wait until, decoded, they complete the
    next chunk of ``chunk`` samples (the codec holds back its look-ahead, ``streaming_delay`` samples), then all of
    them are decoded in one call: no earlier call would let that chunk out sooner, and each call reads the codec's
    weights once per chunk. Before the first chunk, frames are decoded by quarter chunks as they come, so that when
    the first chunk's last frame arrives only a quarter chunk is left to decode (time to first audio).
    """

    def __init__(self, model: "BaseGenModel", chunk: int, out: "queue.Queue[tp.Any]",
                 first: tp.Optional[int] = None) -> None:
        self.model, self.chunk, self.out = model, chunk, out
        self.first = first = chunk if first is None else first
        self.hop = max(1, int(round(model.sample_rate / model.frame_rate)))
        self.delay = int(getattr(model.compression_model, "streaming_delay", 0))
        self.early_block = max(1, int(round(first / self.hop / 4)))  # frames per decode before the first chunk
        self.waiting: tp.List[torch.Tensor] = []
        self.pending = 0  # frames waiting
        self.received = 0  # frames received (decoded or waiting)
        self.due = first  # samples of audio the next decode must complete (first: the first chunk is not out yet)

    def decode(self, frames: torch.Tensor) -> None:
        if frames.shape[-1] == 0:
            return
        with torch.no_grad():
            audio = self.model.compression_model.decode(frames.to(self.model.device), None)
        if audio.shape[-1]:
            self.out.put(audio)

    def on_frames(self, frames: torch.Tensor) -> None:
        self.waiting.append(frames)
        self.received += frames.shape[-1]
        self.pending += frames.shape[-1]
        ready = self.received * self.hop - self.delay  # samples out once every frame received is decoded
        if ready >= self.due or (self.due == self.first and self.pending >= self.early_block):
            self.decode(self.waiting[0] if len(self.waiting) == 1 else torch.cat(self.waiting, dim=-1))
            self.waiting.clear()
            self.pending = 0
            if ready >= self.due:
                self.due += self.chunk * ((ready - self.due) // self.chunk + 1)

    def finish(self) -> None:
        """Decode what is left, then the codec's look-ahead tail (``flush_decoder``)."""
        if self.waiting:
            self.decode(torch.cat(self.waiting, dim=-1))
            self.waiting.clear()
            self.pending = 0
        with torch.no_grad():
            flush: tp.Any = getattr(self.model.compression_model, "flush_decoder")
            tail = flush()
        if tail is not None and tail.shape[-1]:
            self.out.put(tail)


def _either(first: CancelToken, second: tp.Optional[CancelToken]) -> CancelToken:
    class _Either(CancelToken):
        @property
        def cancelled(self) -> bool:
            return first.cancelled or (second is not None and second.cancelled)
    return _Either()


def _chunks(out: "queue.Queue[tp.Any]", chunk: int, first: int) -> tp.Iterator[torch.Tensor]:
    """Audio from the worker's queue re-cut into a first chunk of ``first`` samples, then chunks of ``chunk``
    samples (the last one shorter)."""
    pending: tp.List[torch.Tensor] = []
    pending_len = 0
    size = first
    while True:
        item = out.get()
        if item is _DONE:
            break
        if isinstance(item, BaseException):
            raise item
        pending.append(item)
        pending_len += item.shape[-1]
        while pending_len >= size:
            audio = torch.cat(pending, dim=-1)
            yield audio[..., :size]
            pending = [audio[..., size:]]
            pending_len = pending[0].shape[-1]
            size = chunk
    if pending_len:
        yield torch.cat(pending, dim=-1)


def stream_audio(model: "BaseGenModel", run: tp.Callable[["GenerationOptions"], torch.Tensor],
                 options: "GenerationOptions", prompt_tokens: tp.Optional[torch.Tensor],
                 chunk_seconds: float, first_chunk_seconds: tp.Optional[float] = None) -> tp.Iterator[torch.Tensor]:
    """Run ``run(options)`` (a token generation) in a thread and yield audio ``[B, C, n]`` chunks: the first of
    ``first_chunk_seconds`` (default ``chunk_seconds``), then of ``chunk_seconds``.

    ``prompt_tokens`` (if any) are decoded first, so the stream starts with the prompt audio like ``generate``.
    Closing the iterator early cancels the generation and waits for the worker to stop.
    """
    out: "queue.Queue[tp.Any]" = queue.Queue()
    stop = CancelToken()
    options.cancel = _either(stop, options.cancel)
    chunk = max(1, int(round(chunk_seconds * model.sample_rate)))
    first = chunk if first_chunk_seconds is None else max(1, int(round(first_chunk_seconds * model.sample_rate)))
    decoder = _StreamDecoder(model, chunk, out, first)
    options.on_frames = decoder.on_frames

    def worker() -> None:
        try:
            with model.compression_model.streaming():
                if prompt_tokens is not None:
                    decoder.on_frames(prompt_tokens)
                run(options)
                decoder.finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            out.put(exc)
        finally:
            out.put(_DONE)

    with model._threads():  # the worker's parallel regions must not wake this thread's idle pool
        thread = threading.Thread(target=worker, name="musicgen-stream", daemon=True)
        thread.start()
        try:
            yield from _chunks(out, chunk, first)
        finally:
            stop.cancel()
            thread.join()
