"""The gradio layer without a browser: handlers raise gr.Error with the page message, pages build."""
import math

import pytest
import torch

from audiocraft.app.launch import build_parser
from audiocraft.app.model_cache import ModelCache
from audiocraft.app.outputs import OutputFolder
from audiocraft.data.audio import audio_info, audio_write

from .fakes import fake_loader

gr = pytest.importorskip("gradio", reason="gradio (the 'app' extra) is not installed")

from audiocraft.app.ui import build_app, make_check, make_predict  # noqa: E402
from audiocraft.app.ui_batched import build_batched_app, make_predict_batched  # noqa: E402
from audiocraft.app.ui_batched import make_check as make_batched_check  # noqa: E402

MODELS = ("facebook/musicgen-melody", "facebook/musicgen-small")


@pytest.fixture
def cache():
    return ModelCache(loader=fake_loader())


def test_predict_returns_file_and_picture(cache, tmp_path):
    predict = make_predict(cache, OutputFolder(tmp_path), MODELS)
    path, picture, diffusion = predict("facebook/musicgen-small", "lofi", None, 2, 250, 0.0, 1.0, 3.0)
    assert diffusion is None  # the default decoder
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.duration) == (32000, 1, 2.0)
    assert picture.size == (800, 200)


@pytest.mark.parametrize("args, message", [
    (("facebook/musicgen-small", "", None, 2, 250, 0.0, 1.0, 3.0), "Enter a description"),
    (("facebook/musicgen-small", "x", None, 500, 250, 0.0, 1.0, 3.0), "Duration"),
    (("facebook/musicgen-large", "x", None, 2, 250, 0.0, 1.0, 3.0), "Unknown model"),
])
def test_predict_user_errors_are_gr_errors(cache, tmp_path, args, message):
    predict = make_predict(cache, OutputFolder(tmp_path), MODELS)
    with pytest.raises(gr.Error, match=message):
        predict(*args)


def test_predict_unexpected_failure_is_readable(tmp_path):
    def broken(name):
        model = fake_loader()(name)
        model.generate = lambda texts, **kwargs: torch.full((1, 1, 100), float("nan"))  # audio_write refuses NaN
        return model

    predict = make_predict(ModelCache(loader=broken), OutputFolder(tmp_path), MODELS)
    with pytest.raises(gr.Error, match=r"Generation failed \((ArgumentError|ValueError): wav contains NaN.*The server is still "
                                       r"running"):
        predict("facebook/musicgen-small", "x", None, 1, 250, 0.0, 1.0, 3.0)


def test_batched_handlers(cache, tmp_path):
    t = torch.arange(8000) / 8000
    melody = str(audio_write(tmp_path / "m", 0.5 * torch.sin(2 * math.pi * 220 * t)[None], 8000))
    check = make_batched_check(1.0)
    check("a song", None)
    check("", melody)
    with pytest.raises(gr.Error, match="Enter a description of the music to generate, or upload a melody"):
        check("  ", None)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(gr.Error, match="Could not read the melody file 'bad.mp3'"):
        check("x", str(bad))
    predict = make_predict_batched(cache, OutputFolder(tmp_path / "out"), "facebook/musicgen-melody", 1.0)
    (paths,) = predict(["a", "", "c"], [None, melody, None])
    assert len(paths) == 3
    assert {audio_info(p).duration for p in paths} == {1.0}
    # API callers can skip the check: their bad items get no audio, the others are still served.
    (paths,) = predict(["a", "  ", "c"], [None, None, str(bad)])
    assert paths[1:] == [None, None] and audio_info(paths[0]).duration == 1.0
    assert predict(["  "], [None]) == [[None]]


def _elem_ids(demo):
    return {c.elem_id for c in demo.blocks.values() if getattr(c, "elem_id", None)}


def test_pages_build(cache, tmp_path):
    demo = build_app(cache, OutputFolder(tmp_path), models=MODELS, default_model=MODELS[1], offline=True)
    assert {"prompt", "melody", "generate", "model", "duration", "top_k", "top_p", "temperature", "cfg_coef",
            "output_audio", "waveform"} <= _elem_ids(demo)
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert fns["predict"].concurrency_limit == 1
    batched = build_batched_app(cache, OutputFolder(tmp_path), model_name=MODELS[0], duration=1.0)
    fns = {fn.api_name: fn for fn in batched.fns.values()}
    assert fns["predict"].batch and fns["predict"].max_batch_size == 12
    assert fns["predict"].concurrency_limit == 1
    with pytest.raises(ValueError, match="default_model must be one of"):
        build_app(cache, OutputFolder(tmp_path), models=MODELS, default_model="facebook/musicgen-large")


