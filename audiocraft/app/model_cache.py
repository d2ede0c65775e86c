"""Lazy, thread-safe model loading for the apps: one model in memory at a time."""
from __future__ import annotations

import contextlib
import gc
import threading
import typing as tp

from .errors import AppError

if tp.TYPE_CHECKING:  # pragma: no cover
    from ..models.multibanddiffusion import MultiBandDiffusion
    from ..models.musicgen import MusicGen

Loader = tp.Callable[[str], "MusicGen"]
DiffusionLoader = tp.Callable[[], "MultiBandDiffusion"]


class ModelCache:
    """Loads a model the first time it is asked for and keeps it until another one is asked for.

    MusicGen checkpoints take gigabytes, so only the last model stays in memory. ``use(name)`` is a context
    manager holding a lock for the whole generation: the model's generation parameters and progress
    callback are per-model state, so two requests must not interleave on the same model.

    Args:
        device: ``'cuda'``, ``'cpu'`` or None (cuda when available).
        stem_separation: passed to ``MusicGen.get_pretrained`` (melody models isolate the melody with demucs).
        loader: replaces ``MusicGen.get_pretrained`` (tests use it to count loads or inject a stand-in).
        diffusion_loader: replaces ``MultiBandDiffusion.get_mbd_musicgen`` (see :meth:`diffusion`).
    """

    def __init__(self, device: tp.Optional[str] = None, stem_separation: bool = True,
                 loader: tp.Optional[Loader] = None, diffusion_loader: tp.Optional[DiffusionLoader] = None) -> None:
        self.device = device
        self.stem_separation = stem_separation
        self._loader = loader
        self._diffusion_loader = diffusion_loader
        self._diffusion: tp.Optional["MultiBandDiffusion"] = None
        self._lock = threading.RLock()
        self._name: tp.Optional[str] = None
        self._model: tp.Optional["MusicGen"] = None
        self.loads = 0

    @property
    def loaded_name(self) -> tp.Optional[str]:
        """Name of the model in memory (None before the first request)."""
        return self._name

    def _load(self, name: str) -> "MusicGen":
        if self._loader is not None:
            return self._loader(name)
        from ..models.musicgen import MusicGen  # lazy: keeps `import audiocraft.app` light

        return MusicGen.get_pretrained(name, device=self.device, stem_separation=self.stem_separation)

    def _get(self, name: str) -> "MusicGen":
        if self._name != name or self._model is None:
            if self._model is not None:
                # Free the previous model before loading the next one: two large models may not fit together.
                self._model = None
                self._name = None
                gc.collect()
                import torch
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            try:
                model = self._load(name)
            except Exception as exc:  # noqa: BLE001 - any loading failure becomes a message in the page
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise AppError(f"Could not load the model '{name}': {first_line}") from exc
            self._model = model
            self._name = name
            self.loads += 1
        return self._model

    @property
    def diffusion_loaded(self) -> bool:
        """Whether the MultiBand Diffusion decoder is in memory."""
        return self._diffusion is not None

    def diffusion(self, model: tp.Any) -> "MultiBandDiffusion":
        """The MultiBand Diffusion decoder of MusicGen (loaded on first use, then kept beside the model), checked
        against ``model``'s tokens. Failures are ``AppError`` s for the page."""
        from ..models.decoders import check_decoder
        with self._lock:
            if self._diffusion is None:
                try:
                    if self._diffusion_loader is not None:
                        self._diffusion = self._diffusion_loader()
                    else:
                        from ..models.multibanddiffusion import MultiBandDiffusion
                        self._diffusion = MultiBandDiffusion.get_mbd_musicgen(device=self.device)
                except Exception as exc:  # noqa: BLE001 - any loading failure becomes a message in the page
                    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise AppError(f"Could not load the MultiBand Diffusion decoder: {first_line}") from exc
            decoder = self._diffusion
        try:
            return tp.cast("MultiBandDiffusion", check_decoder(model, decoder))
        except (TypeError, ValueError) as exc:
            raise AppError(f"MultiBand Diffusion cannot decode this model: {exc}") from exc

    @contextlib.contextmanager
    def use(self, name: str) -> tp.Iterator["MusicGen"]:
        """Hold the model ``name`` (loading it if needed) for the duration of the ``with`` block."""
        with self._lock:
            yield self._get(name)
