"""Backends: how fast a model runs, plugged in from outside the model code.

Model files (``audiocraft/modules``, ``audiocraft/models``) compute the math with plain PyTorch. Speed is added
through three small entry points, so a new backend (a GPU path, a compiled path) fits without touching them:

- **attention**: :class:`~audiocraft.backends.attention.AttentionBackend` computes the attention product of
  :class:`~audiocraft.modules.transformer.StreamingMultiheadAttention` (``'torch'`` SDPA, ``'xformers'``, the CPU
  decoding-step kernel);
- **loading**: :func:`preparing` / :func:`prepare` turn a freshly loaded language model into its inference form for
  the device (CPU: packed linear weights in float32, bf16 or int8 and the native attention, see
  :mod:`audiocraft.backends.cpu`; other devices: a dtype conversion); :func:`prepare_codec` does the same for a
  compression model (CPU: the SEANet decoder run time-major on matrix products, :mod:`audiocraft.backends.cpu.codec`)
  and :func:`prepare_diffusion` for a diffusion U-Net (:mod:`audiocraft.backends.cpu.diffusion`: its convolutions and
  dropouts);
- **threads**: :func:`threads`, the context manager around a generation (CPU: no idle OpenMP pool stays behind).

Importing this package is light: the CPU backend is imported when first used.
"""
from __future__ import annotations

import contextlib
import typing as tp

import torch
from torch import nn

from .attention import ATTENTION_BACKENDS, AttentionBackend, XFormersAttention, get_attention_backend

__all__ = ["ATTENTION_BACKENDS", "AttentionBackend", "XFormersAttention", "get_attention_backend",
           "check_inference_options", "prepare", "prepare_codec", "prepare_diffusion", "preparing", "Preparation",
           "threads"]


ModuleT = tp.TypeVar("ModuleT", bound=nn.Module)


def _on_cpu(device: tp.Union[str, torch.device]) -> bool:
    return torch.device(device).type == "cpu"


def check_inference_options(device: tp.Union[str, torch.device], dtype: tp.Optional[torch.dtype] = None,
                            quantize: tp.Optional[str] = None, pack: bool = True) -> None:
    """Refuse, before anything is loaded, inference options the backend of ``device`` cannot honour.

    Raises:
        TypeError: ``pack`` is not a bool, ``dtype`` not a ``torch.dtype``.
        ValueError: a dtype / quantization the CPU formats lack, or ``quantize`` off the CPU.
    """
    if not isinstance(pack, bool):
        raise TypeError(f"pack must be a bool, got {pack!r}.")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be None or a torch.dtype (torch.float32, torch.bfloat16), got {dtype!r}.")
    if _on_cpu(device):
        from .cpu import weight_format
        weight_format(dtype, quantize)  # refuses what the CPU formats cannot do
    elif quantize is not None:
        raise ValueError(f"quantize={quantize!r} is only implemented for CPU inference; device is {str(device)!r}.")


def prepare(lm: nn.Module, dtype: tp.Optional[torch.dtype] = None, quantize: tp.Optional[str] = None,
            pack: bool = True, release_sources: bool = False) -> nn.Module:
    """Put a language model in its inference form for the device it is on, in place; returns ``lm``.

    CPU: linear weights packed (float32 exact, ``dtype=torch.bfloat16`` or ``quantize='int8'``; ``pack=False``
    keeps float32 weights as they are) and the native decoding-step attention (:mod:`audiocraft.backends.cpu`).
    Other devices: ``dtype`` converts the LM (``lm.to(dtype)``); ``quantize`` is refused.
    """
    device = next(iter(lm.parameters())).device
    check_inference_options(device, dtype, quantize, pack)
    if device.type != "cpu":
        if dtype is not None:
            lm.to(dtype)
        return lm
    from . import cpu
    return cpu.prepare(lm, dtype=dtype, quantize=quantize, pack=pack, release_sources=release_sources)


def prepare_codec(model: nn.Module) -> bool:
    """Put a compression model in its inference form for the device it is on, in place; returns whether anything
    changed. CPU: each SEANet decoder decodes through :mod:`audiocraft.backends.cpu.codec` (same parameters and
    results within float round-off, faster, memory bounded by blocks; training keeps the plain modules). Other
    devices: nothing to do."""
    params = list(model.parameters())
    if not params or not _on_cpu(params[0].device):
        return False
    from .cpu.codec import prepare_decoder
    prepared = False
    for module in list(model.modules()):
        prepared = prepare_decoder(module) or prepared
    return prepared


def prepare_diffusion(model: nn.Module) -> nn.Module:
    """Give a diffusion U-Net (:class:`~audiocraft.models.unet.DiffusionUnet`) the fastest implementation of its
    convolutions and dropouts for the device it is on, in place; returns ``model``. CPU: convolutions as one matrix
    product each and a native dropout drawing torch's own random numbers (:mod:`audiocraft.backends.cpu.diffusion`);
    other devices keep PyTorch's."""
    device = next(iter(model.parameters())).device
    set_ops: tp.Any = getattr(model, "set_ops", None)
    if device.type == "cpu" and set_ops is not None:
        from .cpu.diffusion import NativeDiffusionOps
        set_ops(NativeDiffusionOps())
    return model


class Preparation:
    """What :func:`preparing` yields: hooks for the loader (``on_state_loaded``) and :meth:`prepare`."""

    def __init__(self, stack: contextlib.ExitStack, device: tp.Union[str, torch.device],
                 dtype: tp.Optional[torch.dtype], quantize: tp.Optional[str], pack: bool) -> None:
        self._stack = stack
        self.device = torch.device(device)
        self.dtype, self.quantize, self.pack = dtype, quantize, pack

    def on_state_loaded(self, state: tp.Mapping[str, tp.Any]) -> None:
        """Called by the loader with the LM's state dict as soon as it is read: on CPU with float32 weights to
        pack, packing starts on a background thread while the rest of the model (T5...) is built."""
        if not (self.pack and self.device.type == "cpu" and self.dtype in (None, torch.float32)
                and self.quantize is None):
            return
        from . import cpu
        if cpu.kernels.available():
            self._stack.enter_context(cpu.state_prepacking(state, release_sources=True))

    def prepare(self, lm: nn.Module) -> nn.Module:
        """:func:`prepare` of the loaded LM (its memory-mapped checkpoint pages released once packed)."""
        return prepare(lm, dtype=self.dtype, quantize=self.quantize, pack=self.pack, release_sources=True)

    def prepare_codec(self, model: ModuleT) -> ModuleT:
        """:func:`prepare_codec` of the loaded compression model; returns it."""
        prepare_codec(model)
        return model


@contextlib.contextmanager
def preparing(device: tp.Union[str, torch.device], dtype: tp.Optional[torch.dtype] = None,
              quantize: tp.Optional[str] = None, pack: bool = True) -> tp.Iterator[Preparation]:
    """Load a model for inference inside this block: pass ``preparation.on_state_loaded`` to the LM loader, then
    call ``preparation.prepare(lm)``. Options are checked on entry (:func:`check_inference_options`)."""
    check_inference_options(device, dtype, quantize, pack)
    with contextlib.ExitStack() as stack, threads():
        yield Preparation(stack, device, dtype, quantize, pack)


@contextlib.contextmanager
def threads() -> tp.Iterator[None]:
    """Around a generation (or a load): on exit no idle OpenMP pool of the calling thread stays behind, so work
    on other threads (app requests, a stream's worker) keeps fast parallel regions; on entry likewise, for work
    the block hands to another thread. See :mod:`audiocraft.backends.cpu.threads`."""
    from .cpu.threads import released_threads
    with released_threads():
        yield
