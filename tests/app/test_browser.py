"""The web apps as a person uses them: each app runs as a server subprocess on the tiny offline checkpoints
and is driven by the system Chromium through Playwright (type a prompt, press Generate, get audio; bad input
shows a message and the server keeps serving)."""
import base64
import importlib.util
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from audiocraft.data.audio import audio_info
from tests.conftest import HF_CACHE_DIR

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MUSICGEN_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 180.0   # seconds for a server to answer (importing torch + gradio on a busy 2-core machine)
UI_TIMEOUT = 120_000    # milliseconds for a generation to show up in the page

if importlib.util.find_spec("gradio") is None:  # the servers import it; this process does not need to
    pytest.skip("gradio (the 'app' extra) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium found (apt-get install chromium)")

# Every <audio> element in `root`, looking inside shadow roots (gradio's waveform player keeps its own there).
AUDIO_JS = """(root) => { const found = [];
  const walk = (node) => node.querySelectorAll('*').forEach((el) => {
    if (el.tagName === 'AUDIO' && el.src) found.push({src: el.src, duration: el.duration});
    if (el.shadowRoot) walk(el.shadowRoot); });
  walk(root); return found; }"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """An app subprocess on 127.0.0.1 with the tiny offline checkpoints; its output goes to ``log``."""

    def __init__(self, script: str, folder: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = folder / f"{Path(script).stem}.log"
        env = dict(os.environ, MUSICGEN_DEMO_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_HUB_CACHE=str(HF_CACHE_DIR.resolve()), GRADIO_ANALYTICS_ENABLED="False",
                   GRADIO_TEMP_DIR=str(folder / "gradio"), PYTHONPATH=str(ROOT),
                   # One torch thread: the tiny models gain nothing from more, and busy-waiting OpenMP threads
                   # slow everything down several times when the machine is shared.
                   OMP_NUM_THREADS="1")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / script), "--server_port", str(self.port), *args],
                                         cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.log.stem} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"{self.log.stem} did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both apps, started together (their start-up overlaps), stopped at the end of the module."""
    folder = tmp_path_factory.mktemp("apps")
    started = {"app": Server("app.py", folder), "batched": Server("app_batched.py", folder, "--max-batch-size", "4")}
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT)
    yield page
    context.close()


def _open(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_load_state("networkidle")  # the page is live (typing before that may be lost)
    page.locator("#prompt textarea").wait_for()


def _generate(page, prompt: str) -> None:
    page.locator("#prompt textarea").fill(prompt)
    sync_api.expect(page.locator("#prompt textarea")).to_have_value(prompt)
    page.locator("#generate").click()


def _wait_audio(page, previous: str = "") -> dict:
    """Wait until the output player holds a new source whose duration the browser has decoded."""
    handle = page.wait_for_function(
        f"() => {{ const found = ({AUDIO_JS})(document.querySelector('#output_audio'));"
        f" const a = found.find((x) => x.src !== {previous!r} && x.duration > 0); return a || null; }}",
        timeout=UI_TIMEOUT)
    return handle.json_value()


# Fetch a URL from inside the page (works for http: and blob: sources alike), as base64.
FETCH_JS = """async (src) => { const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
  let text = ''; for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)); }
  return btoa(text); }"""


def _check_audio_file(page, src: str, folder: Path, duration: float) -> None:
    """Fetch what the page plays, as the browser does, and check it with audio_info."""
    for _ in range(10):
        try:
            data = page.evaluate(FETCH_JS, src)
            break
        except sync_api.Error:  # a blob: source (gradio 5) may be replaced by a new one meanwhile
            time.sleep(0.5)
            src = _wait_audio(page)["src"]
    else:
        pytest.fail(f"could not fetch the audio the page plays ({src})")
    path = folder / "fetched.wav"
    path.write_bytes(base64.b64decode(data))
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (32000, 1)
    assert info.duration == pytest.approx(duration, abs=1e-3)


def _expect_message(page, text: str) -> None:
    sync_api.expect(page.get_by_text(text).first).to_be_visible(timeout=UI_TIMEOUT)


def test_app(page, servers, tmp_path):
    server = servers["app"]
    _open(page, server.url)
    # Invalid input first: no description and no melody.
    _generate(page, "")
    _expect_message(page, "Enter a description of the music to generate")
    # The server keeps serving: text to music with the small model, 1 s (the offline default duration).
    page.locator("#model").get_by_text("facebook/musicgen-small").click()
    _generate(page, "lofi beat with a mellow piano")
    audio = _wait_audio(page)
    assert audio["duration"] == pytest.approx(1.0, abs=0.01)
    _check_audio_file(page, audio["src"], tmp_path, 1.0)
    sync_api.expect(page.locator("#waveform img")).to_be_visible()
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    # A mistake after a good take: the message shows, the take (player and waveform) stays, the log gets one line.
    _generate(page, "   ")
    _expect_message(page, "Enter a description of the music to generate")
    assert _wait_audio(page)["src"] == audio["src"]
    sync_api.expect(page.locator("#waveform img")).to_be_visible()
    assert page.locator("#output_audio").get_by_text("Error").count() == 0
    assert page.locator("#waveform").get_by_text("Error").count() == 0
    log = server.log.read_text(errors="replace")
    assert "request refused: Enter a description" in log and "Traceback" not in log
    assert "Warning" not in log, log  # no deprecation (or other) warning at start or on requests
    # An upload that is not audio, on the melody model with no description.
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"definitely not a wav file " * 40)
    page.locator("#model").get_by_text("facebook/musicgen-melody").click()
    page.locator("#melody input[type=file]").set_input_files(str(bad))
    _generate(page, "")
    _expect_message(page, "Could not read the melody file 'not_audio.wav'")
    page.screenshot(path=str(tmp_path / "app_error.png"), full_page=True)
    assert server.alive()


