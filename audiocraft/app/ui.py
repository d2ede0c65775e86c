"""The interactive MusicGen app (``app.py``): gradio Blocks around ``handlers.generate_one``."""
from __future__ import annotations

import logging
from pathlib import Path
import typing as tp

import gradio as gr

from ..data.audio import audio_read
from .aac import AdtsEncoder
from .errors import AppError
from .handlers import (DEFAULT_DECODER, MAX_DURATION, MAX_TOP_K, MBD_DECODER, MIN_DURATION, GenerationResult,
                       generate_one, validate_request)
from .model_cache import ModelCache
from .outputs import OutputFolder
from .page import melody_input, page, page_errors, prompt_input, take_output
from .player import StreamingAudio
from .running import RunningRequests
from .stream import stream_one
from .waveform import waveform_image

logger = logging.getLogger(__name__)

STREAM_CHUNK_SECONDS = 1.0  # audio per live-player segment
STREAM_FIRST_CHUNK_SECONDS = 0.5  # the first segment: shorter, so that playback starts sooner

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
INTRO = """# MusicGen
Text-to-music generation with [MusicGen](https://arxiv.org/abs/2306.05284) (Audiocraft-compatible).
Describe the music; with a **melody** model you can also upload or record a melody for it to follow.
Generations longer than 30 s are made in overlapping windows (slower). The **MultiBand Diffusion** decoder
([MBD](https://arxiv.org/abs/2308.02560)) turns the same tokens into higher-quality audio, at a much higher cost;
the EnCodec take is shown beside it."""
DECODER_CHOICES = [("Default (EnCodec)", DEFAULT_DECODER), ("MultiBand Diffusion", MBD_DECODER)]
EXAMPLES = [
    ("An 80s driving pop song with heavy drums and synth pads in the background", "bach.mp3",
     "facebook/musicgen-melody"),
    ("A cheerful country song with acoustic guitars", "bolero_ravel.mp3", "facebook/musicgen-melody"),
    ("90s rock song with electric guitar and heavy drums", None, "facebook/musicgen-small"),
    ("lofi slow bpm electro chill with organic samples", None, "facebook/musicgen-small"),
]


def _picture_of(path: Path) -> tp.Any:
    # Picture what is played: the loudness-normalised file, not the raw model output.
    played, sample_rate = audio_read(path)
    return waveform_image(played, sample_rate)


def _finish(output: OutputFolder, result: GenerationResult) -> tp.Tuple[tp.Optional[str], tp.Any]:
    """Warnings to the page, the take to a file: (file path, waveform picture), or (None, None) if empty."""
    for warning in result.warnings:
        gr.Warning(warning)
    if result.wav.shape[-1] == 0:
        if result.stopped:
            gr.Warning("Stopped before any audio was generated.")
            return None, None
        raise AppError("The model returned no audio; try again or with other settings.")
    if result.stopped:
        gr.Info(f"Stopped: kept the first {result.wav.shape[-1] / result.sample_rate:.1f} s.")
    path = output.write_audio(result.wav, result.sample_rate)
    return str(path), _picture_of(path)


def _diffusion_file(output: OutputFolder, result: GenerationResult) -> tp.Optional[str]:
    """The MultiBand Diffusion take written to a file (None without one)."""
    if result.diffusion is None or result.diffusion.shape[-1] == 0:
        return None
    return str(output.write_audio(result.diffusion, result.sample_rate))


def _progress_steps(cache: ModelCache, model: str, progress: gr.Progress) -> tp.Callable[[int, int], None]:
    """Show 'Loading' or 'Starting' now; returns the per-step callback that moves the page's progress bar."""
    progress(0.0, desc=f"Loading {model}" if cache.loaded_name != model else "Starting")

    def on_step(done: int, total: int) -> None:
        progress((min(done, total), total), desc="Generating", unit="steps")
    return on_step


def _session(request: tp.Optional[gr.Request]) -> tp.Optional[str]:
    return None if request is None else getattr(request, "session_hash", None)


