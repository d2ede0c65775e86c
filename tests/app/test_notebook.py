"""demo.ipynb runs top to bottom (nbclient + ipykernel) on the tiny offline checkpoints, and saves its clips."""
import os
from pathlib import Path

import pytest

from audiocraft.data.audio import audio_info

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "demo.ipynb"

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the 'dev' extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (the 'dev' extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the 'dev' extra)")
pytest.importorskip("matplotlib", reason="matplotlib is not installed (the 'notebook' extra)")

# Clips the last cell saves: 3 text prompts, 2 continuations of a synthesised prompt, 1 of bach.mp3, 2 melodies,
# 2 stereo text prompts and 1 stereo continuation of bach.mp3 (2 channels), 1 AudioGen sound (16 kHz).
EXPECTED = ["text_0", "text_1", "text_2", "continuation_0", "continuation_1", "bach_continuation_0", "melody_0",
            "melody_1", "stereo_0", "stereo_1", "stereo_continuation_0", "sound_0"]


def test_demo_notebook_runs_offline(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("MUSICGEN_DEMO_OFFLINE", "1")
    monkeypatch.setenv("MUSICGEN_DEMO_OUT", str(out))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # One torch thread in the kernel: the tiny models gain nothing from more, and busy-waiting OpenMP threads
    # slow everything down several times when the machine is shared.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("MUSICGEN_MODEL", "MUSICGEN_MELODY_MODEL", "MUSICGEN_STEREO_MODEL", "AUDIOGEN_MODEL",
                 "MUSICGEN_DEMO_CACHE", "MUSICGEN_DEMO_ASSETS"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "demo.ipynb is committed with outputs; clear them"
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError naming the cell on any error

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    players = [o for o in outputs if o.output_type == "display_data" and "<audio" in o.data.get("text/html", "")]
    # display_audio: 2 unconditional + 3 text + prompt + 2 continuations + 1 bach + 2 melodies + 2 generated
    # + 2 stereo + 1 stereo continuation + 1 sound + EnCodec and MultiBand Diffusion of the same tokens.
    assert len(players) == 19
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "offline=True duration=1.0 s" in text
    assert "tokens (1, 4, 50) -> EnCodec (1, 1, 32000), MultiBand Diffusion (1, 1, 32000)" in text
    [spectrograms] = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]

    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.wav" for stem in EXPECTED)
    for stem in EXPECTED:
        info = audio_info(out / f"{stem}.wav")
        expected = (16000, 1) if stem.startswith("sound") else (32000, 2) if stem.startswith("stereo") else (32000, 1)
        assert (info.sample_rate, info.channels) == expected, stem
        assert info.duration == pytest.approx(1.0, abs=1e-3), stem


def _install_cell(repo_url: str = "") -> str:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    [cell] = [c for c in notebook.cells if c.get("id") == "cell-install"]
    assert "REPO_URL = ''" in cell.source
    return cell.source.replace("REPO_URL = ''", f"REPO_URL = {repo_url!r}")


@pytest.fixture
def not_installed(monkeypatch, tmp_path):
    """The install cell's view of a kernel without audiocraft; records the commands it would run."""
    import importlib.metadata
    import subprocess
    import sys

    def no_distribution(name):
        raise importlib.metadata.PackageNotFoundError(name)

    commands = []

    def record(command, check):
        commands.append(command)
        if command[:2] == ["git", "clone"]:
            Path(command[-1]).mkdir()

    monkeypatch.setattr(importlib.metadata, "distribution", no_distribution)
    monkeypatch.setattr(subprocess, "run", record)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    return commands


def test_install_cell_does_nothing_when_installed(capsys):
    exec(_install_cell(), {})
    assert capsys.readouterr().out == "audiocraft is installed\n"


def test_install_cell_installs_the_folder_it_runs_in(not_installed, tmp_path):
    import sys
    (tmp_path / "setup.py").touch()
    (tmp_path / "audiocraft").mkdir()
    exec(_install_cell(), {})
    assert not_installed == [[sys.executable, "-m", "pip", "install", "-q", "-e", str(tmp_path)]]
    assert sys.path[0] == str(tmp_path)


def test_install_cell_without_repository_or_url_says_what_to_do(not_installed, tmp_path):
    with pytest.raises(RuntimeError, match=f"audiocraft is not installed and '{tmp_path}' is not the repository "
                       "folder: set REPO_URL at the top of this cell to the repository's git URL, or upload"):
        exec(_install_cell(), {})
    assert not_installed == []


def test_install_cell_clones_repo_url(not_installed, tmp_path):
    import os
    import sys
    exec(_install_cell("https://example.org/me/musicgen.git"), {})
    clone = tmp_path / "musicgen"
    assert not_installed == [["git", "clone", "-q", "https://example.org/me/musicgen.git", str(clone)],
                             [sys.executable, "-m", "pip", "install", "-q", "-e", str(clone)]]
    assert Path(os.getcwd()) == clone


def test_jupyter_notebook_command_serves_the_demo(tmp_path):
    """The README's `jupyter notebook demo.ipynb` (the 'notebook' extra) starts and serves the notebook."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    if jupyter is None or shutil.which("jupyter-notebook", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("jupyter notebook is not installed (the 'notebook' extra)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "musicgen-test"
    command = [jupyter, "notebook", "demo.ipynb", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "jupyter notebook did not answer within 180 s"
                time.sleep(1)
        with urllib.request.urlopen(f"{base}/notebooks/demo.ipynb?token={token}", timeout=30) as page:
            assert page.status == 200
        with urllib.request.urlopen(f"{base}/api/contents/demo.ipynb?content=0&token={token}", timeout=30) as answer:
            assert '"type": "notebook"' in answer.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=60)