def test_batched_app(page, servers, tmp_path):
    server = servers["batched"]
    _open(page, server.url)
    _generate(page, "   ")
    _expect_message(page, "Enter a description of the music to generate, or upload a melody")
    _generate(page, "An 80s driving pop song with heavy drums")
    audio = _wait_audio(page)
    assert audio["duration"] == pytest.approx(1.0, abs=0.01)
    _check_audio_file(page, audio["src"], tmp_path, 1.0)
    page.screenshot(path=str(tmp_path / "app_batched.png"), full_page=True)
    assert server.alive()


LIVE_JS = f"""() => {{ const root = document.querySelector('#live_audio');
  const found = root ? ({AUDIO_JS})(root) : []; return found.find((a) => a.duration > 0) || null; }}"""


def test_app_streams_while_generating_and_stops(page, servers, tmp_path):
    """The live player gets the audio while a 30 s request is generated; Stop ends it early with the part
    generated so far as the file; the next request is complete."""
    server = servers["app"]
    _open(page, server.url)
    page.locator("#model").get_by_text("facebook/musicgen-small").click()
    duration = page.locator("#duration input[type=number]")
    duration.fill("30")
    duration.press("Enter")
    _generate(page, "a long ambient piece")
    # Chromium decodes the AAC segments of the live player (its duration grows) before the take is done.
    live = page.wait_for_function(LIVE_JS, timeout=UI_TIMEOUT).json_value()
    assert page.evaluate(f"() => ({AUDIO_JS})(document.querySelector('#output_audio')).length") == 0
    page.screenshot(path=str(tmp_path / "app_streaming.png"), full_page=True)
    page.locator("#stop").click()
    audio = _wait_audio(page)
    assert 0 < audio["duration"] < 29, (audio, live)
    page.screenshot(path=str(tmp_path / "app_stopped.png"), full_page=True)
    duration.fill("1")
    duration.press("Enter")
    _generate(page, "a short one")
    audio = _wait_audio(page, previous=audio["src"])
    assert audio["duration"] == pytest.approx(1.0, abs=0.01)
    assert server.alive()


def test_app_api_with_and_without_streaming(servers):
    """gradio_client users: /predict returns (live stream, complete WAV, picture, MultiBand Diffusion WAV or None)
    either way; /stop answers."""
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(servers["app"].url, verbose=False)
    for stream in (False, True):
        _live, path, picture, diffusion = client.predict("facebook/musicgen-small", "lofi", None, 1, 250, 0, 1, 3,
                                                         stream, api_name="/predict")
        info = audio_info(path)
        assert (info.duration, info.sample_rate) == (1.0, 32000) and Path(picture).is_file() and diffusion is None
    # The MultiBand Diffusion decoder (the tiny offline checkpoint): both takes.
    _live, path, _picture, diffusion = client.predict("facebook/musicgen-small", "lofi", None, 1, 250, 0, 1, 3, True,
                                                      "MultiBand_Diffusion", api_name="/predict")
    assert audio_info(path).duration == audio_info(diffusion).duration == 1.0
    assert client.predict(api_name="/stop") in ((), None)
