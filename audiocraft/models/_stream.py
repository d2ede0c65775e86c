"""Streaming audio output: yield audio chunks while tokens are still being generated.

The LM runs in a worker thread. Each block of newly completed frames it reports (``on_frames``) is decoded at
once by the EnCodec decoder in streaming mode, which returns exactly the samples no later frame can change
(see ``audiocraft/models/encodec.py``); the main thread yields them in chunks of ``chunk_seconds``. The
concatenated chunks equal ``generate_audio(tokens)`` of the same tokens up to float round-off.
"""
from __future__ import annotations

import queue
import threading
import typing as tp

import torch

from ..utils import native_kernels
from ..utils.cancel import CancelToken

if tp.TYPE_CHECKING:
    from .genmodel import BaseGenModel, GenerationOptions

_DONE = object()


def stream_audio(model: "BaseGenModel", run: tp.Callable[["GenerationOptions"], torch.Tensor],
                 options: "GenerationOptions", prompt_tokens: tp.Optional[torch.Tensor],
                 chunk_seconds: float) -> tp.Iterator[torch.Tensor]:
    """Run ``run(options)`` (a token generation) in a thread and yield audio ``[B, C, n]`` chunks.

    ``prompt_tokens`` (if any) are decoded first, so the stream starts with the prompt audio like ``generate``.
    Closing the iterator early cancels the generation and waits for the worker to stop.
    """
    chunk = max(1, int(round(chunk_seconds * model.sample_rate)))
    out: "queue.Queue[tp.Any]" = queue.Queue()
    codec = model.compression_model
    user_cancel = options.cancel
    stop = CancelToken()

    class _Either(CancelToken):
        @property
        def cancelled(self) -> bool:
            return stop.cancelled or (user_cancel is not None and user_cancel.cancelled)

    options.cancel = _Either()

    # Decoding one frame per call is costly for the real codec: decode blocks of a quarter chunk.
    block = max(1, int(round(chunk_seconds * model.frame_rate / 4)))
    waiting: tp.List[torch.Tensor] = []

    def decode(frames: torch.Tensor) -> None:
        if frames.shape[-1] == 0:
            return
        with torch.no_grad():
            audio = codec.decode(frames.to(model.device), None)
        if audio.shape[-1]:
            out.put(audio)

    def on_frames(frames: torch.Tensor) -> None:
        waiting.append(frames)
        if sum(f.shape[-1] for f in waiting) >= block:
            decode(torch.cat(waiting, dim=-1))
            waiting.clear()

    options.on_frames = on_frames

    def worker() -> None:
        try:
            with codec.streaming():
                if prompt_tokens is not None:
                    decode(prompt_tokens)
                run(options)
                if waiting:
                    decode(torch.cat(waiting, dim=-1))
                with torch.no_grad():
                    flush: tp.Any = getattr(codec, "flush_decoder")
                    tail = flush()
                if tail is not None and tail.shape[-1]:
                    out.put(tail)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            out.put(exc)
        finally:
            out.put(_DONE)

    native_kernels.release_openmp_threads()  # else the worker's OpenMP regions wake sleeping threads every time
    thread = threading.Thread(target=worker, name="musicgen-stream", daemon=True)
    thread.start()
    pending: tp.List[torch.Tensor] = []
    pending_len = 0
    try:
        while True:
            item = out.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            pending.append(item)
            pending_len += item.shape[-1]
            while pending_len >= chunk:
                audio = torch.cat(pending, dim=-1)
                yield audio[..., :chunk]
                pending = [audio[..., chunk:]]
                pending_len = pending[0].shape[-1]
        if pending_len:
            yield torch.cat(pending, dim=-1)
    finally:
        stop.cancel()
        thread.join()
