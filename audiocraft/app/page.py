"""What both gradio pages share: the page frame, the input and output components, and error reporting.

A user's mistake (``AppError``) becomes a page message and one log line; anything else becomes a readable page
message with its traceback in the log. Either way the server keeps serving.
"""
from __future__ import annotations

import contextlib
import logging
import typing as tp

import gradio as gr

from .errors import AppError

logger = logging.getLogger(__name__)

OFFLINE_NOTE = ("**Offline demo:** tiny random-weight test checkpoints are loaded; "
                "the audio is noise, not music.")


def user_error(exc: AppError) -> gr.Error:
    """The page message for a mistake the user can fix: logged in one line, no traceback."""
    logger.info("request refused: %s", exc)
    return gr.Error(str(exc), print_exception=False)


def unexpected_error(exc: BaseException) -> gr.Error:
    """A readable page message for a failure that is not the user's doing (the traceback goes to the log)."""
    logger.exception("generation failed")
    return gr.Error(f"Generation failed ({type(exc).__name__}: {exc}). The server is still running; "
                    "try again or with other settings.", print_exception=False)


@contextlib.contextmanager
def page_errors() -> tp.Iterator[None]:
    """Turn what a request can raise into page messages: ``AppError`` as it is, anything else as an unexpected
    error (the server keeps serving)."""
    try:
        yield
    except AppError as exc:
        raise user_error(exc) from exc
    except gr.Error:
        raise
    except Exception as exc:  # noqa: BLE001 - keep serving; show what happened
        raise unexpected_error(exc) from exc


@contextlib.contextmanager
def page(title: str, intro: str, offline: bool) -> tp.Iterator[gr.Blocks]:
    """The page (``gr.Blocks``) with its introduction; build the rest inside the ``with`` block."""
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(intro + ("\n\n" + OFFLINE_NOTE if offline else ""))
        yield demo


def prompt_input(lines: int, placeholder: str) -> gr.Textbox:
    return gr.Textbox(label="Describe your music", lines=lines, elem_id="prompt", placeholder=placeholder)


def melody_input(label: str) -> gr.Audio:
    return gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="melody", label=label)


def take_output() -> gr.Audio:
    """The player of the finished take."""
    return gr.Audio(label="Generated music", type="filepath", interactive=False, elem_id="output_audio")
