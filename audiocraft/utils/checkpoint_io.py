"""Safe checkpoint reading: every load is ``torch.load(path, map_location='cpu', weights_only=True)`` (memory-mapped
for zip archives).

Errors name the file and say what is wrong: a file that would run code (or holds objects other than tensors
and plain containers), a truncated or corrupted file, unexpected content, or a state dict that does not
match the model (missing / unexpected keys, wrong shapes).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
import pickle
import typing as tp

import torch
from torch import nn


def _private_file_mappings() -> tp.List[tp.Tuple[int, int]]:
    """``(start, end)`` of this process's private file mappings (Linux; empty elsewhere)."""
    maps = Path("/proc/self/maps")
    regions: tp.List[tp.Tuple[int, int]] = []
    try:
        text = maps.read_text()
    except OSError:
        return regions
    for line in text.splitlines():  # start-end perms offset dev inode [path]
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/") and fields[1][3:4] == "p":
            start, end = (int(v, 16) for v in fields[0].split("-"))
            regions.append((start, end))
    return regions


class FilePages:
    """Releases the memory pages of tensors mapped from a file (a checkpoint loaded memory-mapped by
    :func:`safe_torch_load`) once their data has been copied elsewhere (e.g. packed): the pages leave this
    process but stay in the page cache, so a tensor still in use would read the file's data again. Only use it
    for tensors never modified in memory; anonymous memory is never touched. The mappings are read once, at
    construction. Linux only (elsewhere :meth:`release` does nothing)."""

    def __init__(self) -> None:
        import ctypes
        import mmap
        self._regions = sorted(_private_file_mappings())
        self._page = mmap.PAGESIZE
        self._madvise: tp.Optional[tp.Callable[..., int]] = None
        if self._regions:
            try:
                self._madvise = ctypes.CDLL(None, use_errno=True).madvise
            except (OSError, AttributeError):
                self._regions = []

    def is_file_mapped(self, tensor: torch.Tensor) -> bool:
        """Whether all of ``tensor``'s data lies in a private file mapping (as read at construction)."""
        if tensor.device.type != "cpu" or not tensor.is_contiguous() or not tensor.numel():
            return False
        first = tensor.data_ptr()
        last = first + tensor.numel() * tensor.element_size()
        return any(start <= first and last <= end for start, end in self._regions)

    def release(self, tensors: tp.Iterable[torch.Tensor]) -> int:
        """Release the file-mapped whole pages inside each tensor; returns the bytes released by this call."""
        import ctypes
        done = 0
        for tensor in tensors:
            if not self.is_file_mapped(tensor):
                continue
            first = tensor.data_ptr()
            last = first + tensor.numel() * tensor.element_size()
            lo, hi = -(-first // self._page) * self._page, last // self._page * self._page
            if hi > lo and self._madvise is not None and \
                    self._madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4) == 0:  # MADV_DONTNEED
                done += hi - lo
        return done


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, unsafe, or not the expected content."""


def _detail(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "unsupported" in line.lower() or "blocked" in line.lower():
            return line
    return f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _head(path: Path) -> tp.Optional[bytes]:
    """The first two bytes of ``path`` (None if it cannot be read)."""
    try:
        with open(path, "rb") as file:
            return file.read(2)
    except OSError:
        return None


def _is_garbage(path: Path) -> bool:
    """True when ``path`` starts like no torch checkpoint: neither a zip archive (``PK``) nor a pickle of protocol
    >= 2 (legacy format, or a bare pickle, which stays 'refused': it may hold code)."""
    head = _head(path)
    return head is not None and not (head == b"PK" or head[:1] == b"\x80")


def _global_name(obj: tp.Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', obj))}"


def _allowing(allowed_globals: tp.Sequence[tp.Any]) -> tp.ContextManager[tp.Any]:
    """Context in which ``torch.load(weights_only=True)`` also accepts ``allowed_globals`` (torch >= 2.5)."""
    if not allowed_globals:
        return contextlib.nullcontext()
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        raise CheckpointError(f"loading this checkpoint safely needs torch >= 2.5 (torch.serialization."
                              f"safe_globals), found torch {torch.__version__}")
    return safe_globals(list(allowed_globals))


def safe_torch_load(path: tp.Union[str, Path], allowed_globals: tp.Sequence[tp.Any] = ()) -> tp.Any:
    """Load ``path`` with ``torch.load(..., map_location='cpu', weights_only=True)``.

    ``allowed_globals``: classes (data containers only, e.g. omegaconf's config nodes) that this file may also
    hold, allowed for this load only (``torch.serialization.safe_globals``); anything else is still refused.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file holds objects ``weights_only`` refuses (e.g. code run on unpickling), or it is
            truncated / corrupted / not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}'")
    allowing = _allowing(allowed_globals)
    try:
        # zip archives (torch >= 1.6) are memory-mapped: tensors are read from the page cache as they are used,
        # without a copy; legacy files are read whole
        with allowing:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=_head(path) == b"PK")
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower() and not _is_garbage(path):
            extra = "".join(f", {_global_name(g)}" for g in allowed_globals
                            if getattr(g, "__module__", "") not in ("builtins", "typing", "collections"))
            raise CheckpointError(
                f"refused to load '{path}': it contains Python objects that torch.load(weights_only=True) does "
                f"not allow, which could run code when unpickled ({_detail(err)}). Only tensors and plain "
                f"containers{extra} are accepted; re-export the checkpoint or use a file from a trusted "
                "source.") from err
        raise CheckpointError(f"could not read '{path}': the file is truncated, corrupted or not a torch "
                              f"checkpoint ({_detail(err)})") from err
    except PermissionError:
        raise
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, IndexError, TypeError,
            AttributeError) as err:
        raise CheckpointError(f"could not read '{path}': the file is truncated, corrupted or not a torch "
                              f"checkpoint ({_detail(err)})") from err


