"""`torchrun ... -m audiocraft.cli --batch`: takes shared out over 2 CPU processes (gloo) write the same samples as one
process, and a re-run skips what is written (tiny offline checkpoints)."""
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from audiocraft.data.audio import audio_read
from tests.conftest import HF_CACHE_DIR

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["first prompt", "a much longer second prompt about jazz and drums", "third", "fourth one", "fifth"]
ARGS = ["--duration", "0.4", "--no-progress"]


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(HF_CACHE_DIR), OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _cli(args, cwd, processes=1):
    launch = [sys.executable, "-m", "audiocraft.cli"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
         "-m", "audiocraft.cli"]
    proc = subprocess.run(launch + args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("takes")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    # Two processes with batches of 2 of their own (takes 0-2, 4 and 1-3) and a seed drawn by rank 0; then one
    # process with that seed and batches of 2 (0-1, 2-3, 4).
    two = _cli(["--batch", "prompts.txt", "--out", "two/take.wav", "--batch-size", "2", *ARGS], root, processes=2)
    seed = _take(root / "two", 0)[1]["seed"]
    _cli(["--batch", "prompts.txt", "--out", "one/take.wav", "--seed", str(seed), "--batch-size", "2", *ARGS], root)
    return root, two, seed


def _take(folder: Path, i: int):
    path = folder / f"take_{i:03d}.wav"
    return audio_read(path)[0], json.loads(path.with_name(path.name + ".json").read_text())


def test_two_processes_write_the_samples_of_one(runs):
    root, two, seed = runs
    assert sorted(two.stdout.split()) == [f"two/take_{i:03d}.wav" for i in range(len(PROMPTS))]
    for i, prompt in enumerate(PROMPTS):
        one_wav, one_meta = _take(root / "one", i)
        two_wav, two_meta = _take(root / "two", i)
        assert one_wav.shape[-1] == int(0.4 * 32000)
        assert torch.equal(one_wav, two_wav), i  # bit-exact samples
        # one seed drawn for the whole list (by rank 0, shared): item i has seed + i on whichever process
        assert one_meta["seed"] == two_meta["seed"] == seed + i and two_meta["prompt"] == prompt


def test_rerun_skips_written_takes_and_remakes_a_missing_one(runs):
    root, _, seed = runs
    again = ["--batch", "prompts.txt", "--out", "two/take.wav", "--seed", str(seed), *ARGS]
    proc = _cli(again, root, processes=2)
    assert proc.stdout.strip() == "" and "all 5 takes are already written" in proc.stderr
    before = {i: (root / "two" / f"take_{i:03d}.wav").stat().st_mtime_ns for i in range(len(PROMPTS))}
    (root / "two" / "take_003.wav").unlink()
    proc = _cli(again, root, processes=2)
    assert proc.stdout.split() == ["two/take_003.wav"] and "skipping 4 of 5 takes" in proc.stderr
    assert torch.equal(_take(root / "two", 3)[0], _take(root / "one", 3)[0])
    assert all((root / "two" / f"take_{i:03d}.wav").stat().st_mtime_ns == before[i] for i in (0, 1, 2, 4))
