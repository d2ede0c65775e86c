"""The batched app under load: ``app_batched.py`` runs as a server subprocess on 127.0.0.1 with the tiny offline
checkpoints (as ``tests/app/test_browser.py`` starts it) and receives 50 concurrent requests, a fifth of them
malformed. The server must stay up, every good request must get audio, every bad one a readable error, and the
server's memory must stay bounded. Bounded in count (50 + a few) and time (every wait has a deadline); the
server is stopped at the end. Figures (latencies, RSS) are printed at the end of the session.

Clients behave like the page: ``/check`` (the per-user validation) then ``/predict`` (the batched generation).
A few extra bad requests go straight to ``/predict``, as an API client may do, to show they cannot break other
users' batches.
"""
from __future__ import annotations

import concurrent.futures as futures
import importlib.util
import json
import math
import os
import re
from pathlib import Path
import socket
import statistics
import subprocess
import sys
import threading
import time
import typing as tp
import urllib.request

import pytest
import torch

from audiocraft.data.audio import audio_info, audio_write
from tests.conftest import HF_CACHE_DIR

from .conftest import REPORT

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0   # seconds for the server to answer (imports torch + gradio)
REQUEST_TIMEOUT = 60.0  # seconds for any one request
TOTAL_TIMEOUT = 90.0    # seconds for the whole burst (about 20 s on 2 busy cores)
REQUESTS, BAD = 50, 10
MAX_BATCH, MAX_QUEUE = 8, 64    # the server's --max-batch-size and --max-queue-size: 50 users fit the queue
MAX_RSS_GROWTH = 400 * 2 ** 20  # bytes