def _few(items: tp.Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).replace("torch.", "")


def _castable(value: torch.Tensor, target: torch.Tensor) -> bool:
    """Same dtype, or both floating point (cast to the model's): an integer, bool or complex tensor for a float
    parameter (or the reverse) is refused."""
    return value.dtype == target.dtype or (value.is_floating_point() and target.is_floating_point())


def load_state_dict_checked(model: nn.Module, state: tp.Any, source: str, assign: bool = True) -> None:
    """Strictly load ``state`` into ``model`` after checking every key and shape.

    With ``assign`` the checkpoint tensors become the model's tensors (no copy; the model may live on the
    ``meta`` device; floating point tensors are first cast to the model's dtype), else they are copied into the
    existing ones. Nothing is loaded when a check fails.

    Raises:
        CheckpointError: ``state`` is not a mapping of tensors, or keys are missing / unexpected, or shapes
            differ, or dtypes are incompatible (all listed, with ``source`` named; floating point tensors of
            another precision are fine: they are cast).
    """
    if not isinstance(state, tp.Mapping):
        raise CheckpointError(f"{source}: the state dict must be a mapping of tensors, got {type(state).__name__}")
    expected = model.state_dict(keep_vars=True)
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    wrong_shapes = [f"{k} {list(state[k].shape)} (model {list(v.shape)})" for k, v in expected.items()
                    if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    wrong_dtypes = [f"{k} {_dtype_name(state[k])} (model {_dtype_name(v)})" for k, v in expected.items()
                    if k in state and isinstance(state[k], torch.Tensor) and not _castable(state[k], v)]
    problems = []
    if not_tensors:
        problems.append(f"{len(not_tensors)} non-tensor value(s): {_few(not_tensors)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_few(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
    if wrong_shapes:
        problems.append(f"{len(wrong_shapes)} shape mismatch(es): {_few(wrong_shapes)}")
    if wrong_dtypes:
        problems.append(f"{len(wrong_dtypes)} dtype mismatch(es): {_few(wrong_dtypes)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model {type(model).__name__}: " + "; ".join(problems))
    if not assign:
        model.load_state_dict(state, strict=True)
        return
    converted = {}
    for key, target in expected.items():
        value = state[key]
        if value.is_floating_point() and target.is_floating_point() and value.dtype != target.dtype:
            value = value.to(target.dtype)
        converted[key] = value
    model.load_state_dict(converted, strict=True, assign=True)
