"""Crossfades of long-form generation: where a schedule changes the conditions, fade from the old conditions'
continuation into the new one.

A window whose description (or melody) changed starts its new content at frame ``f``. With a crossfade of ``n``
frames, the previous conditions also continue the same prompt for ``n`` frames (an extra short generation that
does not touch the random streams of the main one, so the returned tokens are those of ``crossfade=0``). The audio
over frames ``f .. f + n`` then moves from that continuation to the new one with a raised-cosine fade (the two
weights sum to one: both continuations start from the same audio, so the fade has no level dip or bump).
"""
from __future__ import annotations

import contextlib
import math
import typing as tp

import torch

if tp.TYPE_CHECKING:
    from .genmodel import BaseGenModel

# Frames of tokens before the crossfade decoded with the alternative continuation, so that the codec's state
# (LSTM, convolution context) has settled when the fade starts.
CONTEXT_FRAMES = 50


@contextlib.contextmanager
def preserved_random_state(generators: tp.Optional[tp.List[torch.Generator]],
                           device: torch.device) -> tp.Iterator[None]:
    """Restore the per-item generators (or torch's global RNG) after the block: draws made inside do not shift
    the main generation's."""
    if generators is not None:
        states = [g.get_state() for g in generators]
        try:
            yield
        finally:
            for g, state in zip(generators, states):
                g.set_state(state)
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def fade_in(length: int, device: torch.device) -> torch.Tensor:
    """Raised-cosine weights ``[length]`` rising from 0 (exclusive) to 1 (exclusive); ``1 - w`` fades out."""
    t = (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def apply_crossfades(model: "BaseGenModel", tokens: torch.Tensor, audio: torch.Tensor,
                     crossfades: tp.Sequence[tp.Tuple[int, torch.Tensor]],
                     decode: tp.Optional[tp.Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Blend into ``audio`` ``[B, C, T]`` (decoded from ``tokens`` ``[B, K, F]``) each ``(frame, old_tokens
    [B, K, n])``: over frames ``frame .. frame + n`` the audio fades from ``old_tokens``' decoding to its own.
    ``decode`` turns tokens into audio as ``audio`` was made (default ``model.generate_audio``). Returns a new
    tensor."""
    if not crossfades:
        return audio
    hop = int(round(model.sample_rate / model.frame_rate))
    out = audio.clone()
    for frame, old in crossfades:
        n = min(old.shape[-1], tokens.shape[-1] - frame)
        if n <= 0:
            continue
        context = min(CONTEXT_FRAMES, frame)
        codes = torch.cat([tokens[..., frame - context:frame], old[..., :n].to(tokens.device)], dim=-1)
        old_audio = (decode or model.generate_audio)(codes)[..., context * hop:(context + n) * hop]
        start, end = frame * hop, min(frame * hop + old_audio.shape[-1], out.shape[-1])
        weights = fade_in(end - start, out.device)
        out[..., start:end] = (1 - weights) * old_audio[..., :end - start] + weights * out[..., start:end]
    return out
