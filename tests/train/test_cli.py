"""Tests of the musicgen-train command line: bad input gives one line on stderr and exit status 2."""
import os
from pathlib import Path
import subprocess
import sys

import pytest

from audiocraft.train.cli import build_parser, config_from_args, main

REPO = Path(__file__).resolve().parents[2]


def _one_line_error(capsys, argv, match: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("musicgen-train: error: "), err
    assert match in err, err


@pytest.mark.parametrize("extra, match", [
    (["--steps", "0"], "steps must be an integer >= 1, got 0."),
    (["--lr", "-3"], "lr must be a number > 0.0, got -3.0."),
    (["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    (["--schedule", "step"], "argument --schedule: invalid choice: 'step'"),
    (["--warmup", "50", "--steps", "10"], "warmup must be <= steps (10), got 50."),
])
def test_bad_options(capsys, tmp_path: Path, extra, match) -> None:
    _one_line_error(capsys, ["--data", str(tmp_path), "--out", str(tmp_path / "o"), *extra], match)


def test_missing_required_option(capsys) -> None:
    _one_line_error(capsys, ["--out", "x"], "the following arguments are required: --data")


def test_batch_must_split_over_processes(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    _one_line_error(capsys, ["--data", str(tmp_path), "--out", "o", "--batch-size", "3"],
                    "batch_size (3) must be divisible by the number of processes (2) times grad_accum (1).")


def test_missing_data_folder(capsys, tmp_path: Path) -> None:
    code = main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("musicgen-train: error: --data")
    assert "is neither a folder of audio files nor a JSONL manifest" in err[-1]


def test_options_reach_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--data", "d", "--out", "o", "--lora", "--lora-rank", "4", "--steps", "7",
                                      "--batch-size", "8", "--segment-duration", "10", "--resume", "--fsdp",
                                      "--seed", "3", "--no-condition-dropout", "--ema", "--precision", "bf16"])
    cfg = config_from_args(args)
    assert (cfg.lora, cfg.lora_rank, cfg.steps, cfg.batch_size, cfg.segment_duration, cfg.resume, cfg.fsdp,
            cfg.seed, cfg.condition_dropout, cfg.ema, cfg.precision) == (
        True, 4, 7, 8, 10.0, True, True, 3, False, True, "bf16")
    assert cfg.learning_rate == 1e-4


def test_python_dash_m_exit_status(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "audiocraft.train", "--data", str(tmp_path), "--out", "o",
                           "--batch-size", "-2"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "musicgen-train: error: batch_size must be an integer >= 1, got -2.\n"