if importlib.util.find_spec("gradio") is None:
    pytest.skip("gradio (the 'app' extra) is not installed", allow_module_level=True)
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client (installed with gradio) is missing")
psutil = pytest.importorskip("psutil", reason="psutil is needed to measure the server's memory")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    port = _free_port()
    log = folder / "server.log"
    env = dict(os.environ, MUSICGEN_DEMO_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_CACHE=str(HF_CACHE_DIR.resolve()), GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(folder / "gradio"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app_batched.py"), "--listen", "127.0.0.1",
                                 "--server_port", str(port), "--max-batch-size", str(MAX_BATCH), "--max-queue-size",
                                 str(MAX_QUEUE)],
                                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app_batched.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app_batched.py did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield {"proc": proc, "url": url, "folder": folder, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rss(proc: subprocess.Popen) -> int:
    return psutil.Process(proc.pid).memory_info().rss


def _inputs(folder: Path) -> tp.Tuple[tp.List[tp.Tuple[str, tp.Any, tp.Optional[str]]], tp.Dict[str, Path]]:
    """50 requests: (kind, (text, melody file or None), expected error fragment or None for good ones)."""
    handle_file = gradio_client.handle_file
    t = torch.arange(16000) / 16000
    files = {
        "melody": audio_write(folder / "melody", 0.5 * torch.sin(2 * math.pi * 330 * t)[None], 16000),
        # A legal but odd (coprime) sample rate: resampled tap by tap, no multi-GB kernel.
        "odd_rate": audio_write(folder / "odd", 0.5 * torch.sin(2 * math.pi * 330 * t[:11025])[None], 11027),
        "garbage": folder / "garbage.mp3", "empty": folder / "empty.wav", "truncated": folder / "truncated.wav",
    }
    files["garbage"].write_bytes(b"\x00not audio\xff" * 100)
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(files["melody"].read_bytes()[:30])
    good: tp.List[tp.Tuple[str, tp.Any, tp.Optional[str]]] = []
    for i in range(REQUESTS - BAD):
        if i % 10 == 3:
            good.append(("good", (f"lofi {i}", handle_file(str(files["melody"]))), None))
        elif i == 7:
            good.append(("good", ("", handle_file(str(files["odd_rate"]))), None))
        elif i == 11:
            good.append(("good", ("\u00e9t\u00e9 \U0001F3B9 \u4e50", None), None))
        else:
            good.append(("good", (f"an 80s pop song number {i}", None), None))
    bad = [
        ("bad", ("", None), "Enter a description of the music to generate, or upload a melody"),
        ("bad", ("   ", None), "Enter a description"),
        ("bad", ("x" * 3000, None), "The description is too long (3000 characters)"),
        ("bad", ("x", handle_file(str(files["garbage"]))), "Could not read the melody file"),
        ("bad", ("x", handle_file(str(files["empty"]))), "melody"),
        ("bad", ("x", handle_file(str(files["truncated"]))), "melody"),
        ("bad", ("", handle_file(str(files["garbage"]))), "Could not read the melody file"),
        ("bad", ("y" * 5000, None), "too long"),
        ("bad", ("\n\t", None), "Enter a description"),
        ("bad", ("z", handle_file(str(files["empty"]))), "melody"),
    ]
    goods = iter(good)
    requests = [bad[i // 5] if i % 5 == 4 else next(goods) for i in range(REQUESTS)]  # one bad in five
    return requests, files


def _page_like(client: tp.Any, args: tp.Tuple[str, tp.Any],
               barrier: tp.Optional[threading.Barrier] = None) -> tp.Tuple[str, tp.Any, float]:
    """What the page does: the per-user check, then (if it passed) the batched generation. ``client`` is a
    ``Client`` or a URL (a new user: one ``Client`` each, as one ``Client`` shared by 50 threads stalls); with a
    ``barrier``, all users send at the same moment."""
    if isinstance(client, str):
        client = gradio_client.Client(client, verbose=False)
    if barrier is not None:
        barrier.wait(timeout=REQUEST_TIMEOUT)
    start = time.monotonic()
    try:
        client.submit(*args, api_name="/check").result(timeout=REQUEST_TIMEOUT)
        path = client.submit(*args, api_name="/predict").result(timeout=REQUEST_TIMEOUT)
        return "audio", path, time.monotonic() - start
    except gradio_client.exceptions.AppError as exc:
        return "error", str(exc), time.monotonic() - start


def _server_path_melody(url: str) -> str:
    """Ask /check to read a server file that was never uploaded (raw HTTP: the client would upload it)."""
    body = json.dumps({"data": ["x", {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}]}).encode()
    request = urllib.request.Request(url + "gradio_api/call/check", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/check/{event}", timeout=60) as response:
        return response.read().decode()


def test_fifty_concurrent_requests(server):
    proc, url, folder = server["proc"], server["url"], server["folder"]
    client = gradio_client.Client(url, verbose=False)
    requests, files = _inputs(folder)
    assert len(requests) == REQUESTS and sum(kind == "bad" for kind, _, _ in requests) == BAD

    warm = _page_like(client, ("warm up", None))  # loads the model
    assert warm[0] == "audio", warm
    rss_before = _rss(proc)

    barrier = threading.Barrier(REQUESTS)
    with futures.ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        jobs = [pool.submit(_page_like, url, args, barrier) for _, args, _ in requests]
        done, pending = futures.wait(jobs, timeout=TOTAL_TIMEOUT)
        assert not pending, f"{len(pending)} requests did not finish within {TOTAL_TIMEOUT:.0f} s"
        results = [job.result() for job in jobs]
        wall = max(seconds for _, _, seconds in results)

        # API clients that skip /check: a bad item must not fail the others of its batch.
        def direct_call(args: tp.Tuple[str, tp.Any]) -> tp.Any:
            user = gradio_client.Client(url, verbose=False)
            return user.submit(*args, api_name="/predict").result(timeout=REQUEST_TIMEOUT)

        direct = [pool.submit(direct_call, a) for a in [("", None), ("ok 1", None), ("ok 2", None),
                                                        ("x", gradio_client.handle_file(str(files["garbage"])))]]
        direct_results = [job.result(timeout=REQUEST_TIMEOUT) for job in direct]

    assert proc.poll() is None, "the server died"
    latencies, errors = [], []
    for (kind, args, expected), (outcome, value, seconds) in zip(requests, results):
        if kind == "good":
            assert outcome == "audio", f"good request {args[0]!r} failed: {value}"
            info = audio_info(value)
            assert (info.duration, info.sample_rate) == (1.0, 32000)
            latencies.append(seconds)
        else:
            assert outcome == "error", f"bad request {str(args[0])[:20]!r} got {value}"
            assert expected in value and "Traceback" not in value and str(folder) not in value, value
            errors.append(value)
    assert direct_results[0] is None and direct_results[3] is None  # refused items: no audio ...
    assert audio_info(direct_results[1]).duration == 1.0 and audio_info(direct_results[2]).duration == 1.0

    # A path on the server that was never uploaded is refused by gradio itself.
    answer = _server_path_melody(url)
    assert "event: error" in answer and "hostname" not in answer.split("data:")[-1].lower().replace(
        "etc/hostname", ""), answer

    after = _page_like(client, ("still serving?", None))
    assert after[0] == "audio", after
    rss_after = _rss(proc)
    assert rss_after - rss_before < MAX_RSS_GROWTH, (rss_before, rss_after)

    # The server batched the burst, never beyond its limit (audiocraft.app logs each batch it generates).
    batches = [int(m) for m in re.findall(r"generating a batch of (\d+)", server["log"].read_text(errors="replace"))]
    assert batches and 1 < max(batches) <= MAX_BATCH, batches

    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)]
    REPORT.append(f"app_batched load test (batches of <= {MAX_BATCH}, queue <= {MAX_QUEUE}): {REQUESTS} concurrent "
                  f"users ({BAD} malformed requests) served in {wall:.1f} s: {len(latencies)} audio, {len(errors)} "
                  f"readable errors, 0 other failures, server up; good-request "
                  f"latency p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s; server RSS "
                  f"{rss_before / 2 ** 20:.0f} MiB before, {rss_after / 2 ** 20:.0f} MiB after "
                  f"({(rss_after - rss_before) / 2 ** 20:+.0f} MiB); {len(batches)} batches of {min(batches)} to "
                  f"{max(batches)}; 4 direct /predict calls: bad ones no audio, "
                  f"good ones audio")
