"""Web demos of MusicGen (gradio): ``app.py`` (interactive) and ``app_batched.py`` (queued, batched).

The request handling lives in plain functions (``handlers``), testable without gradio; ``ui`` and
``ui_batched`` build the gradio pages and ``launch`` parses the command lines. gradio is imported only by
``ui``/``ui_batched``, never by ``import audiocraft`` or ``import audiocraft.app`` (install the ``app`` extra:
``pip install 'audiocraft[app]'``).
"""
from .errors import AppError

__all__ = ["AppError"]
