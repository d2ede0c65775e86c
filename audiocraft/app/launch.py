"""Command lines of ``app.py`` (interactive) and ``app_batched.py`` (queued, batched): parse flags, launch.

    python app.py                                   # http://127.0.0.1:7860
    python app.py --listen 0.0.0.0 --server_port 8080 --share
    python app_batched.py --max-batch-size 12
    MUSICGEN_DEMO_OFFLINE=1 python app.py           # tiny offline test checkpoints (noise), no download
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import typing as tp
import warnings

from .settings import MODELS, OFFLINE_MODELS, offline_demo_requested, offline_env, needs_reexec

BATCHED_MODEL = "facebook/musicgen-melody"


def build_parser(batched: bool = False) -> argparse.ArgumentParser:
    """Flags shared by both apps, plus ``--model``/``--duration``/``--max-batch-size`` for the batched one."""
    name = "app_batched.py" if batched else "app.py"
    parser = argparse.ArgumentParser(prog=name, description=(
        "MusicGen web demo, batched: one melody model, requests generated together." if batched else
        "MusicGen web demo: text (and melody) to music in the browser."))
    parser.add_argument("--listen", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1; 0.0.0.0 serves the local network)")
    parser.add_argument("--server_port", "--server-port", type=int, default=None,
                        help="port (default: gradio's, 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--inbrowser", action="store_true", help="open the page in the default browser")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--offline-demo", action="store_true",
                        help="use the tiny offline test checkpoints of a source checkout (random weights: noise); "
                             "same as MUSICGEN_DEMO_OFFLINE=1")
    parser.add_argument("--no-stem-separation", action="store_true",
                        help="melody models: take chroma from the full mix instead of demucs-separated stems")
    parser.add_argument("--max-queue-size", type=int, default=64,
                        help="requests allowed to wait; more are refused with 'queue full' (default 64)")
    if batched:
        parser.add_argument("--model", default=BATCHED_MODEL, help=f"model to serve (default {BATCHED_MODEL})")
        parser.add_argument("--duration", type=float, default=None,
                            help="seconds per clip (default 10; 1 with --offline-demo)")
        parser.add_argument("--max-batch-size", type=int, default=12,
                            help="most requests generated together (default 12)")
    else:
        parser.add_argument("--model", default=None, help="model selected when the page opens")
        parser.add_argument("--concurrency-limit", type=int, default=1,
                            help="generations run at the same time (default 1: one model, one device)")
    return parser


def _use_offline_checkpoints() -> None:
    """Point the hub at the tiny offline cache, restarting the process if huggingface_hub is already loaded."""
    env = offline_env()
    if needs_reexec(env):
        argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
        os.execve(sys.executable, [sys.executable, *argv[1:]], {**os.environ, **env})
    os.environ.update(env)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, batched: bool) -> None:
    if args.server_port is not None and not 0 <= args.server_port <= 65535:
        parser.error(f"--server_port must be in 0..65535, got {args.server_port}")
    if args.max_queue_size < 1:
        parser.error(f"--max-queue-size must be >= 1, got {args.max_queue_size}")
    if batched:
        if args.max_batch_size < 1:
            parser.error(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
        if args.duration is not None and not args.duration > 0:
            parser.error(f"--duration must be > 0, got {args.duration}")
    elif args.concurrency_limit < 1:
        parser.error(f"--concurrency-limit must be >= 1, got {args.concurrency_limit}")


def main(argv: tp.Optional[tp.Sequence[str]] = None, batched: bool = False) -> int:
    """Parse flags, build the app and serve it until interrupted."""
    parser = build_parser(batched)
    args = parser.parse_args(argv)
    _check_args(parser, args, batched)
    offline = args.offline_demo or offline_demo_requested()
    if offline:
        try:
            _use_offline_checkpoints()
        except FileNotFoundError as exc:
            parser.error(str(exc))
    try:
        import gradio  # noqa: F401
    except ImportError:
        parser.error("the web demo needs gradio: pip install 'audiocraft[app]'")

    from .model_cache import ModelCache
    from .outputs import OutputFolder

    # gradio 6 still names HTTP status 422 as older starlette did; recent starlette deprecates that name and warns
    # at the first request. Nothing a user of the app can act on.
    warnings.filterwarnings("ignore", message=r".*HTTP_422_UNPROCESSABLE_ENTITY")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("audiocraft").setLevel(logging.INFO)  # batch sizes, generation failures

    models = OFFLINE_MODELS if offline else MODELS
    cache = ModelCache(device=args.device, stem_separation=not (args.no_stem_separation or offline))
    output = OutputFolder()
    if batched:
        from .ui_batched import build_batched_app

        duration = args.duration if args.duration is not None else (1.0 if offline else 10.0)
        demo = build_batched_app(cache, output, model_name=args.model, duration=duration,
                                 max_batch_size=args.max_batch_size, offline=offline)
    else:
        from .ui import build_app

        default_model = args.model or models[0]
        if default_model not in models:
            parser.error(f"--model must be one of {', '.join(models)}, got {default_model!r}")
        demo = build_app(cache, output, models=models, default_model=default_model,
                         default_duration=1.0 if offline else 10.0, offline=offline,
                         concurrency_limit=args.concurrency_limit)
    demo.queue(max_size=args.max_queue_size)
    demo.launch(server_name=args.listen, server_port=args.server_port, share=args.share,
                inbrowser=args.inbrowser, show_error=True, allowed_paths=[str(output.folder)],
                max_file_size="100mb")
    return 0


def main_batched(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    """Entry point of ``app_batched.py``."""
    return main(argv, batched=True)
