"""The `musicgen` command line, end to end in a subprocess on the tiny offline checkpoints."""
import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import pytest
import torch

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


@pytest.mark.parametrize("model, sample_rate, channels", [
    ("facebook/musicgen-stereo-small", 32000, 2),
    ("facebook/audiogen-medium", 16000, 1),
])
def test_cli_stereo_and_audiogen(tmp_path, capsys, model, sample_rate, channels):
    """The model kind comes from the checkpoint: stereo MusicGen writes 2 channels, AudioGen 16 kHz (in process:
    the subprocess path is the tests above)."""
    from audiocraft.cli import main
    from audiocraft.data.audio import audio_info

    out = tmp_path / "bark.wav"
    assert main(["dog barking in the rain", "--model", model, "--duration", "0.3", "--out", str(out),
                 "--no-progress", "--seed", "1"]) == 0
    info = audio_info(out)
    assert (info.sample_rate, info.channels) == (sample_rate, channels)
    assert abs(info.duration - 0.3) < 1e-3
    if model.startswith("facebook/audiogen"):  # no melody conditioning: one line, exit status 2
        assert main(["x", "--model", model, "--melody", str(out), "--no-progress"]) == 2
        assert "--melody needs a melody model; facebook/audiogen-medium (AudioGen) has none" in capsys.readouterr().err


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
    (["x", "--top-p", "2"], "--top-p must be <= 1"),
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


# ---------------------------------------------------------------------------------------------- checked before loading
@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: these mistakes must be caught before."""
    import audiocraft.models
    from audiocraft.models import MusicGen

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(MusicGen, "get_pretrained", staticmethod(forbidden))
    monkeypatch.setattr(audiocraft.models, "get_pretrained", forbidden)


@pytest.mark.parametrize("args, message", [
    (["--out", "/proc/x.wav"], "--out /proc/x.wav: cannot create files in the folder '/proc'"),
    (["--out", "{tmp}/file.txt/x.wav"], "file.txt' is a file, not a folder"),
    (["--out", "{tmp}"], "is a folder; give a file name"),
    (["--seed", "-5"], "--seed must be in [0, 2**63 - 1], got -5"),
    (["--temperature", "0"], "--temperature must be >= 0.001, got 0.0"),
    (["--top-k", "-1"], "--top-k must be >= 0, got -1"),
    (["--cfg", "inf"], "--cfg must be finite"),
    (["--extend-stride", "0"], "--extend-stride must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--melody", "{tmp}/file.txt"], "--melody file {tmp}/file.txt is not readable audio (Invalid data"),
    (["--continue", "{tmp}/file.txt"], "--continue file {tmp}/file.txt is not readable audio (Invalid data"),
])
def test_cli_mistakes_fail_before_loading(tmp_path, capsys, no_model_load, args, message):
    from audiocraft.cli import main

    (tmp_path / "file.txt").write_text("definitely not audio\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    default_out = [] if "--out" in args else ["--out", str(tmp_path / "o.wav")]
    assert main(["a prompt", "--no-progress", *default_out, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("musicgen: error: "), err
    assert message.replace("{tmp}", str(tmp_path)) in err[0]
    assert "Errno" not in err[0]


def test_cli_batch_rerun_skips_finished_takes(tmp_path, capsys, no_model_load):
    """Takes already written are not made again; a take of another prompt at the same place stops the run."""
    from audiocraft.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\n")
    for i, prompt in enumerate(["one", "two"]):
        (tmp_path / f"t_{i:03d}.wav").write_bytes(b"RIFF")
        (tmp_path / f"t_{i:03d}.wav.json").write_text(json.dumps({"prompt": prompt}))
    assert main(["--batch", str(prompts), "--out", str(tmp_path / "t.wav"), "--no-progress"]) == 0
    assert "all 2 takes are already written" in capsys.readouterr().err
    prompts.write_text("one\nthree\n")
    assert main(["--batch", str(prompts), "--out", str(tmp_path / "t.wav"), "--no-progress"]) == 2
    assert "t_001.wav holds a take of another prompt ('two', not 'three')" in capsys.readouterr().err


def test_cli_help_documents_offline_use_and_demo():
    from audiocraft.cli import build_parser

    text = build_parser().format_help()
    for needed in ("HF_HUB_OFFLINE=1", "HF_HUB_CACHE", "a folder holding state_dict.bin", "--demo",
                   "tests/reference/hf_cache", "torchrun --nproc_per_node"):
        assert needed in text, needed


# ---------------------------------------------------------------------------------------------- seeds and the demo
def _meta(path):
    return json.loads(Path(str(path) + ".json").read_text())


def test_cli_draws_and_records_a_seed(tmp_path):
    from audiocraft.data.audio import audio_read

    proc = _run(["jazz", "--duration", "0.3", "--out", str(tmp_path / "a.wav"), "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    seed = _meta(tmp_path / "a.wav")["seed"]
    assert isinstance(seed, int) and seed >= 0
    proc = _run(["jazz", "--duration", "0.3", "--out", str(tmp_path / "b.wav"), "--no-progress", "--seed", str(seed)],
                tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(audio_read(tmp_path / "a.wav")[0], audio_read(tmp_path / "b.wav")[0])


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unreachable_hub(tmp_path):
    """The hub at a closed local port, offline mode off, an empty hub cache."""
    return {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "empty_cache"),
            "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}


def test_cli_unreachable_hub_fails_at_once_in_one_line(tmp_path):
    proc = _run(["x", "--duration", "0.3", "--no-progress"], tmp_path, _unreachable_hub(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no retry messages from huggingface_hub
    assert lines[0].startswith("musicgen: error: could not load model 'facebook/musicgen-small': ")
    assert "cannot be reached" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0] and "local folder" in lines[0]


def test_cli_demo_falls_back_and_records_the_weights_used(tmp_path):
    proc = _run(["x", "--duration", "0.3", "--no-progress", "--demo", "--seed", "1", "--out", str(tmp_path / "d.wav")],
                tmp_path, _unreachable_hub(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "TINY OFFLINE TEST CHECKPOINTS" in proc.stderr and "Retrying" not in proc.stderr
    meta = _meta(tmp_path / "d.wav")
    assert meta["model"] != "facebook/musicgen-small" and "models--facebook--musicgen-small" in meta["model"]
    assert meta["demo_fallback"]["requested_model"] == "facebook/musicgen-small"