def test_command_line_flags():
    args = build_parser().parse_args([])
    assert (args.listen, args.server_port, args.share, args.inbrowser) == ("127.0.0.1", None, False, False)
    assert (args.concurrency_limit, args.max_queue_size, args.offline_demo) == (1, 64, False)
    args = build_parser(batched=True).parse_args(["--listen", "0.0.0.0", "--server_port", "9000", "--share"])
    assert (args.listen, args.server_port, args.share) == ("0.0.0.0", 9000, True)
    assert (args.model, args.max_batch_size, args.duration) == ("facebook/musicgen-melody", 12, None)


@pytest.mark.parametrize("argv, message", [
    (["--max-queue-size", "0"], "--max-queue-size must be >= 1, got 0"),
    (["--server_port", "70000"], "--server_port must be in 0..65535, got 70000"),
    (["--concurrency-limit", "0"], "--concurrency-limit must be >= 1, got 0"),
])
def test_command_line_errors(argv, message, capsys):
    from audiocraft.app.launch import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--max-batch-size", "0"], "--max-batch-size must be >= 1, got 0"),
    (["--duration", "-1"], "--duration must be > 0, got -1.0"),
])
def test_batched_command_line_errors(argv, message, capsys):
    from audiocraft.app.launch import main_batched

    with pytest.raises(SystemExit) as exit_info:
        main_batched(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_offline_demo_without_checkpoints(monkeypatch, tmp_path, capsys):
    from audiocraft.app.launch import main

    monkeypatch.setenv("MUSICGEN_DEMO_CACHE", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit):
        main(["--offline-demo"])
    assert "The tiny offline checkpoints were not found in" in capsys.readouterr().err


def test_predict_reports_progress(cache, tmp_path):
    calls = []

    class Progress:
        def __call__(self, value, desc=None, unit="steps"):
            calls.append((value, desc))

    predict = make_predict(cache, OutputFolder(tmp_path), MODELS)
    predict("facebook/musicgen-small", "lofi", None, 1, 250, 0.0, 1.0, 3.0, progress=Progress())
    assert calls[0] == (0.0, "Loading facebook/musicgen-small")
    assert calls[1] == ((1, 50), "Generating") and calls[-1] == ((50, 50), "Generating")
    assert len(calls) == 51
    calls.clear()
    predict("facebook/musicgen-small", "lofi", None, 1, 250, 0.0, 1.0, 3.0, progress=Progress())
    assert calls[0] == (0.0, "Starting")  # the model is already loaded


def test_a_mistake_leaves_the_previous_take_in_place(cache, tmp_path, caplog):
    """The click first runs a check with no outputs; only if it passes does the generation (whose outputs are the
    players and the picture) run. A mistake is logged in one line, without a traceback."""
    demo = build_app(cache, OutputFolder(tmp_path), models=MODELS, default_model=MODELS[1])
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    ids = {fn.api_name: key for key, fn in demo.fns.items()}
    assert fns["check"].outputs == []
    assert fns["predict"].trigger_after == ids["check"] and fns["predict"].trigger_only_on_success
    assert [o.elem_id for o in fns["predict"].outputs] == ["live_audio", "output_audio", "waveform", "diffusion_audio"]
    check = make_check(MODELS)
    check("facebook/musicgen-small", "lofi", None, 2, 250, 0.0, 1.0, 3.0)
    with caplog.at_level("INFO", logger="audiocraft"):
        with pytest.raises(gr.Error, match="Enter a description") as info:
            check("facebook/musicgen-small", " ", None, 2, 250, 0.0, 1.0, 3.0)
    assert info.value.print_exception is False
    refused = [r for r in caplog.records if "request refused" in r.getMessage()]
    assert len(refused) == 1 and refused[0].exc_info is None
    batched = build_batched_app(cache, OutputFolder(tmp_path), model_name=MODELS[0], duration=1.0)
    fns = {fn.api_name: fn for fn in batched.fns.values()}
    ids = {fn.api_name: key for key, fn in batched.fns.items()}
    assert fns["check"].outputs == [] and fns["predict"].trigger_after == ids["check"]
