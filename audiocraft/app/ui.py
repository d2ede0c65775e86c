"""The interactive MusicGen app (``app.py``): gradio Blocks around ``handlers.generate_one``."""
from __future__ import annotations

import logging
from pathlib import Path
import typing as tp

import gradio as gr

from ..data.audio import audio_read
from .errors import AppError
from .handlers import MAX_DURATION, MAX_TOP_K, MIN_DURATION, generate_one, validate_request
from .model_cache import ModelCache
from .outputs import OutputFolder
from .waveform import waveform_image

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
INTRO = """# MusicGen
Text-to-music generation with [MusicGen](https://arxiv.org/abs/2306.05284) (Audiocraft-compatible).
Describe the music; with a **melody** model you can also upload or record a melody for it to follow.
Generations longer than 30 s are made in overlapping windows (slower)."""
OFFLINE_NOTE = ("**Offline demo:** tiny random-weight test checkpoints are loaded; "
                "the audio is noise, not music.")
EXAMPLES = [
    ("An 80s driving pop song with heavy drums and synth pads in the background", "bach.mp3",
     "facebook/musicgen-melody"),
    ("A cheerful country song with acoustic guitars", "bolero_ravel.mp3", "facebook/musicgen-melody"),
    ("90s rock song with electric guitar and heavy drums", None, "facebook/musicgen-small"),
    ("lofi slow bpm electro chill with organic samples", None, "facebook/musicgen-small"),
]


def unexpected_error(exc: BaseException) -> gr.Error:
    """A readable page message for a failure that is not the user's doing (the traceback goes to the log)."""
    logger.exception("generation failed")
    return gr.Error(f"Generation failed ({type(exc).__name__}: {exc}). The server is still running; "
                    "try again or with other settings.")


def make_predict(cache: ModelCache, output: OutputFolder, models: tp.Sequence[str]) -> tp.Callable[..., tp.Any]:
    """The click handler: form values -> (audio file path, waveform picture)."""

    def predict(model: str, text: str, melody: tp.Optional[str], duration: float, top_k: float, top_p: float,
                temperature: float, cfg_coef: float, progress: gr.Progress = gr.Progress()) -> tp.Tuple[str, tp.Any]:
        try:
            request = validate_request(model, text, melody, duration, top_k, top_p, temperature, cfg_coef,
                                       models=models)
            progress(0.0, desc=f"Loading {request.model}" if cache.loaded_name != request.model else "Starting")

            def on_step(done: int, total: int) -> None:
                progress((min(done, total), total), desc="Generating", unit="steps")

            result = generate_one(cache, request, on_step)
            for warning in result.warnings:
                gr.Warning(warning)
            path = output.write_audio(result.wav, result.sample_rate)
            # Picture what is played: the loudness-normalised file, not the raw model output.
            played, sample_rate = audio_read(path)
            return str(path), waveform_image(played, sample_rate)
        except AppError as exc:
            raise gr.Error(str(exc)) from exc
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - keep serving; show what happened
            raise unexpected_error(exc) from exc

    return predict


def build_app(cache: ModelCache, output: OutputFolder, *, models: tp.Sequence[str], default_model: str,
              default_duration: float = 10.0, offline: bool = False, concurrency_limit: tp.Optional[int] = 1
              ) -> gr.Blocks:
    """Build the interactive app (call ``.queue(...).launch(...)`` on the result)."""
    if default_model not in models:
        raise ValueError(f"default_model must be one of {list(models)}, got {default_model!r}.")
    predict = make_predict(cache, output, models)
    with gr.Blocks(title="MusicGen", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO + ("\n\n" + OFFLINE_NOTE if offline else ""))
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    text = gr.Textbox(label="Describe your music", lines=3, elem_id="prompt",
                                      placeholder="e.g. lofi slow bpm electro chill with organic samples")
                    melody = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="melody",
                                      label="Melody to follow (optional, melody model only)")
                submit = gr.Button("Generate", variant="primary", elem_id="generate")
                model = gr.Radio(list(models), value=default_model, label="Model", elem_id="model")
                duration = gr.Slider(MIN_DURATION, MAX_DURATION, value=default_duration, step=1,
                                     label="Duration (seconds)", elem_id="duration")
                with gr.Row():
                    top_k = gr.Number(250, label="Top-k", precision=0, elem_id="top_k",
                                      info=f"0 to {MAX_TOP_K}")
                    top_p = gr.Number(0.0, label="Top-p", elem_id="top_p", info="0 to 1; 0 = off")
                    temperature = gr.Number(1.0, label="Temperature", elem_id="temperature")
                    cfg_coef = gr.Number(3.0, label="Classifier-free guidance", elem_id="cfg_coef")
            with gr.Column():
                audio_out = gr.Audio(label="Generated music", type="filepath", interactive=False,
                                     elem_id="output_audio")
                picture = gr.Image(label="Waveform", type="pil", interactive=False, elem_id="waveform")
        inputs = [model, text, melody, duration, top_k, top_p, temperature, cfg_coef]
        submit.click(predict, inputs=inputs, outputs=[audio_out, picture], concurrency_limit=concurrency_limit,
                     concurrency_id="generate", api_name="predict")
        examples = [[t, None if m is None else str(ASSETS / m), name] for t, m, name in EXAMPLES
                    if name in models and (m is None or (ASSETS / m).is_file())]
        if examples:
            gr.Examples(examples, inputs=[text, melody, model], label="Examples")
        gr.Markdown("Audio made here is normalised for loudness. Top-p > 0 replaces top-k sampling; "
                    "higher guidance follows the text more closely.")
    return demo