def make_check(models: tp.Sequence[str]) -> tp.Callable[..., None]:
    """The quick check a click runs before the generation event: a mistake shows its message and leaves the
    previous take (player and picture) in place, as that event's outputs are untouched."""

    def check(model: str, text: str, melody: tp.Optional[str], duration: float, top_k: float, top_p: float,
              temperature: float, cfg_coef: float, decoder: str = DEFAULT_DECODER) -> None:
        with page_errors():
            validate_request(model, text, melody, duration, top_k, top_p, temperature, cfg_coef, decoder,
                             models=models)

    return check


def make_predict(cache: ModelCache, output: OutputFolder, models: tp.Sequence[str],
                 running: tp.Optional[RunningRequests] = None) -> tp.Callable[..., tp.Any]:
    """The non-streaming click handler: form values -> (audio file path, waveform picture, MultiBand Diffusion
    file path or None).

    With ``running``, the request can be stopped from its session (``make_stop``).
    """
    running = running if running is not None else RunningRequests()

    def predict(model: str, text: str, melody: tp.Optional[str], duration: float, top_k: float, top_p: float,
                temperature: float, cfg_coef: float, decoder: str = DEFAULT_DECODER,
                progress: gr.Progress = gr.Progress(), request: tp.Optional[gr.Request] = None
                ) -> tp.Tuple[tp.Optional[str], tp.Any, tp.Optional[str]]:
        with page_errors():
            checked = validate_request(model, text, melody, duration, top_k, top_p, temperature, cfg_coef, decoder,
                                       models=models)
            on_step = _progress_steps(cache, checked.model, progress)
            with running.track(_session(request)) as cancel:
                result = generate_one(cache, checked, on_step, cancel, status=lambda text: progress(None, desc=text))
            path, picture = _finish(output, result)
            return path, picture, _diffusion_file(output, result)

    return predict


def make_generate(cache: ModelCache, output: OutputFolder, models: tp.Sequence[str], running: RunningRequests,
                  chunk_seconds: float = STREAM_CHUNK_SECONDS,
                  first_chunk_seconds: tp.Optional[float] = STREAM_FIRST_CHUNK_SECONDS
                  ) -> tp.Callable[..., tp.Iterator[tp.Any]]:
    """The page's click handler, a generator: yields (AAC bytes for the live player, file path, picture,
    MultiBand Diffusion file path or None).

    With ``stream`` on, the live player receives the audio while it is generated (in ``chunk_seconds``
    pieces after a first one of ``first_chunk_seconds``) and the file and picture come at the end; with it off
    this is ``make_predict`` in one step. The MultiBand Diffusion decoder needs the whole take (it does not
    stream): it always takes the one-step path.
    """
    predict = make_predict(cache, output, models, running)

    def generate(model: str, text: str, melody: tp.Optional[str], duration: float, top_k: float, top_p: float,
                 temperature: float, cfg_coef: float, stream: bool = True, decoder: str = DEFAULT_DECODER,
                 progress: gr.Progress = gr.Progress(), request: tp.Optional[gr.Request] = None
                 ) -> tp.Iterator[tp.Tuple[tp.Any, tp.Any, tp.Any, tp.Any]]:
        if not stream or decoder == MBD_DECODER:
            path, picture, diffusion = predict(model, text, melody, duration, top_k, top_p, temperature, cfg_coef,
                                               decoder, progress, request)
            # b"", not gr.skip(): gradio ends the live player's stream at the end of the event, so it must exist.
            yield b"", path, picture, diffusion
            return
        with page_errors():
            checked = validate_request(model, text, melody, duration, top_k, top_p, temperature, cfg_coef,
                                       models=models)
            on_step = _progress_steps(cache, checked.model, progress)
            encoder: tp.Optional[AdtsEncoder] = None
            with running.track(_session(request)) as cancel:
                items = stream_one(cache, checked, chunk_seconds=chunk_seconds,
                                   first_chunk_seconds=first_chunk_seconds, cancel=cancel, progress=on_step)
                try:
                    for item in items:
                        if isinstance(item, GenerationResult):
                            path, picture = _finish(output, item)
                            tail = encoder.flush() if encoder is not None else b""
                            yield tail, path, picture, None
                            break
                        if encoder is None:
                            encoder = AdtsEncoder(item.sample_rate, item.wav.shape[0])
                        data = encoder.encode(item.wav)
                        if data:
                            yield data, gr.skip(), gr.skip(), gr.skip()
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()

    return generate


