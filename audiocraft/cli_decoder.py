"""``musicgen --decoder mbd``: the generated tokens decoded by MultiBandDiffusion instead of the model's EnCodec.

The checks come first: the model's checkpoint config is read (not its weights) and a model whose tokens the
MusicGen diffusion decoder cannot read (AudioGen, Audio-MAGNeT, another sample rate, 'debug') stops the command
before anything is loaded. Each take is then decoded alone with torch's RNG seeded from the take's seed, so a
file depends only on its tokens and its seed, as with EnCodec.
"""
from __future__ import annotations

import argparse
import typing as tp

from .cli_plan import CLIError, one_line

if tp.TYPE_CHECKING:  # pragma: no cover
    import torch

    from .models.multibanddiffusion import MultiBandDiffusion

DECODERS = ("encodec", "mbd")
HELP = ("what turns the tokens into audio: 'encodec', the model's own codec (default), or 'mbd', MultiBand "
        "Diffusion (facebook/multiband-diffusion: higher quality, much slower on CPU; 32 kHz MusicGen and MAGNeT "
        "music models; stereo is decoded channel by channel)")


def check_fits(args: argparse.Namespace, name: str) -> None:
    """Before loading: with ``--decoder mbd``, the checkpoint ``name`` must make tokens MBD decodes. A checkpoint
    that cannot be read is left to the model load (which reports it, or takes the demo fallback)."""
    if args.decoder != "mbd":
        return
    from .models.decoders import checkpoint_mismatch
    try:
        reason = checkpoint_mismatch(name)
    except Exception:  # noqa: BLE001 - not found / unreadable: the model load says so in its own words
        return
    if reason is not None:
        raise CLIError(f"--decoder mbd: {reason}; drop --decoder mbd or choose a MusicGen model")


def load(args: argparse.Namespace, model: tp.Any, device: str) -> tp.Optional["MultiBandDiffusion"]:
    """With ``--decoder mbd``: the MusicGen diffusion decoder on ``device``, checked against the loaded ``model``
    (the authoritative check, e.g. for a local folder); None for the model's own codec."""
    if args.decoder != "mbd":
        return None
    from .models import MultiBandDiffusion
    from .models.decoders import check_decoder
    try:
        decoder = MultiBandDiffusion.get_mbd_musicgen(device=device)
    except Exception as exc:  # noqa: BLE001 - not in the cache, no network, unreadable: one line for the user
        raise CLIError(f"--decoder mbd: could not load the MultiBand Diffusion decoder "
                       f"'facebook/multiband-diffusion': {one_line(exc)}") from exc
    try:
        return check_decoder(model, decoder)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--decoder mbd: {one_line(exc)}; drop --decoder mbd or choose a MusicGen model") from exc


def decode_take(decoder: "MultiBandDiffusion", tokens: "torch.Tensor", seed: int) -> "torch.Tensor":
    """Audio ``[C, T]`` of one take's tokens ``[1, K, F]``: the diffusion's noise and dropout drawn from torch's RNG
    seeded with ``seed`` (the global RNG is restored afterwards)."""
    import torch
    devices = [decoder.device] if torch.device(decoder.device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return decoder.tokens_to_wav(tokens)[0]
