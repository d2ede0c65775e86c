"""Streaming modules: explicit, typed state for step-by-step inference.

A streaming module remembers something between calls while it is inside a ``streaming()`` context: a
convolution keeps the tail of its input, an attention layer keeps its key/value cache. Each subclass
declares what it remembers as a small dataclass (its ``State``) and builds it in ``_init_streaming_state``
on first use, from the batch it sees. Entering ``streaming()`` on any module switches every streaming
descendant on; leaving it drops every state. The API is Audiocraft's::

    with model.streaming():
        for chunk in chunks:
            out = model(chunk)

``get_streaming_state()`` flattens the states of the whole tree to ``{"<module path>.<field>": tensor}``
(ints as 0-d tensors) and ``set_streaming_state()`` puts such a dict back, or a clone of it (missing modules
start fresh), which is what two-step classifier-free guidance uses to keep two independent caches.
"""
from __future__ import annotations

from contextlib import contextmanager
import dataclasses
import typing as tp

from torch import nn
import torch


class StreamingError(RuntimeError):
    """Raised when a streaming module is misused (e.g. nested ``streaming()`` contexts)."""


@dataclasses.dataclass
class StreamingState:
    """Base class of the per-module streaming states. Subclasses are dataclasses of tensors and ints."""

    def fields(self) -> tp.Dict[str, tp.Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_tensors(self) -> tp.Dict[str, torch.Tensor]:
        """The fields as tensors (ints and bools as 0-d tensors; None fields left out): a view a caller can
        clone and give back to :meth:`from_tensors`."""
        return {name: value if isinstance(value, torch.Tensor) else torch.tensor(value)
                for name, value in self.fields().items() if value is not None}

    @classmethod
    def from_tensors(cls, values: tp.Mapping[str, tp.Any]) -> "StreamingState":
        """The state of ``values`` (as :meth:`to_tensors` gives them): scalar fields back to Python numbers,
        absent fields at their default (or None)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise StreamingError(f"Unknown fields {unknown} for {cls.__name__}.")
        kwargs: tp.Dict[str, tp.Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                value = values[f.name]
                scalar = _SCALARS.get(str(f.type))
                kwargs[f.name] = scalar(value.item()) if scalar and isinstance(value, torch.Tensor) else value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                kwargs[f.name] = None
        return cls(**kwargs)


_SCALARS: tp.Dict[str, tp.Callable[[tp.Any], tp.Any]] = {"int": int, "bool": bool, "float": float}


StateT = tp.TypeVar("StateT", bound=StreamingState)


class StreamingModule(nn.Module, tp.Generic[StateT]):
    """Base class of every module that can run step by step.

    Subclasses set ``state_cls`` to their state dataclass and override ``_init_streaming_state`` to build
    it from the first input seen in streaming mode. In ``forward`` they read ``self._streaming_state``
    (``None`` until built) and call ``self._get_or_init_state(...)``.
    """

    state_cls: tp.Optional[tp.Type[StreamingState]] = None

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: tp.Optional[StateT] = None
        self._is_streaming = False

    # ---- tree helpers -------------------------------------------------------------------------
    def _streaming_modules(self) -> tp.Iterator[tp.Tuple[str, "StreamingModule"]]:
        for name, module in self.named_modules():
            if isinstance(module, StreamingModule):
                yield name, module

    @property
    def is_streaming(self) -> bool:
        return self._is_streaming

    # ---- state construction, to override ------------------------------------------------------
    def _init_streaming_state(self, *args: tp.Any, **kwargs: tp.Any) -> StateT:
        raise NotImplementedError(f"{type(self).__name__} does not define its streaming state.")

    def _get_or_init_state(self, *args: tp.Any, **kwargs: tp.Any) -> StateT:
        """Return the current state, building it with ``_init_streaming_state(*args)`` the first time."""
        if not self._is_streaming:
            raise StreamingError(f"{type(self).__name__} is not in streaming mode; use `with module.streaming():`.")
        if self._streaming_state is None:
            self._streaming_state = self._init_streaming_state(*args, **kwargs)
        return self._streaming_state

    # ---- public API (Audiocraft) --------------------------------------------------------------
    def _set_streaming(self, streaming: bool) -> None:
        for _, module in self._streaming_modules():
            module._is_streaming = streaming
            module._streaming_state = None

    @contextmanager
    def streaming(self) -> tp.Iterator[None]:
        """Context in which this module and its streaming children keep state between calls."""
        for name, module in self._streaming_modules():
            if module._is_streaming:
                where = name or type(self).__name__
                raise StreamingError(f"Module '{where}' ({type(module).__name__}) is already streaming; "
                                     "streaming() contexts cannot be nested.")
        self._set_streaming(True)
        try:
            yield
        finally:
            self._set_streaming(False)

    def reset_streaming(self) -> None:
        """Drop every streaming state in the tree (streaming mode, if on, stays on)."""
        for _, module in self._streaming_modules():
            module._streaming_state = None

    def get_streaming_state(self) -> tp.Dict[str, torch.Tensor]:
        """The states of the whole tree as one flat dict of tensors, ``{"<module path>.<field>": tensor}`` (as
        Audiocraft's): a copy-free view; clone the tensors to keep a snapshot and replay a step exactly with
        :meth:`set_streaming_state`."""
        out: tp.Dict[str, torch.Tensor] = {}
        for name, module in self._streaming_modules():
            state = module._streaming_state
            if state is None:
                continue
            prefix = f"{name}." if name else ""
            for key, value in state.to_tensors().items():
                out[prefix + key] = value
        return out

    def set_streaming_state(self, state: tp.Mapping[str, tp.Any]) -> None:
        """Restore states from ``get_streaming_state()``'s output (or a clone of it); modules absent from it
        start fresh."""
        state = dict(state)
        for name, module in self._streaming_modules():
            prefix = f"{name}." if name else ""
            fields = {}
            for key in list(state.keys()):
                rest = key[len(prefix):] if key.startswith(prefix) else None
                if rest is not None and "." not in rest:
                    fields[rest] = state.pop(key)
            if not fields:
                module._streaming_state = None
                continue
            if module.state_cls is None:
                raise StreamingError(f"Module '{name}' ({type(module).__name__}) has no state_cls to restore.")
            module._streaming_state = module.state_cls.from_tensors(fields)  # type: ignore[assignment]
        if state:
            raise StreamingError(f"Unknown streaming state keys: {sorted(state)}")

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """Flush pending output at the end of a stream. Default: run ``forward`` on ``x`` if given."""
        if x is None:
            return None
        return self(x)


class StreamingSequential(StreamingModule, nn.Sequential):  # type: ignore[misc]
    """A ``nn.Sequential`` whose children may stream; ``flush`` flushes each in order."""

    def __init__(self, *modules: nn.Module) -> None:
        nn.Sequential.__init__(self, *modules)
        self._streaming_state = None
        self._is_streaming = False

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        for module in self:
            if isinstance(module, StreamingModule):
                x = module.flush(x)
            elif x is not None:
                x = module(x)
        return x