def make_stop(running: RunningRequests) -> tp.Callable[..., None]:
    """The Stop button: cancel the generation of the clicking session (other users' requests go on)."""

    def stop(request: tp.Optional[gr.Request] = None) -> None:
        if running.stop(_session(request)) == 0:
            gr.Info("Nothing is being generated.")

    return stop


def build_app(cache: ModelCache, output: OutputFolder, *, models: tp.Sequence[str], default_model: str,
              default_duration: float = 10.0, offline: bool = False, concurrency_limit: tp.Optional[int] = 1
              ) -> gr.Blocks:
    """Build the interactive app (call ``.queue(...).launch(...)`` on the result)."""
    if default_model not in models:
        raise ValueError(f"default_model must be one of {list(models)}, got {default_model!r}.")
    running = RunningRequests()
    generate = make_generate(cache, output, models, running)
    with page("MusicGen", INTRO, offline) as demo:
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    text = prompt_input(3, "e.g. lofi slow bpm electro chill with organic samples")
                    melody = melody_input("Melody to follow (optional, melody model only)")
                with gr.Row():
                    submit = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
                stream = gr.Checkbox(True, label="Play while generating", elem_id="stream",
                                     info="hear the music as it is made; the full take is saved at the end")
                model = gr.Radio(list(models), value=default_model, label="Model", elem_id="model")
                decoder = gr.Radio(DECODER_CHOICES, value=DEFAULT_DECODER, label="Decoder", elem_id="decoder",
                                   info="MultiBand Diffusion: better audio from the same tokens, much slower "
                                        "(no live playback); the EnCodec take is kept to compare")
                duration = gr.Slider(MIN_DURATION, MAX_DURATION, value=default_duration, step=1,
                                     label="Duration (seconds)", elem_id="duration")
                with gr.Row():
                    top_k = gr.Number(250, label="Top-k", precision=0, elem_id="top_k",
                                      info=f"0 to {MAX_TOP_K}")
                    top_p = gr.Number(0.0, label="Top-p", elem_id="top_p", info="0 to 1; 0 = off")
                    temperature = gr.Number(1.0, label="Temperature", elem_id="temperature")
                    cfg_coef = gr.Number(3.0, label="Classifier-free guidance", elem_id="cfg_coef")
            with gr.Column():
                live = StreamingAudio(label="Live (while generating)", streaming=True, autoplay=True,
                                      interactive=False, elem_id="live_audio")
                audio_out = take_output()
                picture = gr.Image(label="Waveform", type="pil", interactive=False, elem_id="waveform")
                diffusion_out = gr.Audio(label="MultiBand Diffusion decoder", type="filepath", interactive=False,
                                         elem_id="diffusion_audio", visible=False)
        form = [model, text, melody, duration, top_k, top_p, temperature, cfg_coef]
        submit.click(make_check(models), inputs=[*form, decoder], outputs=None, concurrency_limit=None,
                     api_name="check") \
            .success(generate, inputs=[*form, stream, decoder], outputs=[live, audio_out, picture, diffusion_out],
                     concurrency_limit=concurrency_limit, concurrency_id="generate", api_name="predict",
                     show_progress_on=[audio_out, picture])
        # Not queued behind the generations: it only sets the cancel token of this session's request.
        stop.click(make_stop(running), inputs=None, outputs=None, api_name="stop", concurrency_limit=None,
                   concurrency_id="stop")
        stream.change(lambda on: gr.update(visible=bool(on)), inputs=stream, outputs=live, api_visibility="private",
                      queue=False)
        decoder.change(lambda choice: gr.update(visible=choice == MBD_DECODER), inputs=decoder, outputs=diffusion_out,
                       api_visibility="private", queue=False)
        examples = [[t, None if m is None else str(ASSETS / m), name] for t, m, name in EXAMPLES
                    if name in models and (m is None or (ASSETS / m).is_file())]
        if examples:
            gr.Examples(examples, inputs=[text, melody, model], label="Examples")
        gr.Markdown("Audio made here is normalised for loudness. Top-p > 0 replaces top-k sampling; "
                    "higher guidance follows the text more closely.")
    return demo
