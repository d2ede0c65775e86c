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

# Clips the last cell saves: 3 text prompts, 2 continuations of a synthesised prompt, 1 of bach.mp3, 2 melodies.
EXPECTED = ["text_0", "text_1", "text_2", "continuation_0", "continuation_1", "bach_continuation_0", "melody_0",
            "melody_1"]


def test_demo_notebook_runs_offline(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("MUSICGEN_DEMO_OFFLINE", "1")
    monkeypatch.setenv("MUSICGEN_DEMO_OUT", str(out))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # One torch thread in the kernel: the tiny models gain nothing from more, and busy-waiting OpenMP threads
    # slow everything down several times when the machine is shared.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("MUSICGEN_MODEL", "MUSICGEN_MELODY_MODEL", "MUSICGEN_DEMO_CACHE", "MUSICGEN_DEMO_ASSETS"):
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
    # display_audio: 2 unconditional + 3 text + prompt + 2 continuations + 1 bach + 2 melodies + 2 generated.
    assert len(players) == 13
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "offline=True duration=1.0 s" in text

    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.wav" for stem in EXPECTED)
    for stem in EXPECTED:
        info = audio_info(out / f"{stem}.wav")
        assert (info.sample_rate, info.channels) == (32000, 1), stem
        assert info.duration == pytest.approx(1.0, abs=1e-3), stem
