"""Small input validators shared by the public API.

Each raises ``TypeError`` or ``ValueError`` whose message names the argument, the value received and
what is allowed, so that a user can act on it without reading a traceback.
"""
from __future__ import annotations

import math
import numbers
import typing as tp

import torch


class ArgumentError(ValueError, AssertionError):
    """A bad argument value (the message names the argument, the value and what is allowed).

    A ``ValueError``, and also an ``AssertionError``: Audiocraft checks arguments with ``assert``, so code written
    against it catches ``AssertionError``; both keep working."""


class ArgumentTypeError(TypeError, AssertionError):
    """An argument of the wrong type: a ``TypeError``, also catchable as ``AssertionError`` (see
    :class:`ArgumentError`)."""


def _short(value: tp.Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={list(value.shape)}, dtype={value.dtype})"
    try:
        text = repr(value)
    except ValueError:  # e.g. an int with more digits than Python converts to text
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= 80 else text[:77] + "..."


def check_number(name: str, value: tp.Any, *, minimum: tp.Optional[float] = None,
                 maximum: tp.Optional[float] = None, strict_min: bool = False,
                 integer: bool = False, allow_none: bool = False) -> tp.Any:
    """Check that ``value`` is a finite real number (an int if ``integer``) within the given bounds."""
    if value is None and allow_none:
        return value
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
            integer and not isinstance(value, numbers.Integral)):
        raise ArgumentTypeError(f"{name} must be {kind}, got {_short(value)} ({type(value).__name__}).")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range (e.g. 10 ** 400)
        raise ArgumentError(f"{name} must be a finite number, got {_short(value)} (too large).") from None
    if not math.isfinite(number):
        raise ArgumentError(f"{name} must be finite, got {value}.")
    if minimum is not None:
        if strict_min and not number > minimum:
            raise ArgumentError(f"{name} must be > {minimum}, got {value}.")
        if not strict_min and not number >= minimum:
            raise ArgumentError(f"{name} must be >= {minimum}, got {value}.")
    if maximum is not None and not number <= maximum:
        raise ArgumentError(f"{name} must be <= {maximum}, got {value}.")
    return value


def check_bool(name: str, value: tp.Any) -> bool:
    """A real ``bool`` (not 0/1 or a truthy object)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a bool, got {_short(value)} ({type(value).__name__}).")
    return value


def check_descriptions(name: str, value: tp.Any) -> tp.List[tp.Optional[str]]:
    """A list (or tuple) of ``str | None``; returns it as a list."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ArgumentTypeError(f"{name} must be a list of str or None (one per sample), got {_short(value)} "
                                f"({type(value).__name__}).")
    if len(value) == 0:
        raise ArgumentError(f"{name} must contain at least one item, got an empty list.")
    for i, item in enumerate(value):
        if item is not None and not isinstance(item, str):
            raise ArgumentTypeError(f"{name}[{i}] must be a str or None, got {_short(item)} ({type(item).__name__}).")
        if item is not None:
            check_text(f"{name}[{i}]", item)
    return list(value)


def check_text(name: str, text: str) -> str:
    """A str that is valid Unicode text (UTF-8 encodable: no unpaired surrogates such as ``'\\ud800'``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArgumentError(f"{name} is not valid Unicode text: {exc.reason} at position {exc.start} "
                            f"({text[exc.start:exc.end]!r}); only UTF-8 encodable text is allowed.") from None
    return text


def check_waveform(name: str, wav: tp.Any, *, dims: tp.Sequence[int] = (2, 3),
                   channels: tp.Optional[int] = None, min_length: int = 1) -> torch.Tensor:
    """A floating point tensor with ``dim()`` in ``dims``, finite, at least ``min_length`` samples long."""
    if not isinstance(wav, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {_short(wav)} ({type(wav).__name__}).")
    if wav.dim() not in dims:
        shapes = " or ".join({1: "[T]", 2: "[C, T]", 3: "[B, C, T]"}.get(d, f"{d}-D") for d in dims)
        raise ArgumentError(f"{name} must have shape {shapes}, got shape {list(wav.shape)}.")
    if not wav.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating point tensor, got dtype {wav.dtype}.")
    if wav.shape[-1] < min_length:
        raise ArgumentError(f"{name} must have at least {min_length} samples, got shape {list(wav.shape)}.")
    if channels is not None and wav.dim() >= 2 and wav.shape[-2] != channels:
        raise ArgumentError(f"{name} must have {channels} channel(s) (dim -2), got shape {list(wav.shape)}.")
    if not torch.isfinite(wav).all():
        raise ArgumentError(f"{name} contains NaN or infinite values.")
    return wav


def check_tokens(name: str, tokens: tp.Any, num_codebooks: int, cardinality: int) -> torch.Tensor:
    """Integer codes ``[B, K, T]`` with K == ``num_codebooks`` and values in ``[0, cardinality)``."""
    if not isinstance(tokens, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor of codes [B, K, T], got {type(tokens).__name__}.")
    if tokens.dim() != 3:
        raise ArgumentError(f"{name} must have shape [B, K, T], got shape {list(tokens.shape)}.")
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        raise ArgumentTypeError(f"{name} must be an integer tensor, got dtype {tokens.dtype}.")
    if tokens.shape[0] == 0:
        raise ArgumentError(f"{name} must hold at least one item (dim 0), got shape {list(tokens.shape)}.")
    if tokens.shape[1] != num_codebooks:
        raise ArgumentError(f"{name} must have {num_codebooks} codebooks (dim 1), got shape {list(tokens.shape)}.")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cardinality):
        raise ArgumentError(f"{name} values must be in [0, {cardinality}), got min {int(tokens.min())} "
                            f"and max {int(tokens.max())}.")
    return tokens
