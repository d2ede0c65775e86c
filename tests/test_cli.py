"""The `musicgen` command line, end to end in a subprocess on the tiny offline checkpoints."""
import os
from pathlib import Path
import subprocess
import sys

import pytest

from tests.conftest import HF_CACHE_DIR

ROOT = Path(__file__).resolve().parent.parent


def _run(args, tmp_path, extra_env=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(HF_CACHE_DIR), PYTHONPATH=str(ROOT))
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "audiocraft", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_file_of_right_duration(tmp_path):
    from audiocraft.data.audio import audio_info

    out = tmp_path / "take.wav"
    proc = _run(["lofi beat with piano", "--model", "facebook/musicgen-small", "--duration", "0.5",
                 "--out", str(out), "--seed", "3", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    info = audio_info(out)
    assert info.sample_rate == 32000
    assert info.channels == 1
    assert abs(info.duration - 0.5) < 1e-3


def test_cli_batch_and_mp3(tmp_path):
    from audiocraft.data.audio import audio_info

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("first prompt\n\nsecond prompt\n")
    proc = _run(["--batch", str(prompts), "--duration", "0.3", "--out", str(tmp_path / "b.mp3"), "--greedy"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = sorted(tmp_path.glob("b_*.mp3"))
    assert [f.name for f in files] == ["b_000.mp3", "b_001.mp3"]
    assert abs(audio_info(files[0]).duration - 0.3) < 0.06  # mp3 framing


@pytest.mark.parametrize("args, message", [
    (["x", "--duration", "-1"], "--duration must be > 0"),
    (["x", "--out", "a.xyz"], "unknown output format 'xyz'"),
    (["x", "--melody", "missing.wav"], "--melody file not found"),
    (["x", "--top-p", "2"], "top_p must be <= 1"),
    (["x", "--model", "facebook/not-a-model"], "could not load model 'facebook/not-a-model'"),
    ([], "a PROMPT"),
])
def test_cli_bad_input_one_line(tmp_path, args, message):
    proc = _run(args + ["--no-progress"], tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("musicgen:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_bad_flag_exits_nonzero(tmp_path):
    proc = _run(["x", "--no-such-flag"], tmp_path)
    assert proc.returncode == 2
    assert "unrecognized arguments" in proc.stderr


def test_cli_metadata_regenerates_a_take(tmp_path):
    import json

    from audiocraft.data.audio import audio_metadata, audio_read

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a long first prompt about jazz and drums\nbass\n")
    proc = _run(["--batch", str(prompts), "--duration", "0.5", "--out", str(tmp_path / "t.wav"), "--seed", "40",
                 "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "t_001.wav.json").read_text())
    assert meta["prompt"] == "bass" and meta["seed"] == 41 and meta["model"] == "facebook/musicgen-small"
    assert meta["generation_params"]["top_k"] == 250
    assert json.loads(audio_metadata(tmp_path / "t_001.wav")["comment"]) == meta
    # regenerate that take alone from its metadata: identical samples
    proc = _run([meta["prompt"], "--duration", str(meta["duration"]), "--seed", str(meta["seed"]),
                 "--out", str(tmp_path / "again.wav"), "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    a, _ = audio_read(tmp_path / "t_001.wav")
    b, _ = audio_read(tmp_path / "again.wav")
    assert a.shape == b.shape and (a - b).abs().max() < 2 / 32768
