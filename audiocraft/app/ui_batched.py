"""The batched MusicGen app (``app_batched.py``): one fixed melody model, requests queued and run in batches.

Each click first runs a quick per-user check (so one user's bad input shows an error to that user only),
then joins the batched generation event (``batch=True``): gradio gathers up to ``max_batch_size`` waiting
requests into one ``generate_with_chroma`` call.
"""
from __future__ import annotations

import logging
import typing as tp

import gradio as gr

from .errors import AppError
from .handlers import generate_batch, validate_batch_item
from .model_cache import ModelCache
from .outputs import OutputFolder
from .page import melody_input, page, page_errors, prompt_input, take_output

logger = logging.getLogger(__name__)

INTRO = """# MusicGen (batched)
Text-to-music with {model}: requests are queued and generated together in batches of up to {batch}.
Describe the music and/or upload or record a melody to follow. Each clip is {duration:g} s long."""


def make_check(duration: float) -> tp.Callable[[str, tp.Optional[str]], None]:
    """The per-user check run before a request joins the batch queue."""

    def check(text: str, melody: tp.Optional[str]) -> None:
        with page_errors():
            validate_batch_item(text, melody, duration)

    return check


def make_predict_batched(cache: ModelCache, output: OutputFolder, model_name: str, duration: float
                         ) -> tp.Callable[[tp.List[str], tp.List[tp.Optional[str]]],
                                          tp.List[tp.List[tp.Optional[str]]]]:
    """The batched handler: lists of texts and melody paths -> ``[list of audio paths (None: rejected)]``."""

    def predict_batched(texts: tp.List[str], melodies: tp.List[tp.Optional[str]]
                        ) -> tp.List[tp.List[tp.Optional[str]]]:
        # Page users were checked one by one before queueing; API callers may skip that step, so a bad item
        # gets no audio (None) instead of failing everyone else's requests in the batch.
        accepted = []
        for index, (text, melody) in enumerate(zip(texts, melodies)):
            try:
                accepted.append((index, *validate_batch_item(text, melody, duration)))
            except AppError as exc:
                logger.warning("batch item %d rejected: %s", index, exc)
        logger.info("generating a batch of %d (%d rejected)", len(accepted), len(texts) - len(accepted))
        results: tp.List[tp.Optional[str]] = [None] * len(texts)
        if not accepted:
            return [results]
        with page_errors():
            wavs, sample_rate = generate_batch(cache, model_name, [text for _, text, _ in accepted],
                                               [melody for _, _, melody in accepted], duration)
            for (index, _, _), wav in zip(accepted, wavs):
                results[index] = str(output.write_audio(wav, sample_rate))
        return [results]

    return predict_batched


def build_batched_app(cache: ModelCache, output: OutputFolder, *, model_name: str, duration: float,
                      max_batch_size: int = 12, offline: bool = False) -> gr.Blocks:
    """Build the batched app (call ``.queue(...).launch(...)`` on the result)."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
    check = make_check(duration)
    predict = make_predict_batched(cache, output, model_name, duration)
    intro = INTRO.format(model=model_name, batch=max_batch_size, duration=duration)
    with page("MusicGen (batched)", intro, offline) as demo:
        with gr.Row():
            with gr.Column():
                text = prompt_input(2, "e.g. An 80s driving pop song with heavy drums")
                melody = melody_input("Melody to follow (optional)")
                submit = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                audio_out = take_output()
        submit.click(check, inputs=[text, melody], outputs=None, concurrency_limit=None, api_name="check") \
            .success(predict, inputs=[text, melody], outputs=[audio_out], batch=True,
                     max_batch_size=max_batch_size, concurrency_limit=1, concurrency_id="generate",
                     api_name="predict")
    return demo
